"""Triple-barrier labels: for each bar and side, did the take-profit come before the stop-loss within the horizon?

The label uses the bracket the trade will use, so a calibrated probability of the label is Kelly's `p` and the
payoff ratio b = take-profit / stop-loss (`LabelConfig.payoff_ratio`) is Kelly's `b`; store both with the model.

For bar t, with entry E = close_t and A = ATR_t (`features.average_true_range`):

    long   take-profit E + tp_atr * A   (touched when a later bar's high >= it)
           stop-loss   E - sl_atr * A   (touched when a later bar's low  <= it)
    short  take-profit E - tp_atr * A   (low  <= it)
           stop-loss   E + sl_atr * A   (high >= it)

The bars t+1 .. t+horizon are scanned in order; bar t itself is not (the entry is its close).

THE RULE, shared with the paper broker's bracket exits:
    1.0  the take-profit is touched on an earlier bar than the stop-loss;
    0.0  the stop-loss is touched first, OR both are touched within the same bar (we cannot see the order inside
         a bar, so it counts as the stop: the conservative reading), OR neither is touched within the horizon
         (a timeout: "the take-profit did not come first");
    NaN  not resolvable: fewer than `horizon` bars follow t (even if a barrier was already touched, so the tail
         is not biased towards quick outcomes), or ATR_t is NaN, infinite or <= 0.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trading.domain.sides import Side

SIDES = tuple(side.value for side in Side)  # the one vocabulary of sides (trading.domain.sides)


@dataclass(frozen=True)
class LabelConfig:
    """Bracket distances in ATR multiples and the horizon in bars."""

    tp_atr: float = 1.5
    sl_atr: float = 1.0
    horizon: int = 30

    def __post_init__(self):
        for name in ("tp_atr", "sl_atr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, numbers.Integral) or self.horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1 (bars), got {self.horizon!r}")

    @property
    def payoff_ratio(self) -> float:
        """Kelly's b: what a win pays per unit risked (take-profit distance / stop-loss distance)."""
        return float(self.tp_atr) / float(self.sl_atr)

    def to_dict(self) -> dict:
        """JSON-ready, with the payoff ratio spelled out for whoever sizes from this model version."""
        return {
            "tp_atr": float(self.tp_atr),
            "sl_atr": float(self.sl_atr),
            "horizon": int(self.horizon),
            "payoff_ratio": self.payoff_ratio,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LabelConfig:
        return cls(tp_atr=float(data["tp_atr"]), sl_atr=float(data["sl_atr"]), horizon=int(data["horizon"]))


def triple_barrier_labels(bars: pd.DataFrame, atr: np.ndarray, config: LabelConfig) -> pd.DataFrame:
    """Columns `long` and `short` (float: 1.0, 0.0 or NaN, see the module's rule), same index as `bars`."""
    if not isinstance(config, LabelConfig):
        raise ValueError(f"config must be a LabelConfig, got {type(config).__name__}")
    missing = [c for c in ("high", "low", "close") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {', '.join(missing)}")
    high, low, close = (bars[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close"))
    for name, values in (("high", high), ("low", low), ("close", close)):
        finite = np.isfinite(values)
        if not finite.all():
            i = int(np.argmin(finite))
            where = bars["timestamp"].iloc[i] if "timestamp" in bars.columns else f"position {i}"
            raise ValueError(f"{name} is {values[i]} at bar {where}: labels need finite prices")
    atr = np.asarray(atr, dtype=np.float64)
    if atr.shape != close.shape:
        raise ValueError(f"atr has shape {atr.shape}, bars have {len(close)} rows")

    n, horizon = len(close), int(config.horizon)
    never = horizon + 1
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(atr) & (atr > 0)
    usable[max(n - horizon, 0):] = False
    distance = np.where(usable, atr, 0.0)
    take, stop = config.tp_atr * distance, config.sl_atr * distance
    # For each barrier, the first offset k (1..horizon) at which a later bar touches it; `never` if none does.
    levels = {
        "long_tp": (close + take, True),
        "long_sl": (close - stop, False),
        "short_tp": (close - take, False),
        "short_sl": (close + stop, True),
    }
    first = {key: np.full(n, never, dtype=np.int32) for key in levels}
    for k in range(1, min(horizon, n - 1) + 1):
        later_high, later_low = high[k:], low[k:]
        for key, (level, upper) in levels.items():
            touched = later_high >= level[:-k] if upper else later_low <= level[:-k]
            head = first[key][:-k]
            np.minimum(head, np.where(touched, k, never), out=head)

    result = {}
    for side in SIDES:
        # Strictly earlier: a take-profit and a stop on the same bar count as the stop; a timeout is 0.
        won = first[f"{side}_tp"] < first[f"{side}_sl"]
        result[side] = np.where(usable, won.astype(np.float64), np.nan)
    return pd.DataFrame(result, index=bars.index, columns=list(SIDES))


@dataclass(frozen=True)
class SideOutcome:
    outcome: str  # "take_profit", "stop" or "timeout"
    exit_offset: int  # 1..horizon: the bar after the entry on which it resolved
    realised_return: float  # fraction of the entry close, for this side (a short gains when the price falls)


def barrier_outcome(entry: float, atr: float, high, low, close, config: LabelConfig) -> dict[str, SideOutcome | None]:
    """Each side's outcome of one entry at `entry` (the predicted bar's close) by THE RULE of this module, from the
    bars after it (`high`, `low`, `close`, oldest first; at most `config.horizon` of them are read).

    A side is decided as soon as one of its barriers is touched (a later bar cannot change which came first; a
    touch of both on one bar is the stop), or, untouched, once `horizon` bars have followed (a timeout, realised at
    the last bar's close). A side still open with fewer bars is None (pending). `triple_barrier_labels` gives 1.0
    exactly where this gives "take_profit" and 0.0 for "stop" and "timeout" (tested).
    """
    if not (math.isfinite(entry) and entry > 0):
        raise ValueError(f"entry {entry!r} is not a finite positive price")
    if not (math.isfinite(atr) and atr > 0):
        raise ValueError(f"ATR {atr!r} is not a finite positive number")
    horizon = int(config.horizon)
    high, low, close = (np.asarray(v, dtype=np.float64)[:horizon] for v in (high, low, close))
    take, stop = config.tp_atr * atr, config.sl_atr * atr
    levels = {"long": (entry + take, entry - stop), "short": (entry - take, entry + stop)}
    result: dict[str, SideOutcome | None] = {}
    for side, (tp_level, sl_level) in levels.items():
        sign = 1.0 if side == "long" else -1.0
        tp_hit = high >= tp_level if side == "long" else low <= tp_level
        sl_hit = low <= sl_level if side == "long" else high >= sl_level
        touched = np.flatnonzero(tp_hit | sl_hit)
        if len(touched):
            k = int(touched[0])
            if sl_hit[k]:
                result[side] = SideOutcome("stop", k + 1, sign * (sl_level - entry) / entry)
            else:
                result[side] = SideOutcome("take_profit", k + 1, sign * (tp_level - entry) / entry)
        elif len(close) >= horizon:
            result[side] = SideOutcome("timeout", horizon, sign * (close[horizon - 1] - entry) / entry)
        else:
            result[side] = None
    return result
