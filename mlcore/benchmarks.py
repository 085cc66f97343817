"""Benchmarks of the ML core, run by `manage.py bench inference|train`; each returns one dict of figures."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from trading.domain.synthetic import generate_bars, session_timestamps

from .domain.features import features_for_window
from .inference import LoadedModel
from .training import TrainConfig, train_model


def _percentiles(samples_ms) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    return {q: round(float(np.percentile(values, int(q[1:]))), 4) for q in ("p50", "p95", "p99")}


def _synthetic_bars(n: int, seed: int) -> pd.DataFrame:
    stamps = session_timestamps(datetime(2024, 1, 1, tzinfo=UTC), n, timeframe="1m")
    return generate_bars(stamps, seed=seed, start_price=18_000.0, tick_size=0.25).drop(columns="row")


def bench_train(*, bars: int = 100_000, preset: str = "full", seed: int = 0) -> dict:
    """Training plus walk-forward evaluation on `bars` generated one-minute bars (no database)."""
    frame = _synthetic_bars(bars, seed)
    trained = train_model(frame, TrainConfig(preset=preset, seed=seed))
    return {
        "bench": "train",
        "bars": bars,
        "preset": preset,
        "seconds_total": round(trained.seconds_total, 2),
        "members": trained.member_seconds,
        "has_edge": trained.has_edge,
    }


def bench_inference(*, bars: int = 20_000, preset: str = "full", seed: int = 0, predictions: int = 2000) -> dict:
    """Latency of one bar's prediction: features of the window, every member of both sides, meta-learners and
    calibration (no database), over `predictions` successive bars of a model trained on `bars` bars."""
    frame = _synthetic_bars(bars, seed)
    trained = train_model(frame, TrainConfig(preset=preset, seed=seed))
    model = LoadedModel(version_id=0, sides=trained.sides, seq_len=trained.seq_len)
    needed = model.bars_needed
    ends = np.linspace(needed, len(frame), num=min(predictions, len(frame) - needed), dtype=int)
    windows = [frame.iloc[end - needed:end] for end in ends]
    for window in windows[:50]:  # warm-up: the LSTM's jitted function compiles on first use
        model.predict(window)
    total = [model.predict(window)["latency_ms"] for window in windows]

    members: dict[str, list[float]] = {}
    features_ms = []
    clock = time.perf_counter
    for window in windows:
        t0 = clock()
        x_seq = features_for_window(window, rows=model.seq_len)
        features_ms.append((clock() - t0) * 1000)
        x_row, x_seq32 = x_seq[-1], x_seq.astype(np.float32)
        for side_model in model.sides.values():
            for member in side_model.members:
                t0 = clock()
                member.predict_one(x_seq32 if member.kind == "sequence" else x_row)
                members.setdefault(member.name, []).append((clock() - t0) * 1000)
    # A member's figure is its cost per bar: its long and its short model together.
    per_bar = {name: np.add(times[0::2], times[1::2]) for name, times in members.items()}
    return {
        "bench": "inference",
        "preset": preset,
        "predictions": len(windows),
        "total_ms": _percentiles(total),
        "members": {name: _percentiles(times) for name, times in per_bar.items()},
        "features_ms": _percentiles(features_ms),
    }
