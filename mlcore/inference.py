"""One bar in, one decision-ready prediction out (pure): features of the last window, both sides, the choice; and the
same for every bar of a frame in one batch, bit for bit (back-tests replaying the live loop)."""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .domain.calibration import Calibrator
from .domain.features import (ATR_WINDOW, FEATURE_WINDOW, FeatureError, average_true_range, features_for_window,
                              features_for_windows)
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

    def predict_frame(self, frame: pd.DataFrame, *, first: int = 0) -> list[dict | None]:
        """`predict` for every bar of `frame` (bars oldest first, as `bars_frame` returns them) from `first` on, in one
        batch: element k is for bar i = first + k and equals `predict(frame.iloc[i - bars_needed + 1 : i + 1])` in
        every key, bit for bit, but the timings (latency_ms, and member_ms, are the batch's time per prediction).
        None where bar i has fewer than `bars_needed` bars up to it, or where `predict` would raise FeatureError.

        Each stage runs once over all the windows: the features of the whole frame (every feature reads a fixed
        window of bars on its own, so they are the window's), each member and meta-learner over all the rows
        (each gives a row the bits it gives it alone), the ATRs of the whole frame.
        """
        started = time.perf_counter()
        n = len(frame)
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or not 0 <= first <= n:
            raise ValueError(f"first must be an integer from 0 to len(frame) = {n}, got {first!r}")
        first = int(first)
        results: list[dict | None] = [None] * (n - first)
        needed = self.bars_needed
        start = max(first, needed - 1)  # the first bar with a whole window
        if start >= n:
            return results
        offset = start - needed + 1  # the first bar those windows read
        bars = frame.iloc[offset:]
        try:
            features, usable = features_for_windows(bars, rows=self.seq_len)
        except FeatureError:
            return results  # the columns or the timezone every window needs are missing: each predict would raise
        # Positions in `bars` of the bars to predict (all >= needed - 1); only those after `start` were asked for.
        ends = np.flatnonzero(usable[needed - 1:]) + needed - 1
        if len(ends) == 0:
            return results
        # Members run over the contiguous span of rows from the first to the last usable window; rows in between
        # that predict would refuse are computed and dropped, their NaN or infinite features zeroed first (XGBoost
        # refuses inf). A usable window's rows are all finite, so untouched.
        lo, hi = int(ends[0]), int(ends[-1]) + 1
        clean = np.where(np.isfinite(features), features, 0.0)
        span = clean[lo - self.seq_len + 1 : hi]  # every row of those windows
        # float32, as `predict` hands the LSTM its window (the values a sequence member standardises).
        span32 = span.astype(np.float32)
        rows = span[self.seq_len - 1 :]
        pick = ends - lo
        seconds = dict.fromkeys(self.sides[SIDES[0]].member_names, 0.0)
        members, raw, calibrated = {}, {}, {}
        for side, model in self.sides.items():
            P = np.empty((hi - lo, len(model.members)), dtype=np.float64)
            for j, member in enumerate(model.members):
                begun = time.perf_counter()
                P[:, j] = member.predict_proba_of_rows(span32) if member.kind == "sequence" else member.predict_proba(rows)
                seconds[member.name] = seconds.get(member.name, 0.0) + time.perf_counter() - begun
            members[side] = P[pick]
            raw[side] = model.meta.predict_proba(members[side])
            calibrated[side] = model.calibrate(raw[side])
        p_long, p_short = calibrated["long"], calibrated["short"]
        if not ((p_long >= 0) & (p_long <= 1) & (p_short >= 0) & (p_short <= 1)).all():
            bad = int(np.argmin((p_long >= 0) & (p_long <= 1) & (p_short >= 0) & (p_short <= 1)))
            decide(float(p_long[bad]), float(p_short[bad]))  # raises, as `predict` would for that bar
        # `decide` and `agreement` for all rows: the higher side (a tie goes long), and the share of the chosen
        # side's members voting with its confidence (take-profit first if >= 0.5).
        long_chosen = p_long >= p_short
        confidence = np.where(long_chosen, p_long, p_short)
        chosen = np.where(long_chosen[:, None], members["long"], members["short"])
        n_members = chosen.shape[1]
        take_profit_votes = (chosen >= 0.5).sum(axis=1)
        agreeing = np.where(confidence >= 0.5, take_profit_votes, n_members - take_profit_votes)
        agreements = agreeing / n_members if n_members else np.zeros(len(ends))
        atr, atr_reference = self._atrs(bars, ends)

        # Building 100,000s of small dicts triggers the cyclic garbage collector over and over (~20% of the batch's
        # time) though none of them can form a cycle: it is paused while they are built.
        collecting = gc.isenabled()
        gc.disable()
        try:
            positions = (offset + ends - first).tolist()
            self._assemble(results, positions, members, raw, p_long, p_short, agreements, atr, atr_reference)
            count = len(positions)
            latency_ms = (time.perf_counter() - started) * 1000.0 / count
            for k in positions:
                results[k]["member_ms"] = {name: spent * 1000.0 / count for name, spent in seconds.items()}
                results[k]["latency_ms"] = latency_ms
        finally:
            if collecting:
                gc.enable()
        return results

    def _assemble(self, results: list, positions: list[int], members: dict, raw: dict, p_long: np.ndarray,
                  p_short: np.ndarray, agreements: np.ndarray, atr: list, atr_reference: list) -> None:
        """`predict`'s result dicts (timings left None) into `results` at `positions`, from the batch's arrays."""
        long_names, short_names = (self.sides[side].member_names for side in SIDES)
        long_members = [dict(zip(long_names, row)) for row in members["long"].tolist()]
        short_members = [dict(zip(short_names, row)) for row in members["short"].tolist()]
        for k, (end, pl, ps, agree, rl, rs, a, ref) in enumerate(zip(
                positions, p_long.tolist(), p_short.tolist(), agreements.tolist(),
                raw["long"].tolist(), raw["short"].tolist(), atr, atr_reference)):
            long_side = pl >= ps
            results[end] = {
                "p_long": pl,
                "p_short": ps,
                "side": "long" if long_side else "short",
                "confidence": pl if long_side else ps,
                "agreement": agree,
                "members": {"long": long_members[k], "short": short_members[k]},
                "meta_raw": {"long": rl, "short": rs},
                "member_ms": None,
                "latency_ms": None,
                "atr": a,
                "atr_reference": ref,
            }

    def _atrs(self, bars: pd.DataFrame, ends: np.ndarray) -> tuple[list[float], list[float | None]]:
        """`predict`'s atr and atr_reference for the windows ending at `ends` (positions in `bars`).

        A window's own ATR is defined from its bar ATR_WINDOW on and equals the frame's there (it reads the same
        bars), so atr_reference is the median of the last `bars_needed - ATR_WINDOW` frame ATRs that are finite
        and positive. Windows whose ATRs all are take one vectorised median (the same partition and mean of the
        middle values as for one window); the others, rare, one by one.
        """
        atr = average_true_range(bars)
        span = self.bars_needed - ATR_WINDOW
        reference: list[float | None] = []
        for block_start in range(0, len(ends), 8192):
            block = ends[block_start : block_start + 8192]
            values = atr[block[:, None] + np.arange(1 - span, 1)]
            good = np.isfinite(values) & (values > 0)
            whole = good.all(axis=1)
            medians = np.full(len(block), np.nan)
            if whole.any():
                medians[whole] = np.median(values[whole], axis=1)
            out = medians.tolist()
            for k in np.flatnonzero(~whole).tolist():
                finite = values[k][good[k]]
                out[k] = float(np.median(finite)) if len(finite) else None
            reference += out
        return atr[ends].tolist(), reference
