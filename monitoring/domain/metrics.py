"""Live model metrics over a window of resolved predictions, each with a confidence interval and a verdict against
the version's own out-of-sample figures from training. Pure: numpy, scipy and scikit-learn's metrics.

Statistics, so that "worse than expected" does not flip with sample size:
- accuracy, log loss and Brier are means of per-prediction scores: live minus training, over the standard error
  of the difference, sd_live * sqrt(1/n_live + 1/n_train) (the training fold's own noise included);
- ROC AUC: the Hanley-McNeil standard error on both sides;
- ECE: a seeded bootstrap interval of the live figure against the training point;
- hit rate: under calibration the number of take-profits among n predictions with probabilities p_i is a sum of
  independent Bernoullis, mean sum(p_i), variance sum(p_i (1 - p_i)); the one-sided p-value of the realised count
  says how surprising a shortfall is (confidence-based performance estimation, as NannyML calls it). The same
  mean is the expected hit rate of predictions still waiting for their outcome;
- calibration: the Hosmer-Lemeshow statistic over the reliability table's buckets (chi-square with one degree of
  freedom per non-empty bucket: the probabilities were calibrated on other data, nothing is fitted here).
Under `MIN_COUNT` outcomes no verdict is given ("insufficient"), and the page says so.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

MIN_COUNT = 50
BUCKETS = 10
Z95 = 1.959963984540054
BOOTSTRAP = 200
BOOTSTRAP_SAMPLE = 10_000
_CLIP = 1e-15
# Direction of "worse" per metric: +1 when higher is worse.
WORSE_IF_HIGHER = {"accuracy": -1, "log_loss": +1, "brier": +1, "ece": +1, "roc_auc": -1}


def _pair(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} outcomes against {len(p)} probabilities")
    if len(y) and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0 or 1")
    if len(p) and not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("probabilities must be finite and in [0, 1]")
    return y, p


def bucket_index(p: np.ndarray, buckets: int = BUCKETS) -> np.ndarray:
    """Equal-width buckets [0, 0.1), ..., [0.9, 1.0] (the last closed), as in training's ECE."""
    return np.minimum((p * buckets).astype(np.int64), buckets - 1)


def reliability_table(y, p, *, buckets: int = BUCKETS) -> list[dict]:
    """Per probability bucket: count, mean predicted, realised rate with its Wilson 95% interval (None if empty)."""
    y, p = _pair(y, p)
    index = bucket_index(p, buckets)
    counts = np.bincount(index, minlength=buckets)
    hits = np.bincount(index, weights=y, minlength=buckets)
    predicted = np.bincount(index, weights=p, minlength=buckets)
    table = []
    for b in range(buckets):
        n = int(counts[b])
        low, high = wilson(hits[b], n) if n else (None, None)
        table.append({
            "bucket": [b / buckets, (b + 1) / buckets], "count": n,
            "mean_predicted": float(predicted[b] / n) if n else None,
            "realised_rate": float(hits[b] / n) if n else None, "rate_low": low, "rate_high": high,
        })
    return table


def expected_calibration_error(y, p, *, buckets: int = BUCKETS) -> float:
    y, p = _pair(y, p)
    index = bucket_index(p, buckets)
    observed = np.bincount(index, weights=y, minlength=buckets)
    predicted = np.bincount(index, weights=p, minlength=buckets)
    return float(np.abs(observed - predicted).sum() / len(y))


