"""Benchmarks of the ML core, run by `manage.py bench inference|train`; each returns one dict of figures."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from trading.domain.synthetic import generate_bars, session_timestamps

from .domain.features import features_for_window
from .inference import LoadedModel
from .training import TrainConfig, train_model, training_plan


def _percentiles(samples_ms) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    return {q: round(float(np.percentile(values, int(q[1:]))), 4) for q in ("p50", "p95", "p99")}


def _synthetic_bars(n: int, seed: int) -> pd.DataFrame:
    stamps = session_timestamps(datetime(2024, 1, 1, tzinfo=UTC), n, timeframe="1m")
    return generate_bars(stamps, seed=seed, start_price=18_000.0, tick_size=0.25).drop(columns="row")


def bench_train(*, bars: int = 100_000, preset: str = "full", seed: int = 0, workers: tuple[int, ...] = (1, 2)) -> dict:
    """Training plus walk-forward evaluation on `bars` generated one-minute bars (no database), in this process; then
    the same training spread over 1 and 2 training workers (`distributed`, deployment mode only)."""
    frame = _synthetic_bars(bars, seed)
    config = TrainConfig(preset=preset, seed=seed)
    trained = train_model(frame, config)
    result = {
        "bench": "train",
        "bars": bars,
        "preset": preset,
        "seconds_total": round(trained.seconds_total, 2),
        "members": trained.member_seconds,
        "has_edge": trained.has_edge,
    }
    if workers:
        result["distributed"] = bench_train_distributed(frame, config, workers=workers, reference=trained.report)
    return result


WORKER_READY_TIMEOUT = 180.0
DISTRIBUTED_TIMEOUT = 3 * 3600.0


def bench_train_distributed(frame: pd.DataFrame, config: TrainConfig, *, workers: tuple[int, ...],
                            reference: dict | None = None) -> dict:
    """Wall time of a distributed training of `frame` (plan, member fits on the workers, assembly), for each count of
    training workers: worker processes of concurrency 1 started here on a queue of their own, against the configured
    DATABASE_URL / REDIS_URL and MEDIA_ROOT, ready before the clock starts, stopped after. `same_report` compares
    the assembled report with `reference` (the sequential training's)."""
    from django.conf import settings

    if not settings.REDIS_URL or settings.EMBEDDED:
        return {"skipped": "needs deployment mode (DATABASE_URL and REDIS_URL): the member fits run on Celery "
                           "workers through Redis"}
    from celery import current_app

    from mlcore import distributed
    from mlcore.services import _json_safe

    runs = {}
    for count in workers:
        queue = f"bench-training-{uuid.uuid4().hex[:8]}"
        with _training_workers(count, queue) as logs:
            started = time.perf_counter()
            plan = training_plan(frame, config)
            task_id = uuid.uuid4().hex
            distributed.training_dispatch(plan, then=distributed.training_bench_finish.s().set(task_id=task_id),
                                          queue=queue)
            summary = current_app.AsyncResult(task_id).get(timeout=DISTRIBUTED_TIMEOUT)
            wall = time.perf_counter() - started
        runs[f"{count}_workers"] = {
            "seconds_wall": round(wall, 2),
            "fits_per_worker": sorted(summary["fits_per_worker"].values(), reverse=True),
            "members": summary["member_seconds"],
            "same_report": None if reference is None else summary["report"] == _json_safe(reference),
            "worker_logs": logs,
        }
    return runs


@contextlib.contextmanager
def _training_workers(count: int, queue: str):
    """`count` Celery workers (concurrency 1) serving `queue` only, ready; yields their log folder, stops them."""
    from django.conf import settings

    folder = Path(tempfile.mkdtemp(prefix="minhos-bench-train-"))
    processes = []
    try:
        for i in range(count):
            log = (folder / f"worker-{i}.log").open("wb")
            processes.append((subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "minhos_site", "worker", "--loglevel", "INFO", "--concurrency",
                 "1", "-Q", queue, "-n", f"{queue}-{i}@%h", "--without-mingle", "--without-gossip"],
                cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log))
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        for i, (process, _) in enumerate(processes):
            path = folder / f"worker-{i}.log"
            while " ready." not in path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"training worker {i} did not start: see {path}")
                time.sleep(0.2)
        yield str(folder)
    finally:
        for process, _ in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, log in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()


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
