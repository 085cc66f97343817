"""Realistic MetricSnapshot rows for page tests, made with the same pure cores the service uses (window metrics,
PSI reports, the health formula) on seeded synthetic outcomes, so their JSON has the service's shape."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from django.utils import timezone

from mlcore.domain import drift as drift_core
from mlcore.models import ModelVersion
from monitoring.domain import health as health_core
from monitoring.domain import metrics as metrics_core
from monitoring.models import MetricSnapshot
from monitoring.services import _json_safe as _json  # what the JSONField stores: numpy as Python numbers, NaN as None

TRAINING = {"accuracy": 0.62, "log_loss": 0.66, "brier": 0.234, "ece": 0.03, "roc_auc": 0.62, "n": 3000,
            "base_rate": 0.5}
FEATURES = ("ret_1", "ret_5", "atr_14", "volume_z", "range_pos_60")


def active_version(instrument, *, timeframe: str = "1m", has_edge: bool = True,
                   health_score: float | None = None) -> ModelVersion:
    """An active version row (no artifacts: the page never loads it) with training's out-of-sample figures."""
    return ModelVersion.objects.create(
        instrument=instrument, timeframe=timeframe, status=ModelVersion.Status.ACTIVE, preset="fast", seed=0,
        data_start=datetime(2024, 2, 1, tzinfo=UTC), data_end=datetime(2024, 2, 29, 21, tzinfo=UTC), n_bars=20_000,
        feature_names=list(FEATURES), feature_window=61, sequence_length=20, hyperparameters={},
        label_settings={"tp_atr": 2.0, "sl_atr": 1.0, "horizon": 30}, payoff_ratio=2.0,
        metrics={"long": {"meta": TRAINING}, "short": {"meta": TRAINING}}, has_edge=has_edge,
        edge_statement="Long: Edge (log loss 0.655 beats every baseline)" if has_edge else "No edge",
        health_score=health_score)


def _outcomes(rng, n: int, *, skill: float):
    """n calibrated-ish probabilities and outcomes: p ~ Beta around 0.55, y ~ Bernoulli(p - (1 - skill) * 0.1)."""
    p = np.clip(rng.beta(6, 5, size=n), 0.02, 0.98)
    y = (rng.random(n) < np.clip(p - (1 - skill) * 0.1, 0, 1)).astype(np.float64)
    return y, p


