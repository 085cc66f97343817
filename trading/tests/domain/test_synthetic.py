"""The synthetic price generator: reproducibility, the bar contract, the session grid and its statistics."""
import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.domain.bars import frame_from_bars, validate_bars
from trading.domain.synthetic import (
    DEMO_SIGNAL,
    SyntheticBarSource,
    SyntheticParams,
    generate_bars,
    generate_bars_with_state,
    planted_signals,
    regime_path,
    session_timestamps,
    session_timestamps_between,
)

UTC = timezone.utc
NY = "America/New_York"
NQ_TICK = 0.25


def _autocorrelation(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[lag:] * x[:-lag]).sum() / (x * x).sum())


def _minute_of_day_ny(timestamps: pd.Series) -> np.ndarray:
    local = timestamps.dt.tz_convert(NY)
    return (local.dt.hour * 60 + local.dt.minute).to_numpy()


def _assert_contract(frame: pd.DataFrame, tick_size: float) -> None:
    assert list(frame.columns) == ["row", "timestamp", "open", "high", "low", "close", "volume"]
    assert frame["row"].dtype == np.int64
    assert frame["row"].tolist() == list(range(1, len(frame) + 1))
    assert str(frame["timestamp"].dt.tz) == "UTC"
    o, h, lo, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    for values in (o, h, lo, c, v):
        assert values.dtype == np.float64
        assert np.isfinite(values).all()
    assert (lo > 0).all()
    assert (h >= np.maximum(o, c)).all()
    assert (np.minimum(o, c) >= lo).all()
    for values in (o, h, lo, c):
        ticks = values / tick_size
        assert np.allclose(ticks, np.rint(ticks), rtol=0, atol=1e-6)
    assert (v >= 0).all()
    assert (v == np.rint(v)).all()
    validate_bars(frame)  # the ingestion rules agree


@pytest.fixture(scope="module")
def minute_bars() -> pd.DataFrame:
    """About 145 sessions of NQ 1-minute bars."""
    stamps = session_timestamps(datetime(2023, 1, 1, tzinfo=UTC), 200_000)
    return generate_bars(stamps, seed=11, start_price=18_000.0, tick_size=NQ_TICK)


@pytest.fixture(scope="module")
def returns(minute_bars) -> pd.DataFrame:
    """1-bar log returns with the New York minute of day of the bar they end on."""
    close = minute_bars["close"].to_numpy()
    return pd.DataFrame(
        {
            "r": np.diff(np.log(close)),
            "minute": _minute_of_day_ny(minute_bars["timestamp"])[1:],
            "volume": minute_bars["volume"].to_numpy()[1:],
        }
    )


# ----------------------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_bars():
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 5_000)
    first = generate_bars(stamps, seed=42, start_price=18_000.0, tick_size=NQ_TICK)
    second = generate_bars(stamps, seed=42, start_price=18_000.0, tick_size=NQ_TICK)
    pd.testing.assert_frame_equal(first, second)


def test_different_seed_gives_different_bars():
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 5_000)
    first = generate_bars(stamps, seed=42, start_price=18_000.0, tick_size=NQ_TICK)
    second = generate_bars(stamps, seed=43, start_price=18_000.0, tick_size=NQ_TICK)
    assert not first["close"].equals(second["close"])
    assert not first["volume"].equals(second["volume"])


def test_bars_open_at_the_given_timestamps_and_the_start_price():
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 100)
    frame = generate_bars(stamps, seed=1, start_price=18_000.1, tick_size=NQ_TICK)
    assert (frame["timestamp"].to_numpy() == stamps.to_numpy()).all()
    assert frame["open"].iat[0] == 18_000.0  # rounded to the tick


def test_open_is_previous_close_except_after_a_session_break(minute_bars):
    opens, closes = minute_bars["open"].to_numpy(), minute_bars["close"].to_numpy()
    after_break = np.diff(minute_bars["timestamp"].to_numpy()) > np.timedelta64(1, "m")
    continuous = opens[1:] == closes[:-1]
    assert continuous[~after_break].all()
    assert not continuous[after_break].all()  # the market moves while it is shut
    # ... but by a gap, not a jump: a few tenths of a percent at most.
    assert np.abs(np.log(opens[1:][after_break] / closes[:-1][after_break])).max() < 0.02


# ------------------------------------------------------------------------------------------- the contract


