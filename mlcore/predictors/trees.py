"""Tree members on the feature row: XGBoost, LightGBM, CatBoost and a RandomForest with a vectorised single-sample path."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import catboost
import joblib
import lightgbm
import numpy as np
import xgboost
from sklearn.ensemble import RandomForestClassifier

from .base import check_labels, check_rows, member_params


class _RowMember:
    """Shared plumbing: params from the "full" preset unless given, and the fit timer."""

    name = ""
    kind = "row"

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = member_params(self.name, "full", params)
        self.fit_seconds: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    FILE = ""  # the one native-format file each member saves

    def save(self, folder: Path) -> list[str]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._write(folder / self.FILE)
        return [self.FILE]

    @classmethod
    def load(cls, folder: Path, params: dict):
        member = cls(params)
        member._read(Path(folder) / cls.FILE)
        return member

    def _write(self, path: Path) -> None:
        raise NotImplementedError

    def _read(self, path: Path) -> None:
        raise NotImplementedError


class XGBoostMember(_RowMember):
    """Gradient-boosted trees (hist); saved as UBJSON, the binary twin of XGBoost's JSON model format.

    UBJ rather than JSON: it stores every float bit-exactly and loads faster; both are XGBoost's
    native, version-stable formats. Prediction goes through `Booster.inplace_predict` on float32
    (the sklearn wrapper adds ~80 µs per call).
    """

    name = "xgboost"
    FILE = "model.ubj"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(params)
        self.booster: xgboost.Booster | None = None

    def _train_params(self, seed: int) -> dict:
        p = self.params
        return {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": p["max_depth"],
            "eta": p["learning_rate"],
            "subsample": p["subsample"],
            "colsample_bytree": p["colsample_bytree"],
            "min_child_weight": p["min_child_weight"],
            "lambda": p["reg_lambda"],
            "max_bin": p["max_bin"],
            "nthread": p["threads"],
            "seed": seed,
        }

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        started = time.perf_counter()
        X = check_rows(X, np.float32)
        y = check_labels(y, X.shape[0])
        data = xgboost.QuantileDMatrix(X, label=y, max_bin=self.params["max_bin"], nthread=self.params["threads"])
        self.booster = xgboost.train(self._train_params(seed), data, num_boost_round=self.params["n_rounds"])
        self._ready()
        self.fit_seconds = time.perf_counter() - started

    def _ready(self) -> None:
        # One thread for prediction: waking an OpenMP pool costs more than one row's trees.
        self.booster.set_param({"nthread": 1})

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(check_rows(X, np.float32)).astype(np.float64)

    def predict_one(self, x: np.ndarray) -> float:
        # A batch of one through the batch path: a row gets the same bits alone as in any batch.
        return float(self.predict_proba(np.asarray(x).reshape(1, -1))[0])

    def _write(self, path: Path) -> None:
        self.booster.save_model(str(path))

    def _read(self, path: Path) -> None:
        self.booster = xgboost.Booster(model_file=str(path))
        self._ready()


class LightGBMMember(_RowMember):
    """Leaf-wise gradient boosting, depth-capped; saved as LightGBM's text model (`model.txt`)."""

    name = "lightgbm"
    FILE = "model.txt"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(params)
        self.booster: lightgbm.Booster | None = None

    def _train_params(self, seed: int) -> dict:
        p = self.params
        return {
            "objective": "binary",
            "num_leaves": p["num_leaves"],
            "max_depth": p["max_depth"],
            "learning_rate": p["learning_rate"],
            "min_data_in_leaf": p["min_data_in_leaf"],
            "feature_fraction": p["feature_fraction"],
            "bagging_fraction": p["bagging_fraction"],
            "bagging_freq": 1,
            "lambda_l2": p["lambda_l2"],
            "max_bin": p["max_bin"],
            "num_threads": p["threads"],
            "seed": seed,
            # Same seed, same data, same threads -> the same trees (LightGBM's own switch for it).
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        started = time.perf_counter()
        X = check_rows(X)
        y = check_labels(y, X.shape[0])
        params = self._train_params(seed)
        data = lightgbm.Dataset(X, label=y, params={"max_bin": params["max_bin"], "verbose": -1})
        self.booster = lightgbm.train(params, data, num_boost_round=self.params["n_rounds"])
        self.fit_seconds = time.perf_counter() - started

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(check_rows(X), num_threads=1), dtype=np.float64)

    def predict_one(self, x: np.ndarray) -> float:
        # A batch of one through the batch path: a row gets the same bits alone as in any batch.
        return float(self.predict_proba(np.asarray(x).reshape(1, -1))[0])

    def _write(self, path: Path) -> None:
        self.booster.save_model(str(path))

    def _read(self, path: Path) -> None:
        self.booster = lightgbm.Booster(model_file=str(path))


