"""Reads for the dashboard chart's overlays: prediction calls, trade fills, open brackets and the equity curve."""
from __future__ import annotations

from datetime import datetime

from mlcore import selectors as ml_selectors

from .domain.timeframes import timeframe_delta
from .models import Account, Bar, EquitySnapshot, Fill, Instrument, Order

# Hard caps per read, relative to the bars shown, so a busy account or many model versions never make the page slow.
# One call per bar from each version that predicted it: three versions per bar is already a promotion in progress.
PREDICTIONS_PER_BAR = 3
# Fills: an entry and its exit per bar, twice over (several approvals can fill on the same bar).
FILLS_PER_BAR = 4
OPEN_BRACKETS_MAX = 50


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def chart_bar_times(*, instrument: Instrument, timeframe: str, n: int) -> list[datetime]:
    """Open times of the newest n bars, oldest first (what the chart shows, without the prices)."""
    newest = (Bar.objects.filter(instrument=instrument, timeframe=timeframe).order_by("-timestamp")
              .values_list("timestamp", flat=True)[:n])
    return list(reversed(newest))


def chart_predictions(*, instrument: Instrument, timeframe: str, bar_times: list[datetime]) -> list[dict]:
    """The newest call for each shown bar, oldest bar first: side, confidence and both probabilities, version."""
    if not bar_times:
        return []
    rows = (ml_selectors.prediction_list(symbol=instrument.symbol, timeframe=timeframe)
            .filter(bar__timestamp__gte=bar_times[0], bar__timestamp__lte=bar_times[-1])
            .values_list("bar__timestamp", "side", "confidence", "p_long", "p_short", "version_id")
            [:PREDICTIONS_PER_BAR * len(bar_times)])
    newest: dict[datetime, dict] = {}
    for timestamp, side, confidence, p_long, p_short, version in rows:  # newest bar first, newest call first
        if timestamp not in newest:
            newest[timestamp] = {"bar_timestamp": _iso(timestamp), "side": side, "confidence": confidence,
                                 "p_long": p_long, "p_short": p_short, "version": version}
    return [newest[t] for t in sorted(newest)]


def chart_fills(*, account: Account, instrument: Instrument, bar_times: list[datetime]) -> list[dict]:
    """The account's fills in this instrument since the first shown bar, oldest first, each with its order's kind
    and the entry it belongs to (an exit's parent), so the chart can join an entry to its exit."""
    if not bar_times:
        return []
    rows = (Fill.objects.filter(account=account, instrument=instrument, timestamp__gte=bar_times[0])
            .order_by("-timestamp", "-id")
            .values_list("timestamp", "price", "side", "quantity", "order_id", "order__kind", "order__parent_id")
            [:FILLS_PER_BAR * len(bar_times)])
    return [{"t": _iso(timestamp), "price": float(price), "side": side, "quantity": quantity, "kind": kind,
             "kind_label": Order.Kind(kind).label, "order": order_id, "entry": parent_id or order_id}
            for timestamp, price, side, quantity, order_id, kind, parent_id in reversed(rows)]


def chart_brackets_open(*, account: Account, instrument: Instrument) -> list[dict]:
    """Open trades of the account in this instrument: entry fill price, stop and target (the entry order's bracket)."""
    rows = (Order.objects.filter(account=account, instrument=instrument, kind=Order.Kind.ENTRY,
                                 status=Order.Status.FILLED, closed=False)
            .order_by("id")
            .values_list("id", "side", "quantity", "fill__timestamp", "fill__price", "stop_loss", "take_profit")
            [:OPEN_BRACKETS_MAX])
    return [{"entry": order_id, "side": "long" if side == "buy" else "short", "quantity": quantity,
             "t": _iso(timestamp) if timestamp else None, "price": float(price) if price is not None else None,
             "stop_loss": float(stop) if stop is not None else None,
             "take_profit": float(target) if target is not None else None}
            for order_id, side, quantity, timestamp, price, stop, target in rows]


def chart_equity(*, account: Account, timeframe: str, bar_times: list[datetime]) -> list[dict]:
    """The account's equity marked at the close of each shown bar, oldest first.

    Snapshots are taken at every settled bar's close, of whatever market the account trades; keeping only those at
    the shown bars' closes gives one point per candle (a coarser timeframe's closes are also a finer one's)."""
    if not bar_times:
        return []
    step = timeframe_delta(timeframe)
    rows = (EquitySnapshot.objects.filter(account=account, timestamp__in=[t + step for t in bar_times])
            .order_by("timestamp").values_list("timestamp", "equity", "drawdown"))
    return [{"t": _iso(timestamp), "equity": float(equity), "drawdown": drawdown}
            for timestamp, equity, drawdown in rows]


def chart_overlays(*, instrument: Instrument, timeframe: str, account: Account | None,
                   bar_times: list[datetime]) -> dict:
    """Everything drawn over the candles, for the shown bars: four queries whatever the number of rows."""
    overlays = {"predictions": chart_predictions(instrument=instrument, timeframe=timeframe, bar_times=bar_times),
                "account": account.pk if account else None, "fills": [], "brackets": [], "equity": []}
    if account is not None:
        overlays["fills"] = chart_fills(account=account, instrument=instrument, bar_times=bar_times)
        overlays["brackets"] = chart_brackets_open(account=account, instrument=instrument)
        overlays["equity"] = chart_equity(account=account, timeframe=timeframe, bar_times=bar_times)
    return overlays