def test_contract_holds_on_many_nq_bars(minute_bars):
    assert len(minute_bars) == 200_000
    _assert_contract(minute_bars, NQ_TICK)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**63),
    start_price=st.floats(min_value=0.01, max_value=500_000.0),
    tick_size=st.sampled_from([0.01, 0.1, 0.25, 1.0, 5.0, 1 / 32]),
    count=st.integers(min_value=0, max_value=300),
    timeframe=st.sampled_from(["1m", "5m", "15m", "1h", "4h"]),
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
)
def test_contract_holds_for_any_seed_price_and_tick(seed, start_price, tick_size, count, timeframe, after):
    stamps = session_timestamps(after, count, timeframe=timeframe)
    frame = generate_bars(stamps, seed=seed, start_price=start_price, tick_size=tick_size)
    assert len(frame) == count
    _assert_contract(frame, tick_size)


def test_no_bars_gives_an_empty_frame_with_the_bar_columns():
    frame = generate_bars(pd.DatetimeIndex([], tz="UTC"), seed=0, start_price=100.0, tick_size=1.0)
    assert frame.empty
    assert list(frame.columns) == ["row", "timestamp", "open", "high", "low", "close", "volume"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"start_price": 0.0}, "start_price"),
        ({"start_price": float("nan")}, "start_price"),
        ({"tick_size": -0.25}, "tick_size"),
        ({"tick_size": 0}, "tick_size"),
    ],
)
def test_bad_inputs_are_refused_with_the_argument_named(kwargs, message):
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 10)
    arguments = {"seed": 1, "start_price": 18_000.0, "tick_size": NQ_TICK, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_bars(stamps, **arguments)


def test_naive_or_unsorted_timestamps_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_bars(pd.DatetimeIndex(["2024-03-01 10:00"]), seed=1, start_price=1.0, tick_size=0.25)
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 10)
    with pytest.raises(ValueError, match="increasing"):
        generate_bars(stamps[::-1], seed=1, start_price=1.0, tick_size=0.25)


# ------------------------------------------------------------------------------------------- session grid


def test_timestamps_follow_the_globex_week_across_a_dst_change():
    # Friday 8 March 2024, 15:00 ET; clocks go forward on Sunday 10 March.
    after = datetime(2024, 3, 8, 20, 0, tzinfo=UTC)
    stamps = session_timestamps(after, 3_000)
    local = stamps.tz_convert(NY)
    minute = local.hour * 60 + local.minute
    assert len(stamps) == 3_000
    assert stamps.is_unique and stamps.is_monotonic_increasing
    assert (stamps > after).all()
    assert str(stamps.tz) == "UTC"
    assert not (local.day_of_week == 5).any()  # no Saturday
    assert not ((minute >= 17 * 60) & (minute < 18 * 60)).any()  # the daily maintenance break
    assert not ((local.day_of_week == 4) & (minute >= 17 * 60)).any()  # Friday closes at 17:00
    assert not ((local.day_of_week == 6) & (minute < 18 * 60)).any()  # Sunday opens at 18:00
    # The last Friday bar opens at 16:59 EST; the next opens at 18:00 EDT on Sunday.
    friday_last = stamps.get_loc(pd.Timestamp("2024-03-08 21:59", tz="UTC"))
    assert stamps[friday_last + 1] == pd.Timestamp("2024-03-10 22:00", tz="UTC")


def test_timestamps_start_strictly_after_the_given_time():
    on_grid = datetime(2024, 3, 5, 15, 0, tzinfo=UTC)
    assert session_timestamps(on_grid, 1)[0] == pd.Timestamp("2024-03-05 15:01", tz="UTC")
    inside_break = datetime(2024, 3, 5, 22, 30, tzinfo=UTC)  # 17:30 EST
    assert session_timestamps(inside_break, 1)[0] == pd.Timestamp("2024-03-05 23:00", tz="UTC")


@pytest.mark.parametrize("timeframe, per_session", [("1m", 1380), ("5m", 276), ("15m", 92), ("30m", 46), ("1h", 23)])
def test_each_session_has_its_bars_on_the_timeframe_grid(timeframe, per_session):
    # Monday 4 March 2024: the session runs from Sunday 18:00 to Monday 17:00 ET.
    start, end = datetime(2024, 3, 3, 23, 0, tzinfo=UTC), datetime(2024, 3, 4, 22, 0, tzinfo=UTC)
    stamps = session_timestamps_between(start, end, timeframe=timeframe)
    assert len(stamps) == per_session
    assert stamps[0] == pd.Timestamp(start)
    step = pd.Timedelta(timeframe.replace("m", "min"))
    assert (np.diff(stamps.asi8) == step.value).all()


