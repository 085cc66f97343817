"""Single-sample latency of each member, the meta-learner, the calibrator and the whole side; and a synthetic fit/latency benchmark.

`python -m mlcore.predictors.timing [--preset full|fast] [--rows 70000] [--features 25]` prints JSON.
"""
from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Callable

import numpy as np

from .base import member_params
from .ensemble import MEMBER_ORDER, SideModel, fit_members, fit_seconds, make_sequences, predict_members
from .stacking import MetaLearner


def _percentiles(fn: Callable[[], object], repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = np.empty(repeats, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(repeats):
        started = clock()
        fn()
        samples[i] = clock() - started
    ms = samples / 1e6
    return {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
    }


def time_members(
    side_model: SideModel, x_row: np.ndarray, x_seq: np.ndarray, repeats: int = 1000, warmup: int = 50
) -> dict[str, dict[str, float]]:
    """{name: {"p50", "p95", "p99"}} in milliseconds for each member's `predict_one`, "meta",
    "calibration" (when there is a calibrator) and "side" (the whole `SideModel.predict_one`)."""
    x_row = np.asarray(x_row)
    x_seq = np.asarray(x_seq)
    report: dict[str, dict[str, float]] = {}
    for member in side_model.members:
        x = x_seq if member.kind == "sequence" else x_row
        report[member.name] = _percentiles(lambda m=member, x=x: m.predict_one(x), repeats, warmup)
    p = np.array([m.predict_one(x_seq if m.kind == "sequence" else x_row) for m in side_model.members])
    report["meta"] = _percentiles(lambda: side_model.meta.predict_one(p), repeats, warmup)
    if side_model.calibrator is not None:
        raw = np.array([side_model.meta.predict_one(p)])
        report["calibration"] = _percentiles(lambda: side_model.calibrator.transform(raw), repeats, warmup)
    report["side"] = _percentiles(lambda: side_model.predict_one(x_row, x_seq), repeats, warmup)
    return report


def benchmark(*, preset: str = "full", n_rows: int = 70_000, n_features: int = 25, seed: int = 0, repeats: int = 2000) -> dict:
    """Fit every member on synthetic rows (a weak planted signal, as in market data) and time them.

    The meta-learner is fitted in-sample here: the benchmark measures cost, not skill.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    y = (0.3 * X[:, 0] - 0.2 * X[:, 1] + rng.normal(size=n_rows) > 0).astype(np.int64)
    seq_len = member_params("lstm", preset)["seq_len"]
    X_seqs = make_sequences(X, seq_len)
    X_rows, y = X[seq_len - 1 :], y[seq_len - 1 :]
    members = fit_members(X_rows, X_seqs, y, preset=preset, seed=seed)
    P = predict_members(members, X_rows, X_seqs)
    meta = MetaLearner().fit(P, y, [m.name for m in members])
    side = SideModel(members, meta, side="long", preset=preset, n_features=n_features)
    gc.collect()
    latency = time_members(side, X_rows[-1], X_seqs[-1], repeats=repeats)
    return {
        "preset": preset,
        "rows": int(len(y)),
        "features": n_features,
        "fit_seconds": fit_seconds(members),
        "fit_seconds_total": float(sum(fit_seconds(members).values())),
        "latency_ms": latency,
        "members": list(MEMBER_ORDER),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--rows", type=int, default=70_000)
    parser.add_argument("--features", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(benchmark(preset=args.preset, n_rows=args.rows, n_features=args.features, seed=args.seed,
                               repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
