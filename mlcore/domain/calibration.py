"""Calibration of the final probability: isotonic, Platt or none, chosen by cross-validated log loss on held-out data.

`fit_calibrator` is given predictions the model did not train on (a held-out slice) and their labels.
"auto" scores the methods by stratified k-fold cross-validation on that slice (k = 5, fewer when one class is
rare): of isotonic and Platt it keeps the lower mean log loss (Platt on a tie: two parameters are the safer
guess), and it keeps that one only if it beats the uncalibrated probabilities ("identity") by at least
MIN_IMPROVEMENT; then it refits the winner on the whole slice. The scores stay on the calibrator so the choice
can be reported.

    identity  p unchanged (clipped like the others): the raw probabilities are as well calibrated, out of fold,
              as any fitted map makes them. A map that gains less than MIN_IMPROVEMENT in cross-validation
              mostly adds its own estimation noise: near-identity Platt maps (slope 0.98) were seen to raise the
              error on the next, unseen fold;
    isotonic  a non-decreasing step map fitted by sklearn's IsotonicRegression, stored as its thresholds and
              applied by linear interpolation between them (np.interp; constant beyond the ends);
    platt     p = sigmoid(a * logit(p_raw) + b), fitted by maximum likelihood (a tiny ridge keeps a and b
              finite on separable data).

Outputs are clipped to [1e-6, 1 - 1e-6] so a log loss or a Kelly fraction never meets 0 or 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

EPS = 1e-6
METHODS = ("identity", "isotonic", "platt")
FITTED = ("isotonic", "platt")  # the methods that learn a map
MIN_IMPROVEMENT = 5e-4  # cross-validated log loss a fitted map must gain over the identity to be used
_RIDGE = 1e-6
_MIN_SAMPLES = 10


@dataclass(frozen=True, eq=False)
class Calibrator:
    """A fitted calibration map. Build it with `fit_calibrator` or `Calibrator.from_dict`."""

    method: str
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))  # isotonic: raw probabilities...
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ... and the calibrated values there
    a: float = 1.0  # platt slope on logit(p_raw)
    b: float = 0.0  # platt intercept
    cv_log_loss: dict = field(default_factory=dict)  # method -> cross-validated log loss ("auto" only)
    n: int = 0  # samples it was fitted on

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.method == "isotonic":
            x, y = np.asarray(self.thresholds, dtype=np.float64), np.asarray(self.values, dtype=np.float64)
            if x.ndim != 1 or x.shape != y.shape or len(x) == 0 or not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise ValueError("an isotonic calibrator needs equally long, non-empty, finite thresholds and values")
            if (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
                raise ValueError("isotonic thresholds and values must be non-decreasing")
            object.__setattr__(self, "thresholds", x)
            object.__setattr__(self, "values", y)
        elif self.method == "platt" and not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"Platt coefficients must be finite, got a={self.a!r}, b={self.b!r}")

    def transform(self, p) -> np.ndarray:
        """Calibrated probabilities for raw probabilities `p` (array-like), clipped to [1e-6, 1 - 1e-6]."""
        p = np.asarray(p, dtype=np.float64)
        if not np.isfinite(p).all():
            raise ValueError("probabilities to calibrate must be finite")
        return self._map(p)

    def transform_one(self, p: float) -> float:
        """One probability (the live path, a few microseconds): the same value as `transform([p])[0]`."""
        p = float(p)
        if not math.isfinite(p):
            raise ValueError("probabilities to calibrate must be finite")
        return float(self._map(np.array([p]))[0])

    def _map(self, p: np.ndarray) -> np.ndarray:
        if self.method == "identity":
            out = p
        elif self.method == "isotonic":
            out = np.interp(p, self.thresholds, self.values)
        else:
            out = 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))
        return np.minimum(np.maximum(out, EPS), 1.0 - EPS)

    def to_dict(self) -> dict:
        """JSON-ready description; `from_dict` rebuilds a calibrator giving identical outputs."""
        data: dict = {"method": self.method, "n": int(self.n),
                      "cv_log_loss": {k: float(v) for k, v in self.cv_log_loss.items()}}
        if self.method == "isotonic":
            data["thresholds"] = self.thresholds.tolist()
            data["values"] = self.values.tolist()
        elif self.method == "platt":
            data["a"] = float(self.a)
            data["b"] = float(self.b)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        method = data.get("method")
        common = {"cv_log_loss": dict(data.get("cv_log_loss", {})), "n": int(data.get("n", 0))}
        if method == "isotonic":
            return cls(method=method, thresholds=np.asarray(data["thresholds"], dtype=np.float64),
                       values=np.asarray(data["values"], dtype=np.float64), **common)
        if method == "platt":
            return cls(method=method, a=float(data["a"]), b=float(data["b"]), **common)
        if method == "identity":
            return cls(method=method, **common)
        raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")


def fit_calibrator(p_raw, y, *, method: str = "auto", seed: int = 0) -> Calibrator:
    """Fit a calibration map from held-out raw probabilities and their 0/1 labels.

    method: "auto" (choose by cross-validated log loss, see the module docstring), "isotonic", "platt" or
    "identity".
    """
    p, labels = _check_inputs(p_raw, y)
    if method not in ("auto", *METHODS):
        raise ValueError(f"unknown calibration method {method!r}; use auto, isotonic, platt or identity")
    scores: dict[str, float] = {}
    if method == "auto":
        scores = cross_validated_log_loss(p, labels, seed=seed)
        method = "isotonic" if scores["isotonic"] < scores["platt"] else "platt"
        if scores[method] > scores["identity"] - MIN_IMPROVEMENT:
            method = "identity"
    fitted = _fit(method, p, labels)
    return Calibrator(method=fitted.method, thresholds=fitted.thresholds, values=fitted.values,
                      a=fitted.a, b=fitted.b, cv_log_loss=scores, n=len(p))


def cross_validated_log_loss(p_raw, y, *, seed: int = 0, folds: int = 5) -> dict[str, float]:
    """Mean out-of-fold log loss of each method (stratified, shuffled with `seed`); "identity" is the log loss of
    the clipped raw probabilities on the same samples."""
    p, labels = _check_inputs(p_raw, y)
    minority = int(min(labels.sum(), len(labels) - labels.sum()))
    k = min(folds, minority)
    if k < 2:
        raise ValueError(f"choosing a calibration method needs at least 2 examples of each class, got {minority}")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    totals = dict.fromkeys(METHODS, 0.0)
    for train, test in splitter.split(p, labels):
        for name in METHODS:
            if name == "identity":
                q = Calibrator(method="identity").transform(p[test])
                totals[name] += float(-np.sum(labels[test] * np.log(q) + (1 - labels[test]) * np.log(1 - q)))
                continue
            q = _fit(name, p[train], labels[train]).transform(p[test])
            totals[name] += float(-np.sum(labels[test] * np.log(q) + (1 - labels[test]) * np.log(1 - q)))
    return {name: total / len(p) for name, total in totals.items()}


def _fit(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "identity":
        return Calibrator(method="identity")
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(p, y)
        return Calibrator(method="isotonic", thresholds=iso.X_thresholds_, values=iso.y_thresholds_)
    a, b = _fit_platt(_logit(p), y)
    return Calibrator(method="platt", a=a, b=b)


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    n = len(z)

    def loss(w):
        s = w[0] * z + w[1]
        # log(1 + e^s) - y s, written to stay finite for large |s|
        value = np.sum(np.logaddexp(0.0, s) - y * s) / n + _RIDGE * (w[0] ** 2 + w[1] ** 2)
        q = 1.0 / (1.0 + np.exp(-s))
        grad = np.array([np.dot(q - y, z), np.sum(q - y)]) / n + 2 * _RIDGE * w
        return value, grad

    # The slope is kept >= 0, like isotonic's increasing map: calibration may flatten a ranking that
    # does not hold up on held-out data (towards the base rate) but must never turn it upside down.
    result = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, None), (None, None)])
    return float(result.x[0]), float(result.x[1])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.minimum(np.maximum(p, EPS), 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _check_inputs(p_raw, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_raw, dtype=np.float64).ravel()
    labels = np.asarray(y, dtype=np.float64).ravel()
    if p.shape != labels.shape:
        raise ValueError(f"p_raw has {p.size} values, y has {labels.size}")
    if len(p) < _MIN_SAMPLES:
        raise ValueError(f"calibration needs at least {_MIN_SAMPLES} held-out samples, got {len(p)}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_raw must be finite probabilities in [0, 1]")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 and 1 (drop unresolved NaN labels first)")
    if labels.min() == labels.max():
        raise ValueError(f"calibration needs both classes in y; all {len(labels)} labels are {int(labels[0])}")
    return p, labels
