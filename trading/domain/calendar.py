"""The futures trading day: CME Globex days run from 18:00 to 17:00 New York time, so "today" starts at 18:00."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
DAY_STARTS_AT = time(18, 0)


def trading_day_start(at: datetime) -> datetime:
    """UTC start of the trading day that `at` (aware) belongs to: the latest 18:00 New York time at or before it."""
    if at.tzinfo is None:
        raise ValueError("trading_day_start needs an aware datetime")
    local = at.astimezone(NEW_YORK)
    day = local.date() if local.time() >= DAY_STARTS_AT else local.date() - timedelta(days=1)
    # Built from the local wall time so a daylight-saving change between the two days cannot shift it.
    return datetime.combine(day, DAY_STARTS_AT, tzinfo=NEW_YORK).astimezone(timezone.utc)
