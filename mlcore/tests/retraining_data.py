"""Series for the retraining tests: a random walk whose planted signal appears only after `before` bars (or never),
and the models trained on its parts once per test module (pure, no database)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mlcore.domain.planted import planted_signal_bars
from mlcore.training import TrainConfig

SEED = 11
CONFIG = TrainConfig(preset="fast", seed=SEED)
SPIKE_RATE = 0.05
EDGE = 0.5
CHAMPION_BARS = 4_000  # the champion trains on these, before any signal
LATER_BARS = 15_000  # then the bars the challenger trains on and both are scored on
# The market's policy in these tests: the challenger trains on the 12,000 bars before the newest 2,000 + horizon.
POLICY = {"window_bars": 12_000, "holdout_bars": 2_000, "min_new_bars": 600}


def regime_bars(*, signal_after: bool, seed: int = SEED) -> pd.DataFrame:
    """CHAMPION_BARS of a random walk (volume spikes that say nothing), then LATER_BARS in which the spikes carry the
    planted drift (`signal_after`) or still nothing. One continuous minute series (timestamp, OHLCV)."""
    first, _ = planted_signal_bars(CHAMPION_BARS, seed=seed, edge=0.0, spike_rate=SPIKE_RATE)
    last_close = float(first["close"].iloc[-1])
    second, _ = planted_signal_bars(LATER_BARS, seed=seed + 1, edge=EDGE if signal_after else 0.0,
                                    spike_rate=SPIKE_RATE, start_price=last_close)
    second["timestamp"] = second["timestamp"] + pd.Timedelta(minutes=CHAMPION_BARS)
    frame = pd.concat([first, second], ignore_index=True).drop(columns="row")
    assert frame["timestamp"].is_monotonic_increasing and np.isclose(second["open"].iloc[0], last_close)
    return frame