def test_timestamps_between_is_half_open_and_agrees_with_timestamps_after():
    start, end = datetime(2024, 3, 1, 0, 0, tzinfo=UTC), datetime(2024, 3, 6, 0, 0, tzinfo=UTC)
    between = session_timestamps_between(start, end, timeframe="5m")
    after = session_timestamps(start - timedelta(seconds=1), len(between), timeframe="5m")
    assert (between == after).all()
    assert between[0] == pd.Timestamp(start)
    assert pd.Timestamp(end) not in between
    assert pd.Timestamp(end) in session_timestamps_between(start, end + timedelta(minutes=5), timeframe="5m")


def test_daily_bars_open_at_the_session_open():
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 5, timeframe="1d")
    local = stamps.tz_convert(NY)
    assert list(local.strftime("%a %H:%M")) == ["Sun 18:00", "Mon 18:00", "Tue 18:00", "Wed 18:00", "Thu 18:00"]


def test_session_timestamps_refuse_naive_times_and_negative_counts():
    with pytest.raises(ValueError, match="timezone-aware"):
        session_timestamps(datetime(2024, 3, 1), 10)
    with pytest.raises(ValueError, match="count"):
        session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), -1)
    with pytest.raises(ValueError, match="timeframe"):
        session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 10, timeframe="7m")


# ----------------------------------------------------------------------------------------------- statistics


def test_volatility_clusters_beyond_the_intraday_pattern(returns):
    # Absolute returns over their minute-of-day mean: what is left is clustering, not seasonality.
    absolute = returns["r"].abs()
    deseasonalised = (absolute / absolute.groupby(returns["minute"]).transform("mean")).to_numpy()
    threshold = 5 / np.sqrt(len(deseasonalised))  # five standard errors of a white-noise autocorrelation
    for lag in range(1, 11):
        assert _autocorrelation(deseasonalised, lag) > threshold
    shuffled = np.random.default_rng(0).permutation(deseasonalised)
    for lag in range(1, 11):
        assert abs(_autocorrelation(shuffled, lag)) < threshold


def test_returns_themselves_are_not_autocorrelated(returns):
    r = returns["r"].to_numpy() - returns["r"].mean()
    for lag in range(1, 11):
        # Standard error robust to the heteroskedasticity the returns have by design.
        standard_error = np.sqrt((r[lag:] ** 2 * r[:-lag] ** 2).sum()) / (r * r).sum()
        assert abs(_autocorrelation(r, lag)) < 5 * standard_error


def test_returns_have_fat_tails(returns):
    r = returns["r"]
    assert r.kurt() > 1
    # Still fat once the intraday pattern is divided out.
    standardised = r / r.groupby(returns["minute"]).transform("std")
    assert standardised.kurt() > 1
    normal = pd.Series(np.random.default_rng(0).normal(0.0, r.std(), len(r)))
    assert abs(normal.kurt()) < 1


def test_the_cash_open_is_busier_than_the_night(returns):
    first_half_hour = (returns["minute"] >= 9 * 60 + 30) & (returns["minute"] < 10 * 60)
    night = (returns["minute"] >= 18 * 60) | (returns["minute"] < 3 * 60)
    absolute = returns["r"].abs()
    assert absolute[first_half_hour].mean() > 1.5 * absolute[night].mean()
    assert returns["volume"][first_half_hour].mean() > 1.5 * returns["volume"][night].mean()


def test_volatility_is_u_shaped_in_the_cash_session(returns):
    absolute = returns["r"].abs()
    minute = returns["minute"]
    opening = absolute[(minute >= 570) & (minute < 600)].mean()
    midday = absolute[(minute >= 720) & (minute < 840)].mean()
    closing = absolute[(minute >= 930) & (minute < 960)].mean()
    assert opening > midday and closing > midday


def test_realised_volatility_moves_between_regimes(returns):
    daily = returns["r"].rolling(1380).std().dropna().iloc[::1380]
    assert daily.quantile(0.9) > 2 * daily.quantile(0.1)