def wilson(hits: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return (math.nan, math.nan)
    rate = hits / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def hosmer_lemeshow(y, p, *, buckets: int = BUCKETS) -> dict:
    """{"statistic", "df", "p_value"} over the non-empty buckets (a bucket whose expected rate is 0 or 1 is skipped)."""
    y, p = _pair(y, p)
    index = bucket_index(p, buckets)
    n = np.bincount(index, minlength=buckets).astype(np.float64)
    observed = np.bincount(index, weights=y, minlength=buckets)
    expected = np.bincount(index, weights=p, minlength=buckets)
    mean = np.divide(expected, n, out=np.zeros(buckets), where=n > 0)
    variance = n * mean * (1 - mean)
    used = variance > 0
    statistic = float(np.sum((observed[used] - expected[used]) ** 2 / variance[used]))
    df = int(used.sum())
    return {"statistic": statistic, "df": df, "p_value": float(stats.chi2.sf(statistic, df)) if df else math.nan}


def hit_rate_test(y, p) -> dict:
    """The realised hit count against what calibrated probabilities promise: expected rate, realised rate, z and
    the one-sided p-value of a shortfall at least this large (small: worse than expected)."""
    y, p = _pair(y, p)
    n = len(y)
    if n == 0:
        return {"n": 0, "expected_rate": None, "realised_rate": None, "z": None, "p_value": None}
    expected, variance = float(p.sum()), float((p * (1 - p)).sum())
    hits = float(y.sum())
    z = (hits - expected) / math.sqrt(variance) if variance > 0 else 0.0
    return {"n": n, "expected_rate": expected / n, "realised_rate": hits / n,
            "expected_low": max(0.0, (expected - Z95 * math.sqrt(variance)) / n),
            "expected_high": min(1.0, (expected + Z95 * math.sqrt(variance)) / n),
            "z": z, "p_value": float(stats.norm.cdf(z))}


def expected_hit_rate(p) -> dict:
    """What calibrated probabilities promise for predictions still waiting for their outcome (mean and 95% range)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    n = len(p)
    if n == 0:
        return {"n": 0, "expected_rate": None, "low": None, "high": None}
    expected, sd = float(p.sum()), math.sqrt(float((p * (1 - p)).sum()))
    return {"n": n, "expected_rate": expected / n, "low": max(0.0, (expected - Z95 * sd) / n),
            "high": min(1.0, (expected + Z95 * sd) / n)}


def _auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley and McNeil (1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return math.sqrt((auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc))
                     / (n_pos * n_neg))


def _verdict(name: str, difference: float, se: float) -> tuple[str, float | None]:
    """"worse", "better" or "as expected" at 95%, and z (difference over its standard error)."""
    if not (math.isfinite(difference) and math.isfinite(se)) or se <= 0:
        return ("as expected" if difference == 0 else "unknown"), None
    z = difference / se
    worse = WORSE_IF_HIGHER[name] * z
    return ("worse" if worse > Z95 else "better" if worse < -Z95 else "as expected"), z


def window_metrics(y, p, *, expected: dict | None = None, min_count: int = MIN_COUNT, seed: int = 0) -> dict:
    """The metrics of one window (outcomes y of one side or of the chosen side, calibrated probabilities p), each
    {"value", "low", "high", "expected", "verdict", "z"} against `expected` (training's out-of-sample figures for
    the same side: accuracy, log_loss, brier, ece, roc_auc, n), plus the reliability table, the hit-rate test and
    the Hosmer-Lemeshow test. Under `min_count` every verdict is "insufficient"."""
    # Imported here: the web process and the trading worker load this module (alerts, the admin) and never the ML
    # stack (minhos_site/tests/test_architecture.py).
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y, p = _pair(y, p)
    n = len(y)
    expected = expected or {}
    out: dict = {"n": n, "min_count": min_count, "sufficient": n >= min_count,
                 "reliability": reliability_table(y, p) if n else [], "hit_rate": hit_rate_test(y, p)}
    if n == 0:
        out["metrics"] = {name: {"value": None, "verdict": "insufficient"} for name in WORSE_IF_HIGHER}
        out["calibration_test"] = {"statistic": None, "df": 0, "p_value": None}
        return out
    q = np.clip(p, _CLIP, 1 - _CLIP)
    correct = ((p >= 0.5) == (y == 1)).astype(np.float64)
    per_sample = {
        "accuracy": correct,
        "log_loss": -(y * np.log(q) + (1 - y) * np.log(1 - q)),
        "brier": (p - y) ** 2,
    }
    values = {
        "accuracy": float(correct.mean()),
        "log_loss": float(log_loss(y, q, labels=[0.0, 1.0])),
        "brier": float(brier_score_loss(y, p)) if n else math.nan,
        "ece": expected_calibration_error(y, p),
    }
    both = 0 < y.sum() < n
    values["roc_auc"] = float(roc_auc_score(y, p)) if both else math.nan
    n_train = int(expected.get("n") or 0)
    metrics = {}
    for name, value in values.items():
        entry = {"value": _finite(value), "expected": _finite(expected.get(name)), "low": None, "high": None,
                 "verdict": "insufficient", "z": None}
        if name in per_sample:
            sd = float(per_sample[name].std(ddof=1)) if n > 1 else math.nan
            half = Z95 * sd / math.sqrt(n) if n > 1 else math.nan
            entry["low"], entry["high"] = _finite(value - half), _finite(value + half)
            se = sd * math.sqrt(1 / n + (1 / n_train if n_train else 0.0)) if n > 1 else math.nan
        elif name == "roc_auc" and both:
            n_pos = int(y.sum())
            se_live = _auc_se(value, n_pos, n - n_pos)
            entry["low"], entry["high"] = _finite(value - Z95 * se_live), _finite(value + Z95 * se_live)
            se_train = 0.0
            if n_train and entry["expected"] is not None:
                rate = expected.get("base_rate") or n_pos / n
                train_pos = max(1, round(n_train * rate))
                se_train = _auc_se(entry["expected"], train_pos, max(1, n_train - train_pos))
            se = math.sqrt(se_live ** 2 + se_train ** 2)
        elif name == "ece":
            low, high = _bootstrap_ece(y, p, seed=seed)
            entry["low"], entry["high"] = low, high
            se = (high - low) / (2 * Z95) if high is not None and low is not None else math.nan
        else:
            se = math.nan
        if n >= min_count and entry["expected"] is not None and entry["value"] is not None:
            entry["verdict"], entry["z"] = _verdict(name, entry["value"] - entry["expected"], se)
        elif n >= min_count:
            entry["verdict"] = "no reference"
        metrics[name] = entry
    out["metrics"] = metrics
    out["calibration_test"] = hosmer_lemeshow(y, p)
    out["base_rate"] = float(y.mean())
    out["mean_p"] = float(p.mean())
    return out


def _bootstrap_ece(y: np.ndarray, p: np.ndarray, *, seed: int) -> tuple[float | None, float | None]:
    """A percentile interval of the ECE. Over 10,000 predictions the resamples are of 10,000 (an m-out-of-n
    bootstrap) and their spread is scaled by sqrt(m / n), so a snapshot of 100,000 stays fast."""
    n = len(y)
    if n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    index = bucket_index(p)
    m = min(n, BOOTSTRAP_SAMPLE)
    picks = rng.integers(0, n, size=(BOOTSTRAP, m))
    offsets = (np.arange(BOOTSTRAP) * BUCKETS)[:, None]
    flat = (index[picks] + offsets).ravel()
    observed = np.bincount(flat, weights=y[picks].ravel(), minlength=BOOTSTRAP * BUCKETS).reshape(BOOTSTRAP, BUCKETS)
    predicted = np.bincount(flat, weights=p[picks].ravel(), minlength=BOOTSTRAP * BUCKETS).reshape(BOOTSTRAP, BUCKETS)
    values = np.abs(observed - predicted).sum(axis=1) / m
    point = expected_calibration_error(y, p)
    scale = math.sqrt(m / n)
    low, high = np.quantile(values, [0.025, 0.975])
    centre = values.mean()
    return float(max(0.0, point + (low - centre) * scale)), float(point + (high - centre) * scale)


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def latency_figures(latencies_ms) -> dict:
    """p50, p95, p99 and n of inference latencies in milliseconds (None without any)."""
    x = np.asarray(latencies_ms, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {"n": int(len(x)), "p50": float(p50), "p95": float(p95), "p99": float(p99)}