def snapshot_fields(*, outcomes: int = 320, skill: float = 1.0, has_edge: bool = True, drift_shift: float = 0.0,
                    pending: int = 7, live_bars: int = 600, latency_p99: float = 38.0, workers=None,
                    freshness: float = 12.0, seed: int = 7) -> dict:
    """The JSON fields of one snapshot (health_score, health_components, health_caps, metrics, drift, operations).
    `skill` 1.0: outcomes as calibrated as promised; lower: a shortfall. `drift_shift`: how far the live feature
    values moved from training (in standard deviations)."""
    rng = np.random.default_rng(seed)
    min_count = metrics_core.MIN_COUNT
    windows = {}
    for key, count, size in (("count", outcomes, 500), ("time", outcomes // 2, 24.0), ("version", outcomes, None)):
        y_long, p_long = _outcomes(rng, count, skill=skill)
        y_short, p_short = _outcomes(rng, count, skill=skill)
        chosen_long = p_long >= p_short
        y_chosen, p_chosen = np.where(chosen_long, y_long, y_short), np.where(chosen_long, p_long, p_short)
        windows[key] = {
            "size": size,
            "chosen": metrics_core.window_metrics(y_chosen, p_chosen, min_count=min_count),
            "long": metrics_core.window_metrics(y_long, p_long, expected=TRAINING, min_count=min_count),
            "short": metrics_core.window_metrics(y_short, p_short, expected=TRAINING, min_count=min_count),
        }
        if count:
            windows[key]["first_bar"], windows[key]["last_bar"] = "2024-03-04T14:30:00Z", "2024-03-05T20:59:00Z"
    metrics = {"windows": windows,
               "pending": metrics_core.expected_hit_rate(np.clip(rng.beta(6, 5, size=pending), 0.02, 0.98)),
               "counts": {"pending": pending, "resolved": outcomes, "unresolvable": 0},
               "training": {"long": TRAINING, "short": TRAINING}}

    features = {}
    for i, name in enumerate(FEATURES):
        reference = drift_core.reference_bins(rng.normal(size=4000))
        live = rng.normal(loc=drift_shift * (i + 1) / len(FEATURES), size=live_bars)
        report = drift_core.psi_report(live, reference)
        features[name] = {k: report[k] for k in ("psi", "excess", "band", "n", "n_effective", "psi_noise")}
    probability = {side: drift_core.psi_report(rng.beta(6, 5, size=live_bars),
                                               drift_core.reference_bins(rng.beta(6, 5, size=3000)))
                   for side in ("long", "short")}
    known = [(name, f["excess"]) for name, f in features.items() if f["excess"] is not None]
    max_feature, max_psi = max(known, key=lambda item: item[1]) if known else (None, None)
    excesses = [r["excess"] for r in probability.values() if r["excess"] is not None]
    drift = {"window_bars": 1380, "min_live": drift_core.MIN_LIVE, "features": features, "probability": probability,
             "probability_max": max(excesses) if excesses else None, "excluded": ["tod_sin", "tod_cos"],
             "reference_available": True, "live_bars": live_bars, "max_feature": max_feature, "max_psi": max_psi}

    latencies = rng.gamma(4.0, latency_p99 / 12.0, size=500)
    operations = {"latency": metrics_core.latency_figures(latencies), "predictions_per_minute": 0.9,
                  "freshness_seconds": freshness, "stale_after_seconds": 180.0, "market_open": True,
                  "workers": workers, "queues": {} if workers is None else {"trading": 0, "inference": 2}}

    chosen = windows["count"]["chosen"]
    inputs = health_core.HealthInputs(
        has_edge=has_edge, edge_statement="Long: Edge" if has_edge else "No edge",
        calibration_p=chosen["calibration_test"]["p_value"] if chosen["sufficient"] else None,
        accuracy_p=chosen["hit_rate"]["p_value"] if chosen["sufficient"] else None,
        outcomes=chosen["n"], min_outcomes=min_count, realised_rate=chosen["hit_rate"]["realised_rate"],
        expected_rate=chosen["hit_rate"]["expected_rate"],
        drift_features={name: f["excess"] for name, f in features.items()}, drift_probability=drift["probability_max"],
        latency_p99_ms=operations["latency"]["p99"], freshness_seconds=freshness, market_open=True,
        stale_after_seconds=180.0, workers=workers)
    score = health_core.health_score(inputs)
    return {"health_score": score.score, "health_components": [c.as_dict() for c in score.components],
            "health_caps": list(score.caps), "metrics": _json(metrics), "drift": _json(drift),
            "operations": _json(operations)}


def make_snapshot(instrument, version: ModelVersion | None, *, timeframe: str = "1m", taken_at=None,
                  trigger: str = MetricSnapshot.Trigger.SCHEDULE, **kwargs) -> MetricSnapshot:
    fields = snapshot_fields(**kwargs)
    return MetricSnapshot.objects.create(instrument=instrument, timeframe=timeframe, version=version,
                                         taken_at=taken_at or timezone.now(), trigger=trigger, seconds=0.42, **fields)


def make_series(instrument, version, *, count: int = 5, every: timedelta = timedelta(minutes=1), end=None,
                **kwargs) -> list[MetricSnapshot]:
    """`count` snapshots one `every` apart up to `end` (now), the newest last."""
    end = end or timezone.now()
    return [make_snapshot(instrument, version, taken_at=end - (count - 1 - i) * every, seed=i, **kwargs)
            for i in range(count)]

