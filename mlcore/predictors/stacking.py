"""The meta-learner stacked on out-of-fold member probabilities, member agreement, and the long/short decision."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import minimize

# Member probabilities are clipped before the logit so a member that says exactly 0 or 1 cannot
# produce an infinite input (boosters and forests do reach 0/1 on pure leaves).
CLIP = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), CLIP, 1.0 - CLIP)
    return np.log(p / (1.0 - p))


class MetaLearner:
    """Logistic regression on the logits of the members' probabilities, with non-negative member weights.

    Fit it on out-of-fold member predictions (each row predicted by members that never saw it),
    otherwise it learns to trust whichever member overfits most. The weights are kept >= 0 (as in
    Breiman's stacked regressions): a member is used or ignored, never turned upside down. A negative
    weight only ever fits an artefact: on a random walk, cross-fitted members lean away from their
    held-out block's base rate (their training set's rate is the complement), and a free logistic
    regression turned that into confident-looking noise. The objective is sklearn's L2-penalised one,
    C * sum(log loss) + |w|^2 / 2 (intercept unpenalised), minimised by L-BFGS-B from zero: the same
    data give the same coefficients. Prediction is plain numpy:
    `sigmoid(intercept + logit(p) . coef)`, one code path for the batch and the single sample (the same bits),
    and stored as JSON (`to_dict`) with the member order it expects.
    """

    def __init__(self, member_names: Sequence[str] = (), coef: Sequence[float] = (), intercept: float = 0.0, C: float = 1.0):
        self.member_names = list(member_names)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.C = float(C)

    def fit(self, P: np.ndarray, y: np.ndarray, member_names: Sequence[str]) -> "MetaLearner":
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != len(member_names):
            raise ValueError(f"P has shape {P.shape}, expected (n, {len(member_names)}) for members {list(member_names)}")
        y = np.asarray(y).ravel()
        if y.shape[0] != P.shape[0]:
            raise ValueError(f"{y.shape[0]} labels for {P.shape[0]} rows")
        if np.unique(y).size < 2:
            raise ValueError("both classes must be present to fit the meta-learner")
        if not np.isin(np.unique(y), (0, 1)).all():
            raise ValueError("labels must be 0/1")
        self.coef, self.intercept = _fit_non_negative_logistic(logit(P), y.astype(np.float64), self.C)
        self.member_names = list(member_names)
        return self

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        """P(take-profit first) for each row of member probabilities P, (n, n_members) in `member_names` order."""
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != self.coef.shape[0]:
            raise ValueError(f"P has shape {P.shape}, expected (n, {self.coef.shape[0]})")
        Z = logit(P)
        # Summed column by column in member order, not with `@`: BLAS sums a dot product in an order that
        # depends on the number of rows, and one row must get the same bits alone as in a batch.
        s = np.zeros(P.shape[0], dtype=np.float64)
        for j, weight in enumerate(self.coef):
            s += Z[:, j] * weight
        return _sigmoid_array(s + self.intercept)

    def predict_one(self, p: np.ndarray) -> float:
        """One row of member probabilities: `predict_proba` of that row alone (the same formula, so the same bits)."""
        return float(self.predict_proba(np.asarray(p, dtype=np.float64).reshape(1, -1))[0])

    def to_dict(self) -> dict:
        return {
            "member_names": list(self.member_names),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "C": self.C,
            "clip": CLIP,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "MetaLearner":
        return cls(data["member_names"], data["coef"], data["intercept"], data.get("C", 1.0))


def _fit_non_negative_logistic(Z: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """argmin over w >= 0, b of C * sum(log(1 + e^s) - y s) + |w|^2 / 2, s = Z w + b (strictly convex)."""
    m = Z.shape[1]
    # Scaled by 1/n so the tolerances mean the same for any sample size; the minimiser is unchanged.
    scale = 1.0 / len(y)

    def loss(theta):
        w, b = theta[:m], theta[m]
        s = Z @ w + b
        value = C * np.sum(np.logaddexp(0.0, s) - y * s) + 0.5 * np.dot(w, w)
        q = _sigmoid_array(s)
        residual = C * (q - y)
        grad = np.empty(m + 1)
        grad[:m] = Z.T @ residual + w
        grad[m] = residual.sum()
        return value * scale, grad * scale

    bounds = [(0.0, None)] * m + [(None, None)]
    result = minimize(loss, x0=np.zeros(m + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-9})
    return result.x[:m].astype(np.float64), float(result.x[m])


def _sigmoid_array(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def agreement(p_members: np.ndarray, side_prob: float) -> float:
    """Share of members that agree with the side's final probability.

    A member votes "take-profit first" when its probability is >= 0.5. If the side's (calibrated)
    probability is >= 0.5, agreement is the share voting take-profit first; otherwise it is the
    share voting stop-loss first. 1.0 = unanimous with the ensemble's call, 0.0 = every member
    against it. An empty member list has no agreement (0.0).
    """
    p = np.asarray(p_members, dtype=np.float64).ravel()
    if p.size == 0:
        return 0.0
    says_take_profit = p >= 0.5
    agreeing = says_take_profit if side_prob >= 0.5 else ~says_take_profit
    return float(agreeing.mean())


def decide(p_long: float, p_short: float) -> dict:
    """Choose the side whose calibrated take-profit-first probability is higher.

    `p_long` / `p_short` come from the long and the short side models (each calibrated on its own
    labels, so they need not sum to 1). The chosen side's probability is the confidence, and it is
    the Kelly `p` for that side's bracket. A tie goes to "long" so the answer is deterministic; the
    risk manager's confidence threshold decides whether a trade is taken at all (a chosen side can
    still have confidence < 0.5). Returns side, confidence, both inputs and the margin between them.
    """
    p_long, p_short = float(p_long), float(p_short)
    if not (0.0 <= p_long <= 1.0 and 0.0 <= p_short <= 1.0):
        raise ValueError(f"probabilities must be in [0, 1], got long={p_long}, short={p_short}")
    side = "long" if p_long >= p_short else "short"
    return {
        "side": side,
        "confidence": p_long if side == "long" else p_short,
        "p_long": p_long,
        "p_short": p_short,
        "margin": abs(p_long - p_short),
    }
