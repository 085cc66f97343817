"""Pushes to websocket clients through the channel layer (in-memory when embedded, Redis when deployed)."""
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def market_group(symbol: str, timeframe: str) -> str:
    return f"market.{symbol}.{timeframe}"


def bar_message(bar) -> dict:
    return {
        "t": bar.timestamp.isoformat().replace("+00:00", "Z"),
        "o": float(bar.open),
        "h": float(bar.high),
        "l": float(bar.low),
        "c": float(bar.close),
        "v": float(bar.volume),
    }


def broadcast(symbol: str, timeframe: str, message_type: str, payload: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(market_group(symbol, timeframe), {"type": message_type, "payload": payload})
