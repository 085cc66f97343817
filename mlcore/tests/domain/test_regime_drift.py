"""The feed's regime shifts (`run_feed --regime`) move the features far from a training window's distribution: the
population stability index against the demo history's reference bins (pure: generator, features, drift)."""
import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlcore.domain.drift import SIGNIFICANT, psi, reference_bins, shares_of
from mlcore.domain.features import FEATURE_WINDOW, compute_features
from trading.domain.bars import frame_from_bars
from trading.domain.synthetic import (
    DEMO_SIGNAL,
    RegimeShift,
    SyntheticBarSource,
    SyntheticParams,
    generate_bars_with_state,
    session_timestamps_between,
)

PARAMS = SyntheticParams(**DEMO_SIGNAL)
# Five days of demo history, as `manage.py start` makes on its first start; it ends on a Wednesday at 06:00 New York
# time, so the feed's first bars are European-morning bars, neither the quietest nor the busiest of the day.
HISTORY_END = datetime(2024, 3, 6, 11, 0, tzinfo=UTC)
SEED = 42
SESSION = 1_380  # one-minute bars in a Globex session
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
VOLATILITY_FEATURES = ("atr_pct", "rvol_20")
TREND_FEATURES = ("ret_60", "ma_dist_60")


@pytest.fixture(scope="module")
def history():
    stamps = session_timestamps_between(HISTORY_END - timedelta(days=5), HISTORY_END)
    return generate_bars_with_state(stamps, seed=SEED, start_price=18_000.0, tick_size=0.25, params=PARAMS)


@pytest.fixture(scope="module")
def reference(history):
    features = compute_features(history[0])
    return {name: reference_bins(features[name].to_numpy()) for name in VOLATILITY_FEATURES + TREND_FEATURES}


@pytest.fixture(scope="module")
def live(history):
    """kind -> the features of the feed's first session of bars in that regime (the history's last bars give
    their windows)."""
    bars, state = history
    out = {}
    for kind in ("normal", "volatility-shock", "trend"):
        source = SyntheticBarSource(state=state, tick_size=0.25, seed=SEED, params=PARAMS,
                                    shift=RegimeShift(kind=kind))
        fed = frame_from_bars(itertools.islice(source, SESSION))
        joined = pd.concat([bars[COLUMNS].tail(FEATURE_WINDOW + 60), fed[COLUMNS]], ignore_index=True)
        out[kind] = compute_features(joined).tail(SESSION).reset_index(drop=True)
    return out


def _psi(live_features: pd.DataFrame, reference: dict, name: str, n: int) -> float:
    return psi(reference[name]["shares"], shares_of(live_features[name].to_numpy()[:n], reference[name])[0])


def _top_share(live_features: pd.DataFrame, reference: dict, name: str, n: int) -> float:
    """Share of the live values beyond the reference's highest decile edge."""
    return float((live_features[name].to_numpy()[:n] > reference[name]["edges"][-1]).mean())


@pytest.mark.parametrize("name", VOLATILITY_FEATURES)
def test_a_volatility_shock_drives_the_psi_of_volatility_features_far_past_significant_within_150_bars(
        live, reference, name):
    """Measured over the first 150 bars: atr_pct 6.4, rvol_20 6.0 (the same bars unshocked: 5.1 and 4.2, a slice of
    the day against whole days, which is why the top-decile shares say more here than the PSI does)."""
    shocked = _psi(live["volatility-shock"], reference, name, 150)
    assert shocked > 4 * SIGNIFICANT, shocked
    # Nearly all of its values lie beyond the training window's top decile; the same bars unshocked do not.
    assert _top_share(live["volatility-shock"], reference, name, 150) >= 0.9
    assert _top_share(live["normal"], reference, name, 150) <= 0.5


@pytest.mark.parametrize("name", VOLATILITY_FEATURES)
def test_over_a_session_the_normal_feed_stays_near_the_reference_and_the_shock_does_not(live, reference, name):
    """150 bars are one slice of the day (a volatility feature's PSI over them is high by time of day alone); over a
    whole session the normal feed comes back near the reference, the shocked one stays far away. Measured: atr_pct
    0.37 (normal) against 5.9 (shocked), rvol_20 0.26 against 5.3."""
    normal = _psi(live["normal"], reference, name, SESSION)
    shocked = _psi(live["volatility-shock"], reference, name, SESSION)
    assert normal < 2 * SIGNIFICANT, normal
    assert shocked > 10 * SIGNIFICANT, shocked
    assert np.isfinite([normal, shocked]).all()


@pytest.mark.parametrize("name", TREND_FEATURES)
def test_a_trend_drives_the_psi_of_trend_features_past_significant(live, reference, name):
    """Measured: ret_60 3.9 and ma_dist_60 3.4 over the session, against 0.20 and 0.27 for the normal feed."""
    trending = _psi(live["trend"], reference, name, SESSION)
    normal = _psi(live["normal"], reference, name, SESSION)
    assert trending > 4 * SIGNIFICANT, trending
    assert trending > 3 * normal, (trending, normal)
    # Two thirds of the session beyond the training window's top decile (sigma-scaled, the drift is smallest in the
    # quiet hours, where a 60-bar move of 18 sigma is still within the busy hours' range).
    assert _top_share(live["trend"], reference, name, SESSION) >= 0.5


def test_psi_verdicts_read_against_the_training_series_own_windows_flag_a_shock_and_not_a_normal_session(history,
                                                                                                         live):
    from mlcore.domain.drift import psi_report
    from mlcore.domain.features import FEATURE_NAMES

    features = compute_features(history[0])
    judged = [name for name in FEATURE_NAMES if not name.startswith(("tod_", "dow_"))]
    references = {name: reference_bins(features[name].to_numpy()) for name in judged}

    def significant(kind):
        return [name for name in judged
                if psi_report(live[kind][name].to_numpy(), references[name])["band"] == "significant"]

    assert significant("normal") == []  # a calm session is not called drifted, whatever its time of day
    shocked = significant("volatility-shock")
    assert {"atr_pct", "rvol_20"} <= set(shocked) and len(shocked) / len(judged) >= 0.25, shocked
    assert len(significant("trend")) / len(judged) >= 0.25
