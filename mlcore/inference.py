"""One bar in, one decision-ready prediction out (pure): features of the last window, both sides, the choice."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .domain.calibration import Calibrator
from .domain.features import FEATURE_WINDOW, average_true_range, features_for_window
from .domain.labels import SIDES
from .predictors.ensemble import SideModel
from .predictors.stacking import agreement, decide


@dataclass
class LoadedModel:
    """A model version's two side models, ready to predict one bar at a time."""

    version_id: int
    sides: dict[str, SideModel]
    seq_len: int

    @property
    def bars_needed(self) -> int:
        """Bars of history, ending at the bar to predict, that one prediction reads."""
        return FEATURE_WINDOW + self.seq_len - 1

    @classmethod
    def load(cls, folder: Path, *, version_id: int, seq_len: int) -> LoadedModel:
        sides = {side: SideModel.load(folder / side, calibrator_from_dict=Calibrator.from_dict) for side in SIDES}
        return cls(version_id=version_id, sides=sides, seq_len=seq_len)

    def predict(self, window: pd.DataFrame) -> dict:
        """Predict the last bar of `window` (at least `bars_needed` bars, oldest first).

        Returns p_long, p_short (calibrated), side, confidence, agreement, members {side: {member: p}},
        meta_raw {side: p}, latency_ms (features + every member + meta-learners + calibration), and for sizing
        atr (of the last bar, in price points) and atr_reference (median ATR over the window).
        """
        started = time.perf_counter()
        x_seq = features_for_window(window, rows=self.seq_len)
        x_row = x_seq[-1]
        x_seq32 = x_seq.astype(np.float32)
        out = {side: model.predict_one(x_row, x_seq32) for side, model in self.sides.items()}
        decision = decide(out["long"]["calibrated"], out["short"]["calibrated"])
        chosen = out[decision["side"]]
        result = {
            "p_long": decision["p_long"],
            "p_short": decision["p_short"],
            "side": decision["side"],
            "confidence": decision["confidence"],
            "agreement": agreement(np.fromiter(chosen["members"].values(), float), decision["confidence"]),
            "members": {side: out[side]["members"] for side in SIDES},
            "meta_raw": {side: out[side]["meta_raw"] for side in SIDES},
            # Each member's time, both sides together (monitoring's member latency figures).
            "member_ms": {name: sum(out[side]["member_ms"].get(name, 0.0) for side in SIDES)
                          for name in out[SIDES[0]]["member_ms"]},
        }
        result["latency_ms"] = (time.perf_counter() - started) * 1000.0
        # Outside the timed path: the sizing inputs, not part of the prediction itself.
        # Over exactly the bars a prediction reads, so a longer window hands back the same figures.
        atr = average_true_range(window.iloc[-self.bars_needed:])
        result["atr"] = float(atr[-1])
        finite = atr[np.isfinite(atr) & (atr > 0)]
        result["atr_reference"] = float(np.median(finite)) if len(finite) else None
        return result