def test_regimes_switch_several_times_and_visit_every_state():
    params = SyntheticParams()
    stamps = session_timestamps(datetime(2023, 1, 1, tzinfo=UTC), 200_000)
    path = regime_path(stamps, seed=11, params=params)
    assert len(path) == len(stamps)
    assert (np.diff(path) != 0).sum() >= 5
    assert set(np.unique(path)) == set(range(len(params.regime_names)))


def test_turbulent_regime_is_more_volatile_than_calm(minute_bars, returns):
    path = regime_path(pd.DatetimeIndex(minute_bars["timestamp"]), seed=11)[1:]
    absolute = returns["r"].abs().to_numpy()
    calm, turbulent = SyntheticParams().regime_names.index("calm"), SyntheticParams().regime_names.index("turbulent")
    assert absolute[path == turbulent].mean() > 1.5 * absolute[path == calm].mean()


# ----------------------------------------------------------------------------------------------- live source


def test_source_continues_the_series_on_the_session_grid():
    after = datetime(2024, 3, 8, 20, 0, tzinfo=UTC)  # an hour before the weekend close
    source = SyntheticBarSource(after=after, last_close=18_000.25, tick_size=NQ_TICK, seed=5, chunk=500)
    assert source.name == "synthetic"
    frame = frame_from_bars(itertools.islice(source, 1_200))
    _assert_contract(frame, NQ_TICK)
    assert (frame["timestamp"].to_numpy() == session_timestamps(after, 1_200).to_numpy()).all()
    assert frame["open"].iat[0] == 18_000.25
    # Chunks join seamlessly: only the weekend break moves the open away from the last close.
    after_break = np.diff(frame["timestamp"].to_numpy()) > np.timedelta64(1, "m")
    continuous = frame["open"].to_numpy()[1:] == frame["close"].to_numpy()[:-1]
    assert continuous[~after_break].all()
    assert after_break.sum() == 1


def test_source_is_reproducible_and_seed_dependent():
    def first_bars(seed):
        source = SyntheticBarSource(after=datetime(2024, 3, 5, tzinfo=UTC), last_close=18_000.0,
                                    tick_size=NQ_TICK, seed=seed, timeframe="5m", chunk=100)
        return list(itertools.islice(source, 250))

    assert first_bars(3) == first_bars(3)
    assert first_bars(3) != first_bars(4)


def test_source_refuses_bad_inputs():
    with pytest.raises(ValueError, match="last_close"):
        SyntheticBarSource(after=datetime(2024, 3, 5, tzinfo=UTC), last_close=0, tick_size=NQ_TICK, seed=1)
    with pytest.raises(ValueError, match="chunk"):
        SyntheticBarSource(after=datetime(2024, 3, 5, tzinfo=UTC), last_close=1.0, tick_size=NQ_TICK, seed=1, chunk=0)


# ------------------------------------------------------------------------------------------ planted signal

PLANTED = SyntheticParams(**DEMO_SIGNAL)
BAR_FIELDS = ["timestamp", "open", "high", "low", "close", "volume"]


def test_the_planted_signal_is_off_by_default():
    assert not SyntheticParams().planted
    assert SyntheticParams().signal_rate == 0
    assert PLANTED.planted


@pytest.mark.parametrize("chunk", [1, 7, 500])
@pytest.mark.parametrize("cut", [1, 2_500])
def test_a_planted_series_continued_bar_by_bar_is_the_series_generated_in_one_go(cut, chunk):
    # Across the weekend break too: 2,500 bars after Friday afternoon reach into the next week.
    stamps = session_timestamps(datetime(2024, 3, 7, 12, 0, tzinfo=UTC), 4_000)
    whole = generate_bars(stamps, seed=21, start_price=18_000.0, tick_size=NQ_TICK, params=PLANTED)
    history, state = generate_bars_with_state(stamps[:cut], seed=21, start_price=18_000.0, tick_size=NQ_TICK,
                                              params=PLANTED)
    source = SyntheticBarSource(state=state, tick_size=NQ_TICK, seed=21, params=PLANTED, chunk=chunk)
    live = frame_from_bars(itertools.islice(source, len(stamps) - cut))
    joined = pd.concat([history[BAR_FIELDS], live[BAR_FIELDS]], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole[BAR_FIELDS], check_dtype=False)


