"""Champion against challenger: the paired comparison on the same unseen bars and the promotion rule (pure).

The rule, stored word for word with every decision (RULE_TEXT, with its parameters):

Both models are scored on the same stretch of bars that neither trained on: after the champion's last training
bar, and after the challenger's training window plus the label horizon (the purge). Per side (long, short):

1. Paired test. For each bar i, d_i = log loss of the champion's probability - log loss of the challenger's
   (both clipped to [1e-15, 1 - 1e-15]). Labels overlap over the horizon, so neighbouring d_i are not independent:
   the standard error of the mean is sd(d) * sqrt(tau / n), tau the autocorrelation time of d (Sokal's window), a
   Diebold-Mariano test. The challenger is "better" on the side when the one-sided 95 % lower bound
   mean(d) - 1.645 SE is above 0, "worse" when the upper bound mean(d) + 1.645 SE is below 0, else
   "indistinguishable". Fewer than MIN_EFFECTIVE independent bars (n / tau) is "too few bars": no verdict.
2. The challenger's verdict on the stretch against the baselines fitted on its own training window
   (`edge_verdict`: a log loss lower than every baseline's by the margin and a ROC AUC at least the best one's).

Promote only when the challenger has "Edge" on at least one side and is "better" there, and is "worse" on no
side. A challenger with no edge on either side is never promoted, whatever the champion's state. When neither has
an edge, the champion stays and trading stays blocked by its health score: one unproven model is not swapped for
another. With no champion at all, a challenger with an edge on a side is promoted.

With a shadow record (the challenger predicting live bars beside the champion, outcomes resolved by the same
barrier rule), the same paired test runs on the live bars both predicted; the challenger must not be "worse" there
on any side, and the offline conditions above must still hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .drift import autocorrelation_time
from .labels import SIDES

Z_ONE_SIDED_95 = 1.6448536269514722
MIN_EFFECTIVE = 30.0
_CLIP = 1e-15
RULE_VERSION = 1
RULE_TEXT = (
    "Both models are scored per side on the same bars neither trained on (after the champion's last training bar "
    "and the challenger's window plus the label horizon). Paired test per side: d = champion's log loss - "
    "challenger's log loss per bar; SE = sd(d) * sqrt(tau / n), tau = autocorrelation time of d (Diebold-Mariano); "
    "'better' when mean(d) - 1.645 SE > 0, 'worse' when mean(d) + 1.645 SE < 0, else 'indistinguishable'; fewer "
    "than 30 independent bars (n / tau) gives no verdict. Promote only if the challenger has 'Edge' against the "
    "baselines on at least one side, is 'better' on such a side and 'worse' on none. A challenger without an edge is "
    "never promoted. When neither model has an edge, the champion stays and trading stays blocked by its health "
    "score. Without a champion, a challenger with an edge is promoted. A shadow record, when there is one, must not "
    "show the challenger 'worse' on any side."
)


def log_loss_per_bar(y, p) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).ravel()
    q = np.clip(np.asarray(p, dtype=np.float64).ravel(), _CLIP, 1.0 - _CLIP)
    if y.shape != q.shape:
        raise ValueError(f"y has {y.size} values, p has {q.size}")
    return -(y * np.log(q) + (1.0 - y) * np.log(1.0 - q))


def paired_log_loss_test(y, p_champion, p_challenger, *, min_effective: float = MIN_EFFECTIVE) -> dict:
    """The paired comparison of one side on the same bars (see the module's rule, point 1).

    Returns n, tau, n_effective, mean_difference (champion - challenger log loss: > 0 favours the challenger), se,
    lower and upper (the one-sided 95 % bounds) and verdict: better, worse, indistinguishable or too_few_bars.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 and 1")
    for name, p in (("p_champion", p_champion), ("p_challenger", p_challenger)):
        p = np.asarray(p, dtype=np.float64).ravel()
        if p.shape != y.shape:
            raise ValueError(f"{name} has {p.size} values for {y.size} labels")
        if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
            raise ValueError(f"{name} must be finite probabilities in [0, 1]")
    n = len(y)
    out = {"n": n, "tau": None, "n_effective": 0.0, "mean_difference": None, "se": None, "lower": None,
           "upper": None, "verdict": "too_few_bars"}
    if n < 3:
        return out
    d = log_loss_per_bar(y, p_champion) - log_loss_per_bar(y, p_challenger)
    tau = autocorrelation_time(d)
    n_effective = n / tau
    mean = float(d.mean())
    se = float(d.std(ddof=1) * math.sqrt(tau / n))
    lower, upper = mean - Z_ONE_SIDED_95 * se, mean + Z_ONE_SIDED_95 * se
    out.update(tau=round(float(tau), 3), n_effective=round(float(n_effective), 1), mean_difference=mean, se=se,
               lower=lower, upper=upper)
    if n_effective < min_effective:
        return out
    out["verdict"] = "better" if lower > 0 else "worse" if upper < 0 else "indistinguishable"
    return out


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    code: str  # promote | no_edge | neither_has_edge | not_better | worse_on_a_side | too_few_bars | shadow_worse


def promotion_decision(sides: dict[str, dict], *, has_champion: bool, shadow: dict[str, dict] | None = None
                       ) -> Decision:
    """Apply the rule. `sides[side]` holds "challenger_edge" (bool), "champion_edge" (bool, the champion's verdict on
    the same stretch) and "paired" (`paired_log_loss_test`'s dict; may be absent without a champion). `shadow[side]`,
    when given, is the paired test on the live shadow record."""
    missing = [side for side in SIDES if side not in sides]
    if missing:
        raise ValueError(f"scores for side(s) {', '.join(missing)} are missing")
    edge_sides = [side for side in SIDES if sides[side]["challenger_edge"]]
    champion_edge = [side for side in SIDES if sides[side].get("champion_edge")]
    if not edge_sides:
        if has_champion and not champion_edge:
            return Decision(False, "Neither model has an edge on the unseen bars: the champion stays, and trading "
                                   "stays blocked by its health score rather than swapping one unproven model for "
                                   "another.", "neither_has_edge")
        return Decision(False, "The challenger has no edge over the baselines on either side of the unseen bars: "
                               "a challenger without an edge is never promoted.", "no_edge")
    if not has_champion:
        return Decision(True, f"No champion; the challenger has an edge on the {' and '.join(edge_sides)} side.",
                        "promote")
    verdicts = {side: sides[side]["paired"]["verdict"] for side in SIDES}
    worse = [side for side in SIDES if verdicts[side] == "worse"]
    if worse:
        return Decision(False, f"The challenger is significantly worse than the champion on the {' and '.join(worse)} "
                               f"side ({_figures(sides[worse[0]]['paired'])}).", "worse_on_a_side")
    better = [side for side in edge_sides if verdicts[side] == "better"]
    if not better:
        if all(verdicts[side] == "too_few_bars" for side in edge_sides):
            side = edge_sides[0]
            return Decision(False, f"Too few unseen bars to compare the models: {sides[side]['paired']['n_effective']} "
                                   f"independent bars on the {side} side, {MIN_EFFECTIVE:.0f} needed.", "too_few_bars")
        side = edge_sides[0]
        return Decision(False, f"The challenger has an edge on the {' and '.join(edge_sides)} side but does not beat "
                               f"the champion by more than sampling noise ({_figures(sides[side]['paired'])}).",
                        "not_better")
    if shadow is not None:
        shadow_worse = [side for side in SIDES if side in shadow and shadow[side]["verdict"] == "worse"]
        if shadow_worse:
            return Decision(False, f"In shadow on live bars the challenger was significantly worse than the champion "
                                   f"on the {' and '.join(shadow_worse)} side "
                                   f"({_figures(shadow[shadow_worse[0]])}).", "shadow_worse")
    side = better[0]
    statement = (f"The challenger has an edge and beats the champion on the {' and '.join(better)} side "
                 f"({_figures(sides[side]['paired'])}), and is worse on no side")
    if shadow is not None:
        statement += ", in shadow on live bars as well"
    return Decision(True, statement + ".", "promote")


def _figures(paired: dict) -> str:
    if paired.get("mean_difference") is None:
        return f"{paired.get('n', 0)} bars"
    return (f"log loss difference {paired['mean_difference']:+.4f} per bar, 95% bounds {paired['lower']:+.4f} to "
            f"{paired['upper']:+.4f}, {paired['n']} bars worth {paired['n_effective']} independent ones")
