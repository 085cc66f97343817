"""Out-of-sample evaluation: metrics, purged walk-forward splits, baselines, and an honest verdict on edge.

Walk-forward with purging: a label at bar i looks at bars i+1 .. i+H, so a training sample closer than H bars
to a test fold would have seen the test fold's prices. `walk_forward_splits(gap=H)` leaves those H samples out
(the purge; with an expanding window it is also the embargo, since no training sample ever comes after the
test fold). Pass a larger gap for an extra embargo against slowly decaying dependence.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ECE_BINS = 10
EDGE_MARGIN = 0.002  # log loss a model must beat every baseline by before we call it an edge
BASELINES = ("majority", "momentum", "logistic")
_CLIP = 1e-15


def binary_metrics(y, p) -> dict:
    """accuracy (p >= 0.5 predicts 1), log_loss, brier, roc_auc (NaN with one class), ece, n, base_rate, mean_p."""
    y, p = _check_pair(y, p)
    both = 0 < y.sum() < len(y)
    q = np.clip(p, _CLIP, 1.0 - _CLIP)
    return {
        "accuracy": float(accuracy_score(y, (p >= 0.5).astype(np.float64))),
        "log_loss": float(log_loss(y, q, labels=[0.0, 1.0])),
        "brier": float(np.mean((p - y) ** 2)),
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "ece": expected_calibration_error(y, p),
        "n": int(len(y)),
        "base_rate": float(y.mean()),
        "mean_p": float(p.mean()),
    }


def expected_calibration_error(y, p, *, bins: int = ECE_BINS) -> float:
    """Sum over equal-width probability bins of (share of samples) * |observed rate - mean predicted p|.

    Bins are [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] (the last one closed); empty bins count for nothing.
    """
    y, p = _check_pair(y, p)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    observed = np.bincount(index, weights=y, minlength=bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    return float(np.abs(observed - predicted).sum() / len(y))


def walk_forward_splits(n: int, *, n_folds: int, gap: int, min_train: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window (train, test) index pairs over samples 0 .. n-1 in time order.

    The test folds are contiguous, ordered, as equal as possible, and together cover samples
    min_train + gap .. n-1. Each train set is 0 .. test_start - gap - 1 (at least min_train samples), so with
    gap = the label horizon H no training label's horizon reaches into its test fold.
    """
    for name, value, low in (("n", n, 0), ("n_folds", n_folds, 1), ("gap", gap, 0), ("min_train", min_train, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    first_test = min_train + gap
    tested = n - first_test
    if tested < n_folds:
        raise ValueError(
            f"too few samples for walk-forward evaluation: {n} samples, but {min_train} (min_train) + {gap} (gap) "
            f"+ at least 1 per test fold x {n_folds} folds = {first_test + n_folds} are needed"
        )
    edges = first_test + (np.arange(n_folds + 1) * tested) // n_folds
    return [
        (np.arange(0, start - gap), np.arange(start, stop))
        for start, stop in zip(edges[:-1].tolist(), edges[1:].tolist())
    ]


def purged_block_splits(bounds, *, gap: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-fitting (train, test) index pairs over samples bounds[0] .. bounds[-1] - 1, cut into contiguous blocks
    [bounds[j], bounds[j + 1]): each block is a test set once, and its train set is every other sample except the
    `gap` samples on either side of the block.

    The purge before a block drops training labels that look into it; the one after it (the embargo) drops training
    samples whose label horizon would overlap the block's labels. Unlike walk-forward folds, later blocks train
    models that predict earlier ones: use this only to produce out-of-fold predictions for fitting a later layer
    (meta-learner, calibrator) inside a training window, never to score a model.
    """
    bounds = [int(b) for b in bounds]
    if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
        raise ValueError(f"gap must be an integer >= 0, got {gap!r}")
    if len(bounds) < 3 or bounds[0] != 0 or any(b <= a for a, b in zip(bounds[:-1], bounds[1:])):
        raise ValueError(f"bounds must start at 0, increase strictly and make at least 2 blocks, got {bounds}")
    end = bounds[-1]
    out = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        train = np.r_[np.arange(0, max(start - gap, 0)), np.arange(min(stop + gap, end), end)]
        if len(train) == 0:
            raise ValueError(f"block {start}..{stop - 1} leaves no training samples with a gap of {gap} on each side")
        out.append((train, np.arange(start, stop)))
    return out


def baseline_probabilities(train_X, train_y, test_X, *, momentum_col: int, seed: int) -> dict[str, np.ndarray]:
    """P(y = 1) on test_X from three baselines fitted on the training data only.

    majority  the training base rate for every sample (a constant: its accuracy is the majority class's);
    momentum  P(y | sign of column `momentum_col`), the rate within each sign (-, 0, +) on train, Laplace-smoothed
              (a sign never seen in training gets the base rate);
    logistic  sklearn LogisticRegression (C=1) on standardised features (the base rate if train has one class).
    """
    train_X, test_X = np.asarray(train_X, dtype=np.float64), np.asarray(test_X, dtype=np.float64)
    train_y = np.asarray(train_y, dtype=np.float64).ravel()
    if train_X.ndim != 2 or test_X.ndim != 2 or train_X.shape[1] != test_X.shape[1]:
        raise ValueError(f"train_X {train_X.shape} and test_X {test_X.shape} must be 2-D with the same columns")
    if len(train_X) != len(train_y) or len(train_y) == 0:
        raise ValueError(f"train_X has {len(train_X)} rows, train_y {len(train_y)}; both must be equal and > 0")
    if not (np.isfinite(train_X).all() and np.isfinite(test_X).all()):
        raise ValueError("baseline features must be finite (drop warm-up rows first)")
    if not np.isin(train_y, (0.0, 1.0)).all():
        raise ValueError("train_y must contain only 0 and 1")
    if not 0 <= momentum_col < train_X.shape[1]:
        raise ValueError(f"momentum_col {momentum_col} is not a column of the {train_X.shape[1]} features")

    rate = float(train_y.mean())
    clipped_rate = min(max(rate, 1e-6), 1 - 1e-6)
    out = {"majority": np.full(len(test_X), clipped_rate)}

    train_sign, test_sign = np.sign(train_X[:, momentum_col]), np.sign(test_X[:, momentum_col])
    momentum = np.full(len(test_X), clipped_rate)
    for sign in (-1.0, 0.0, 1.0):
        in_train = train_sign == sign
        if in_train.any():
            momentum[test_sign == sign] = (train_y[in_train].sum() + 1.0) / (in_train.sum() + 2.0)
    out["momentum"] = momentum

    if 0 < train_y.sum() < len(train_y):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))
        model.fit(train_X, train_y)
        out["logistic"] = model.predict_proba(test_X)[:, 1]
    else:
        out["logistic"] = np.full(len(test_X), clipped_rate)
    return out


def edge_verdict(model_metrics: dict, baseline_metrics: dict[str, dict], *, margin: float = EDGE_MARGIN,
                 model_name: str = "meta-learner") -> dict:
    """Has the model an edge over the baselines, out of sample? Returns has_edge, statement and the figures.

    An edge needs both: a log loss lower than EVERY baseline's by at least `margin`, and a ROC AUC at least
    the best baseline's. Anything less is reported as no edge, naming the baseline that was not beaten.
    """
    if not baseline_metrics:
        raise ValueError("edge_verdict needs at least one baseline's metrics")
    model_loss = float(model_metrics["log_loss"])
    model_auc = float(model_metrics.get("roc_auc", math.nan))
    losses = {name: float(m["log_loss"]) for name, m in baseline_metrics.items()}
    aucs = {name: float(m.get("roc_auc", math.nan)) for name, m in baseline_metrics.items()}
    best_loss_name = min(losses, key=losses.get)
    best_loss = losses[best_loss_name]
    known_aucs = {k: v for k, v in aucs.items() if not math.isnan(v)}
    best_auc_name = max(known_aucs, key=known_aucs.get) if known_aucs else None
    best_auc = known_aucs[best_auc_name] if best_auc_name else math.nan
    improvement = best_loss - model_loss

    figures = {
        "margin": margin,
        "model_log_loss": model_loss,
        "best_baseline_by_log_loss": best_loss_name,
        "best_baseline_log_loss": best_loss,
        "log_loss_improvement": improvement,
        "model_roc_auc": model_auc,
        "best_baseline_by_roc_auc": best_auc_name,
        "best_baseline_roc_auc": best_auc,
    }
    if not math.isfinite(model_loss):
        return {"has_edge": False, **figures,
                "statement": f"No edge: the {model_name}'s out-of-sample log loss is {model_loss}."}
    if improvement < margin:
        if improvement <= 0:
            comparison = f"is not better than the {best_loss_name} baseline's {best_loss:.4f}"
        else:
            comparison = (f"beats the {best_loss_name} baseline's {best_loss:.4f} by only {improvement:.4f}, "
                          f"less than the required {margin:.4f}")
        return {"has_edge": False, **figures, "statement": (
            f"No edge: the {model_name}'s out-of-sample log loss {model_loss:.4f} {comparison}."
        )}
    if math.isnan(model_auc) or (best_auc_name is not None and model_auc < best_auc):
        shown = "undefined" if math.isnan(model_auc) else f"{model_auc:.4f}"
        return {"has_edge": False, **figures, "statement": (
            f"No edge: the {model_name}'s out-of-sample log loss {model_loss:.4f} beats every baseline, but its "
            f"ROC AUC {shown} is below the {best_auc_name} baseline's {best_auc:.4f}: it ranks outcomes no better."
        )}
    auc_part = f"its ROC AUC {model_auc:.4f}" + (
        f" is at least the best baseline's ({best_auc_name}, {best_auc:.4f})" if best_auc_name else ""
    )
    return {"has_edge": True, **figures, "statement": (
        f"Edge: the {model_name}'s out-of-sample log loss {model_loss:.4f} beats every baseline by at least "
        f"{margin:.4f} (best baseline: {best_loss_name}, {best_loss:.4f}), and {auc_part}."
    )}


def _check_pair(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y has {y.size} values, p has {p.size}")
    if len(y) == 0:
        raise ValueError("no samples to evaluate")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 and 1 (drop unresolved NaN labels first)")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("p must be finite probabilities in [0, 1]")
    return y, p
