"""What a websocket client missed: the bars closed after a time, then their predictions and recommendations, as the
live stream would have pushed them (read from the database, in a bounded number of bounded queries)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mlcore import selectors as ml_selectors
from mlcore import services as ml_services

from . import realtime, selectors
from .models import Bar, Recommendation

MAX_BARS = 500
# A bar is predicted once per model version (twice around a promotion) and sized once per account.
MAX_PREDICTIONS = 2 * MAX_BARS
MAX_RECOMMENDATIONS = 4 * MAX_BARS


@dataclass(frozen=True)
class StreamCatchup:
    """(message type, payload) pairs in the order to send them: bars oldest first, then the predictions, then the
    recommendations of those bars. `more` is True when bars were left out (the client asks again from the last)."""

    messages: tuple[tuple[str, dict], ...]
    bars: int
    more: bool


def stream_catchup_since(*, symbol: str, timeframe: str, since: datetime, max_bars: int = MAX_BARS) -> StreamCatchup:
    """The messages of the bars of a market that opened after `since` (at most `max_bars`, the oldest first)."""
    bars = list(Bar.objects.filter(instrument__symbol=symbol, timeframe=timeframe, timestamp__gt=since)
                .order_by("timestamp")[:max_bars + 1])
    more = len(bars) > max_bars
    bars = bars[:max_bars]
    if not bars:
        return StreamCatchup(messages=(), bars=0, more=False)
    first, last = bars[0].timestamp, bars[-1].timestamp
    messages = [("bar.closed", {"bar": realtime.bar_message(bar)}) for bar in bars]

    # The newest ones when there are more than the bound; sent oldest first, like the bars.
    predictions = (ml_selectors.prediction_list(symbol=symbol, timeframe=timeframe)
                   .filter(bar__timestamp__gte=first, bar__timestamp__lte=last)[:MAX_PREDICTIONS])
    messages += [("prediction.created", ml_services.prediction_payload(p)) for p in reversed(list(predictions))]

    recommendations = (Recommendation.objects.select_related("account", "decided_by")
                       .filter(instrument__symbol=symbol, timeframe=timeframe,
                               bar_timestamp__gte=first, bar_timestamp__lte=last)
                       .order_by("-bar_timestamp", "-id")[:MAX_RECOMMENDATIONS])
    messages += [("recommendation.updated", selectors.recommendation_payload(r))
                 for r in reversed(list(recommendations))]
    return StreamCatchup(messages=tuple(messages), bars=len(bars), more=more)
