"""The contract every ensemble member keeps, the hyperparameter presets, and the input checks they share."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Member(Protocol):
    """One ensemble member for one side: P(take-profit first) from a feature row or a sequence of rows.

    `kind == "row"` members take (n, n_features) batches and 1-D rows; `kind == "sequence"` members
    take (n, seq_len, n_features) batches and 2-D (seq_len, n_features) samples. `predict_proba`
    returns float64 P(y=1); `predict_one` is the single-sample hot path and gives a sample the
    bits `predict_proba` gives it in any batch (back-tests replay the live path exactly). `save` writes the library's native format and returns the file
    names; `load` rebuilds the member from them and the saved `params`. `fit_seconds` is set by
    `fit` (training benchmarks report it).
    """

    name: str
    kind: Literal["row", "sequence"]
    params: dict
    fit_seconds: float | None

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> None: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def predict_one(self, x: np.ndarray) -> float: ...

    def save(self, folder: Path) -> list[str]: ...

    @classmethod
    def load(cls, folder: Path, params: dict) -> "Member": ...


# Hyperparameters per preset. Financial labels are noisy: shallow, strongly regularised trees with a
# small learning rate generalise as well as deep ones and cost a fraction of the fit time, so the
# "full" preset stays inside the training budget (all members on ~70k rows x ~25 features in
# <= ~40 s on 2 cores) and every member answers one sample well under 200 µs. "fast" trains a
# usable version in a few seconds for development, tests and smoke runs.
# `threads` is the fit-time thread count; predictions do not depend on it (same model with 1 or 2
# threads, checked for every tree member), and single-sample prediction always uses one thread.
# On a busy 2-core box the OpenMP boosters (XGBoost, LightGBM) can fit 3-10x slower with 2 threads
# than with 1 (spinning workers fight other processes); set threads=1 where training shares the cores.
# XGBoost and LightGBM fit with one OpenMP thread: on two shared cores (web, feed, a second test worker) two
# threads made their fit times erratic (1 s to 20 s); predictions do not depend on the thread count.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "lstm": {
            "seq_len": 20,
            "units": 32,
            "epochs": 4,
            "batch_size": 256,
            "learning_rate": 0.002,
        },
        "xgboost": {
            "n_rounds": 250,
            "max_depth": 4,
            "learning_rate": 0.05,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 25.0,
            "reg_lambda": 5.0,
            "max_bin": 128,
            "threads": 1,
        },
        "lightgbm": {
            "n_rounds": 250,
            "num_leaves": 15,
            "max_depth": 4,
            "learning_rate": 0.05,
            "min_data_in_leaf": 200,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "lambda_l2": 5.0,
            "max_bin": 127,
            "threads": 1,
        },
        "random_forest": {
            "n_estimators": 100,
            "max_depth": 8,
            "min_samples_leaf": 50,
            "max_features": "sqrt",
            "max_samples": 0.5,
            "threads": 2,
        },
        "catboost": {
            "iterations": 250,
            "depth": 5,
            "learning_rate": 0.05,
            "l2_leaf_reg": 5.0,
            "border_count": 128,
            "threads": 2,
        },
        "meta": {"C": 1.0},
    },
    "fast": {
        "lstm": {
            "seq_len": 20,
            "units": 8,
            "epochs": 2,
            "batch_size": 256,
            "learning_rate": 0.005,
        },
        "xgboost": {
            "n_rounds": 60,
            "max_depth": 3,
            "learning_rate": 0.15,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 25.0,
            "reg_lambda": 5.0,
            "max_bin": 64,
            "threads": 1,
        },
        "lightgbm": {
            "n_rounds": 60,
            "num_leaves": 7,
            "max_depth": 3,
            "learning_rate": 0.15,
            "min_data_in_leaf": 200,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "lambda_l2": 5.0,
            "max_bin": 63,
            "threads": 1,
        },
        "random_forest": {
            "n_estimators": 30,
            "max_depth": 6,
            "min_samples_leaf": 50,
            "max_features": "sqrt",
            "max_samples": 0.3,
            "threads": 2,
        },
        "catboost": {
            "iterations": 60,
            "depth": 4,
            "learning_rate": 0.15,
            "l2_leaf_reg": 5.0,
            "border_count": 64,
            "threads": 2,
        },
        "meta": {"C": 1.0},
    },
}


def member_params(name: str, preset: str = "full", overrides: Mapping[str, Any] | None = None) -> dict:
    """A fresh copy of one member's hyperparameters from a preset, with `overrides` applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    if name not in PRESETS[preset]:
        raise ValueError(f"preset {preset!r} has no member {name!r}; known: {sorted(PRESETS[preset])}")
    params = copy.deepcopy(PRESETS[preset][name])
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise ValueError(f"unknown {name} hyperparameters: {sorted(unknown)}")
    params.update(overrides or {})
    return params


def check_rows(X: np.ndarray, dtype=np.float64) -> np.ndarray:
    """A 2-D (n, n_features) batch as a C-contiguous array of `dtype`."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D (n, n_features) array, got shape {X.shape}")
    return np.ascontiguousarray(X, dtype=dtype)


def check_labels(y: np.ndarray, n: int) -> np.ndarray:
    """Binary labels as an int array of length `n`; both classes must be present to fit."""
    y = np.asarray(y).ravel()
    if y.shape[0] != n:
        raise ValueError(f"{y.shape[0]} labels for {n} samples")
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, got values {values[:10]}")
    if values.size < 2:
        raise ValueError("both classes (0 and 1) must be present to fit a member")
    return y.astype(np.int64)