class CatBoostMember(_RowMember):
    """Oblivious (symmetric) boosted trees; saved in CatBoost's binary `.cbm` format."""

    name = "catboost"
    FILE = "model.cbm"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(params)
        self.model: catboost.CatBoostClassifier | None = None

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        started = time.perf_counter()
        X = check_rows(X)
        y = check_labels(y, X.shape[0])
        p = self.params
        self.model = catboost.CatBoostClassifier(
            loss_function="Logloss",
            iterations=p["iterations"],
            depth=p["depth"],
            learning_rate=p["learning_rate"],
            l2_leaf_reg=p["l2_leaf_reg"],
            border_count=p["border_count"],
            thread_count=p["threads"],
            random_seed=seed,
            verbose=False,
            allow_writing_files=False,  # no catboost_info/ folder in the working directory
        )
        self.model.fit(X, y)
        self.fit_seconds = time.perf_counter() - started

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = self.model.predict(check_rows(X), prediction_type="Probability", thread_count=1)
        return np.asarray(proba[:, 1], dtype=np.float64)

    def predict_one(self, x: np.ndarray) -> float:
        # A 1-D array is one object to CatBoost (~50-100 µs); it still evaluates it as a one-row Pool, the batch
        # path, so a row gets the same bits alone as in any batch (tests hold them equal).
        proba = self.model.predict(np.asarray(x, dtype=np.float64), prediction_type="Probability", thread_count=1)
        return float(proba[1])

    def _write(self, path: Path) -> None:
        self.model.save_model(str(path), format="cbm")

    def _read(self, path: Path) -> None:
        self.model = catboost.CatBoostClassifier()
        self.model.load_model(str(path), format="cbm")


