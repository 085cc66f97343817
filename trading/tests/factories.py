"""factory_boy factories for instruments and bars; bars satisfy the bar contract and sit on the tick grid."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import factory
from factory.random import randgen

from trading.domain.timeframes import timeframe_delta
from trading.models import Bar, Instrument

# Bars made without an explicit timestamp follow each other from here, one timeframe apart.
SERIES_ORIGIN = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _series_time(timeframe: str, n: int) -> datetime:
    # Floored to the timeframe's grid, so a 1d bar opens at midnight and a 4h bar on a 4-hour boundary.
    step: timedelta = timeframe_delta(timeframe)
    return SERIES_ORIGIN - (SERIES_ORIGIN - EPOCH) % step + n * step


class InstrumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instrument
        # NQ is seeded by a migration: InstrumentFactory(symbol="NQ") returns that row instead of failing.
        django_get_or_create = ("symbol",)

    symbol = factory.Sequence(lambda n: f"TST{n}")
    name = factory.LazyAttribute(lambda o: f"Test future {o.symbol}")
    exchange = "CME"
    tick_size = Decimal("0.25")
    point_value = Decimal("20")
    currency = "USD"
    active = True


def _ticks(low: int, high: int) -> int:
    # factory_boy's shared generator, so factory.random.reseed_random() makes runs repeatable.
    return randgen.randint(low, high)


def _on_grid(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value() * tick


class BarFactory(factory.django.DjangoModelFactory):
    """A closed bar: low <= open, close <= high, low > 0, volume >= 0, all prices multiples of the tick size.

    Timestamps advance by one timeframe per bar made (one minute for the default "1m"); use `create_series`
    for a contiguous run from a chosen start.
    """

    class Meta:
        model = Bar

    class Params:
        base_price = Decimal("18000")
        tick = factory.LazyAttribute(lambda o: Decimal(o.instrument.tick_size))

    instrument = factory.SubFactory(InstrumentFactory)
    timeframe = "1m"
    timestamp = factory.LazyAttributeSequence(lambda o, n: _series_time(o.timeframe, n))
    open = factory.LazyAttribute(
        lambda o: max(_on_grid(o.base_price, o.tick) + _ticks(-200, 200) * o.tick, 50 * o.tick)
    )
    close = factory.LazyAttribute(lambda o: max(o.open + _ticks(-20, 20) * o.tick, o.tick))
    high = factory.LazyAttribute(lambda o: max(o.open, o.close) + _ticks(0, 10) * o.tick)
    low = factory.LazyAttribute(lambda o: max(min(o.open, o.close) - _ticks(0, 10) * o.tick, o.tick))
    volume = factory.LazyFunction(lambda: Decimal(_ticks(0, 5000)))

    @classmethod
    def create_series(cls, count: int, *, start: datetime = SERIES_ORIGIN, **kwargs) -> list[Bar]:
        """`count` bars one timeframe apart from `start` (UTC-aware), oldest first."""
        step = timeframe_delta(kwargs.get("timeframe", "1m"))
        return [cls.create(timestamp=start + i * step, **kwargs) for i in range(count)]