def test_a_cut_during_a_signal_carries_it_over():
    stamps = session_timestamps(datetime(2024, 3, 5, tzinfo=UTC), 3_000)
    whole = generate_bars(stamps, seed=4, start_price=18_000.0, tick_size=NQ_TICK, params=PLANTED)
    signals = np.flatnonzero(planted_signals(whole, seed=4, params=PLANTED))
    cut = int(signals[len(signals) // 2]) + 3  # three bars into a signal's drift
    _, state = generate_bars_with_state(stamps[:cut], seed=4, start_price=18_000.0, tick_size=NQ_TICK, params=PLANTED)
    assert state.signal in (-1, 1) and state.signal_left > 0
    live = frame_from_bars(itertools.islice(
        SyntheticBarSource(state=state, tick_size=NQ_TICK, seed=4, params=PLANTED, chunk=1), 50))
    assert (live["close"].to_numpy() == whole["close"].to_numpy()[cut:cut + 50]).all()


def test_a_planted_series_keeps_the_bar_contract_and_is_seeded():
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 20_000)
    frame = generate_bars(stamps, seed=8, start_price=18_000.0, tick_size=NQ_TICK, params=PLANTED)
    _assert_contract(frame, NQ_TICK)
    pd.testing.assert_frame_equal(
        frame, generate_bars(stamps, seed=8, start_price=18_000.0, tick_size=NQ_TICK, params=PLANTED))
    plain = generate_bars(stamps, seed=8, start_price=18_000.0, tick_size=NQ_TICK)
    assert not frame["close"].equals(plain["close"])


def test_signals_are_volume_spikes_whose_direction_drifts_the_following_bars():
    stamps = session_timestamps(datetime(2023, 1, 2, tzinfo=UTC), 200_000)
    frame = generate_bars(stamps, seed=13, start_price=18_000.0, tick_size=NQ_TICK, params=PLANTED)
    signal = planted_signals(frame, seed=13, params=PLANTED)
    assert abs((signal != 0).mean() - PLANTED.signal_rate) < 0.005
    log_volume = np.log1p(frame["volume"].to_numpy())
    minute = _minute_of_day_ny(frame["timestamp"])
    # Against bars at the same time of day, a spike trades several times the volume.
    usual = pd.Series(log_volume[signal == 0]).groupby(minute[signal == 0]).median()
    excess = log_volume[signal != 0] - usual.reindex(minute[signal != 0]).to_numpy()
    assert np.nanmedian(excess) > np.log(PLANTED.signal_volume) - 0.3
    # The next `signal_persist` bars move the way the spike bar did, by about edge * sigma a bar.
    r = np.r_[np.diff(np.log(frame["close"].to_numpy())), 0.0]  # r[t]: the move over bar t+1
    sd = pd.Series(r).groupby(minute).transform("std").to_numpy()
    after = [
        signal[t] * r[t + k] / sd[t + k]
        for t in np.flatnonzero(signal) for k in range(PLANTED.signal_persist // 2)
        if t + k + 1 < len(r) and not signal[t + 1:t + k + 1].any()
    ]
    assert 0.5 * PLANTED.signal_edge < np.mean(after) < 1.5 * PLANTED.signal_edge
    quiet = np.ones(len(r), dtype=bool)
    for t in np.flatnonzero(signal):
        quiet[t:t + PLANTED.signal_persist + 1] = False
    assert abs(np.mean(r[quiet] / sd[quiet])) < 0.02


def test_default_series_have_no_planted_signals():
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 100)
    frame = generate_bars(stamps, seed=8, start_price=18_000.0, tick_size=NQ_TICK)
    assert not planted_signals(frame, seed=8, params=SyntheticParams()).any()


@pytest.mark.parametrize(
    "field, value",
    [("signal_rate", -0.1), ("signal_rate", 1.0), ("signal_edge", -1.0), ("signal_edge", float("inf")),
     ("signal_persist", 0), ("signal_persist", 2.5), ("signal_volume", 0.5)],
)
def test_bad_signal_parameters_are_refused_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticParams(**{**DEMO_SIGNAL, field: value})


def test_a_source_state_must_match_the_params():
    stamps = session_timestamps(datetime(2024, 3, 1, tzinfo=UTC), 10)
    _, plain_state = generate_bars_with_state(stamps, seed=1, start_price=100.0, tick_size=NQ_TICK)
    with pytest.raises(ValueError, match="state"):
        SyntheticBarSource(state=plain_state, tick_size=NQ_TICK, seed=1, params=PLANTED)