class FlatForest:
    """A fitted sklearn forest flattened into padded numpy arrays and traversed for all trees at once.

    sklearn's `predict_proba` costs ~10 ms for one row (input validation, a joblib dispatch, one
    Cython call per tree); here one row is `depth` rounds of numpy gathers over all trees (~20-60 µs).
    Node ids are global across trees; a leaf's children are the leaf itself, so every tree can be
    stepped `depth` times regardless of its own depth. Results equal sklearn's: the row is cast to
    float32 as sklearn does, `x <= threshold` goes left, NaN follows `missing_go_to_left`, and the
    leaf value is the class-1 fraction (sklearn >= 1.4 stores fractions in `tree_.value`).
    """

    def __init__(self, forest: RandomForestClassifier):
        classes = list(forest.classes_)
        if classes != [0, 1]:
            raise ValueError(f"expected a binary forest with classes [0, 1], got {classes}")
        features, thresholds, children, positive, nan_left, roots = [], [], [], [], [], []
        offset = 0
        depth = 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            n = tree.node_count
            ids = np.arange(n, dtype=np.intp) + offset
            leaf = tree.children_left == -1
            pair = np.empty((n, 2), dtype=np.intp)
            pair[:, 0] = np.where(leaf, ids, tree.children_left + offset)
            pair[:, 1] = np.where(leaf, ids, tree.children_right + offset)
            children.append(pair.ravel())
            features.append(np.where(leaf, 0, tree.feature).astype(np.intp))
            thresholds.append(np.where(leaf, 0.0, tree.threshold))
            positive.append(tree.value[:, 0, 1].astype(np.float64))
            nan_left.append(tree.missing_go_to_left.astype(bool))
            roots.append(offset)
            offset += n
            depth = max(depth, int(tree.max_depth))
        self.feature = np.concatenate(features)
        self.threshold = np.concatenate(thresholds)
        self.children = np.concatenate(children)  # node i: left at 2i, right at 2i+1
        self.positive = np.concatenate(positive)
        self.nan_left = np.concatenate(nan_left)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.depth = depth
        self.n_trees = len(roots)

    def predict_one(self, x: np.ndarray) -> float:
        xv = np.asarray(x, dtype=np.float32)
        node = self.roots
        feature, threshold, children = self.feature, self.threshold, self.children
        if np.isnan(xv).any():
            nan_right = ~self.nan_left
            for _ in range(self.depth):
                v = xv[feature[node]]
                right = np.where(np.isnan(v), nan_right[node], v > threshold[node])
                node = children[(node << 1) + right]
        else:
            for _ in range(self.depth):
                node = children[(node << 1) + (xv[feature[node]] > threshold[node])]
        return float(self._leaf_mean(node[None, :])[0])

    def _leaf_mean(self, nodes: np.ndarray) -> np.ndarray:
        """Mean class-1 fraction of the leaves reached, (rows, n_trees) -> (rows,): one sum for one row and for
        many, so a row gets the same bits alone as in a batch (the walk itself is exact integer work)."""
        return self.positive[nodes].sum(axis=1) / self.n_trees

    def predict_proba(self, X: np.ndarray, chunk: int = 2048) -> np.ndarray:
        X = check_rows(X, np.float32)
        n, n_features = X.shape
        out = np.empty(n, dtype=np.float64)
        feature, threshold, children = self.feature, self.threshold, self.children
        nan_right = ~self.nan_left
        for start in range(0, n, chunk):
            block = X[start : start + chunk]
            flat = block.ravel()
            row_base = (np.arange(block.shape[0], dtype=np.intp) * n_features)[:, None]
            node = np.repeat(self.roots[None, :], block.shape[0], axis=0)
            has_nan = bool(np.isnan(block).any())
            for _ in range(self.depth):
                v = flat[row_base + feature[node]]
                right = v > threshold[node]
                if has_nan:
                    right = np.where(np.isnan(v), nan_right[node], right)
                node = children[(node << 1) + right]
            out[start : start + block.shape[0]] = self._leaf_mean(node)
        return out


class RandomForestMember(_RowMember):
    """scikit-learn RandomForest (bagged, depth-capped); saved with joblib, served by `FlatForest`.

    Both `predict_one` and `predict_proba` use the flattened forest, so batch and single-sample
    answers come from one code path (sklearn's threaded `predict_proba` also sums trees in thread
    order, which is not bit-reproducible); tests hold it equal to sklearn's to 1e-12.
    joblib is a pickle: load only artifacts this system wrote (skops would refuse unknown types).
    """

    name = "random_forest"
    FILE = "model.joblib"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(params)
        self.model: RandomForestClassifier | None = None
        self.flat: FlatForest | None = None

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> None:
        started = time.perf_counter()
        X = check_rows(X, np.float32)
        y = check_labels(y, X.shape[0])
        p = self.params
        self.model = RandomForestClassifier(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_features=p["max_features"],
            max_samples=p["max_samples"],
            bootstrap=True,
            n_jobs=p["threads"],
            random_state=seed,
        )
        self.model.fit(X, y)
        self.model.n_jobs = None  # sklearn predictions (if anyone calls them) stay single-threaded
        self.flat = FlatForest(self.model)
        self.fit_seconds = time.perf_counter() - started

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.flat.predict_proba(X)

    def predict_one(self, x: np.ndarray) -> float:
        return self.flat.predict_one(x)

    def _write(self, path: Path) -> None:
        joblib.dump(self.model, path)

    def _read(self, path: Path) -> None:
        self.model = joblib.load(path)
        self.flat = FlatForest(self.model)
