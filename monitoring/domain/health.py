"""The health score, 0-100, of a market's active model version: the formula, in one place. Pure.

    score = sum over components of weight x component score (each in [0, 1]; the weights add up to 100)
    then two caps:  a version without a validated out-of-sample edge scores at most NO_EDGE_CAP (under the
                    blocking floor, so it is never sized);
                    any failing component caps the score at FAILING_CAP (under the full-size floor).

A component with too little data to judge (calibration and hit rate under the minimum count of outcomes, drift
under the minimum live window, latency before any prediction) is "unknown" and earns UNKNOWN_CREDIT of its weight:
not evidence of harm, not evidence of health. So 100 means every component was measured and healthy; a freshly
promoted version with an edge starts around 75.

| component   | weight | healthy (1.0)                         | failing (0.0)                               |
|-------------|--------|---------------------------------------|---------------------------------------------|
| edge        | 25     | out-of-sample verdict "Edge"          | "No edge" on both sides (and the cap)        |
| calibration | 15     | Hosmer-Lemeshow p >= 0.05             | p <= 0.001 (log-linear between)              |
| accuracy    | 15     | hit-rate shortfall p >= 0.05          | p <= 0.001 (log-linear between)              |
| drift       | 20     | no feature PSI >= 0.1                 | >= 25% of features, or the predicted         |
|             |        | (1 - share >= 0.25 - share 0.1-0.25/2)| probabilities, at PSI >= 0.25                |
| latency     | 5      | p99 <= budget                         | p99 >= 4 x budget (linear between)           |
| freshness   | 10     | newest bar age <= stale limit, or the | age >= 3 x the limit while open (linear)     |
|             |        | market is closed                      |                                              |
| workers     | 10     | every per-bar queue answered recently | a per-bar queue without a live worker        |

Trading reads the score: at or above the full-size floor (70 by default) Kelly sizes in full; under it the size is
scaled linearly down to zero at the blocking floor (40), where the model_health risk check blocks too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

WEIGHTS = {"edge": 25, "calibration": 15, "accuracy": 15, "drift": 20, "latency": 5, "freshness": 10, "workers": 10}
UNKNOWN_CREDIT = 0.5
NO_EDGE_CAP = 30.0
FAILING_CAP = 60.0
P_HEALTHY, P_FAILING = 0.05, 0.001
DRIFT_FAILING_SHARE = 0.25
LATENCY_FAILING_MULTIPLE = 4.0
STALE_FAILING_MULTIPLE = 3.0

HEALTHY, DEGRADED, FAILING, UNKNOWN = "healthy", "degraded", "failing", "unknown"


@dataclass(frozen=True)
class HealthInputs:
    has_edge: bool
    edge_statement: str = ""
    calibration_p: float | None = None  # Hosmer-Lemeshow p-value of the chosen side; None: too few outcomes
    accuracy_p: float | None = None  # one-sided p-value of the hit-rate shortfall; None: too few outcomes
    outcomes: int = 0
    min_outcomes: int = 50
    realised_rate: float | None = None
    expected_rate: float | None = None
    drift_features: dict[str, float | None] = field(default_factory=dict)  # feature -> PSI (None: insufficient)
    drift_probability: float | None = None  # PSI of the predicted probabilities of the chosen side
    latency_p99_ms: float | None = None
    latency_budget_ms: float = 500.0
    freshness_seconds: float | None = None
    market_open: bool = True
    stale_after_seconds: float = 180.0
    workers: dict[str, float | None] | None = None  # queue -> seconds since it answered (None: never); None: inline


@dataclass(frozen=True)
class Component:
    name: str
    weight: float
    score: float  # 0..1
    status: str
    detail: str

    @property
    def contribution(self) -> float:
        return self.weight * self.score

    def as_dict(self) -> dict:
        return {"name": self.name, "weight": self.weight, "score": round(self.score, 4),
                "contribution": round(self.contribution, 2), "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class HealthScore:
    score: float
    components: tuple[Component, ...]
    caps: tuple[dict, ...]
    reason: str

    def as_dict(self) -> dict:
        return {"score": self.score, "components": [c.as_dict() for c in self.components], "caps": list(self.caps),
                "reason": self.reason}


def _p_value_score(p: float) -> tuple[float, str]:
    if p >= P_HEALTHY:
        return 1.0, HEALTHY
    if p <= P_FAILING:
        return 0.0, FAILING
    span = math.log10(P_HEALTHY) - math.log10(P_FAILING)
    return (math.log10(p) - math.log10(P_FAILING)) / span, DEGRADED


def _unknown(name: str, detail: str) -> Component:
    return Component(name, WEIGHTS[name], UNKNOWN_CREDIT, UNKNOWN, detail)


def edge_component(i: HealthInputs) -> Component:
    if i.has_edge:
        return Component("edge", WEIGHTS["edge"], 1.0, HEALTHY, i.edge_statement or "out-of-sample edge validated")
    return Component("edge", WEIGHTS["edge"], 0.0, FAILING,
                     i.edge_statement or "no validated out-of-sample edge on either side")


def calibration_component(i: HealthInputs) -> Component:
    if i.calibration_p is None or not math.isfinite(i.calibration_p):
        return _unknown("calibration", f"no verdict yet: {i.outcomes} of {i.min_outcomes} outcomes needed")
    score, status = _p_value_score(i.calibration_p)
    return Component("calibration", WEIGHTS["calibration"], score, status,
                     f"Hosmer-Lemeshow p = {i.calibration_p:.3g} over {i.outcomes} outcomes "
                     f"({'consistent with' if status == HEALTHY else 'worse than'} the calibrated probabilities)")


def accuracy_component(i: HealthInputs) -> Component:
    if i.accuracy_p is None or not math.isfinite(i.accuracy_p):
        return _unknown("accuracy", f"no verdict yet: {i.outcomes} of {i.min_outcomes} outcomes needed")
    score, status = _p_value_score(i.accuracy_p)
    rates = ""
    if i.realised_rate is not None and i.expected_rate is not None:
        rates = f"hit rate {i.realised_rate:.1%} against {i.expected_rate:.1%} expected, "
    return Component("accuracy", WEIGHTS["accuracy"], score, status,
                     f"{rates}shortfall p = {i.accuracy_p:.3g} over {i.outcomes} outcomes")


def drift_component(i: HealthInputs) -> Component:
    known = {name: v for name, v in i.drift_features.items() if v is not None and math.isfinite(v)}
    if not known:
        return _unknown("drift", "no verdict yet: the live window is under the minimum")
    significant = sorted((name for name, v in known.items() if v >= 0.25), key=lambda n: -known[n])
    moderate = [name for name, v in known.items() if 0.1 <= v < 0.25]
    share_sig, share_mod = len(significant) / len(known), len(moderate) / len(known)
    probability_shift = i.drift_probability is not None and i.drift_probability >= 0.25
    score = max(0.0, 1.0 - share_sig - 0.5 * share_mod)
    if probability_shift:
        score = min(score, 0.5)
    failing = share_sig >= DRIFT_FAILING_SHARE or probability_shift
    status = FAILING if failing else HEALTHY if score >= 1.0 else DEGRADED
    if failing:
        score = min(score, 0.25)
    worst = ", ".join(f"{name} {known[name]:.2f}" for name in significant[:4])
    detail = (f"{len(significant)} of {len(known)} features at PSI >= 0.25" + (f" ({worst})" if worst else "")
              + f", {len(moderate)} at 0.1-0.25")
    if i.drift_probability is not None:
        detail += f"; predicted probabilities PSI {i.drift_probability:.2f}"
    return Component("drift", WEIGHTS["drift"], score, status, detail)


def latency_component(i: HealthInputs) -> Component:
    if i.latency_p99_ms is None or not math.isfinite(i.latency_p99_ms):
        return _unknown("latency", "no predictions yet")
    budget = i.latency_budget_ms
    if i.latency_p99_ms <= budget:
        return Component("latency", WEIGHTS["latency"], 1.0, HEALTHY,
                         f"p99 {i.latency_p99_ms:.0f} ms within the {budget:.0f} ms budget")
    worst = LATENCY_FAILING_MULTIPLE * budget
    score = max(0.0, (worst - i.latency_p99_ms) / (worst - budget))
    return Component("latency", WEIGHTS["latency"], score, FAILING if score == 0 else DEGRADED,
                     f"p99 {i.latency_p99_ms:.0f} ms over the {budget:.0f} ms budget")


def freshness_component(i: HealthInputs) -> Component:
    if not i.market_open:
        return Component("freshness", WEIGHTS["freshness"], 1.0, HEALTHY, "market closed")
    if i.freshness_seconds is None or not math.isfinite(i.freshness_seconds):
        return Component("freshness", WEIGHTS["freshness"], 0.0, FAILING, "no bars have arrived")
    limit = i.stale_after_seconds
    age = i.freshness_seconds
    if age <= limit:
        return Component("freshness", WEIGHTS["freshness"], 1.0, HEALTHY, f"newest bar {age:.0f} s old")
    worst = STALE_FAILING_MULTIPLE * limit
    score = max(0.0, (worst - age) / (worst - limit))
    return Component("freshness", WEIGHTS["freshness"], score, FAILING if score == 0 else DEGRADED,
                     f"newest bar {age:.0f} s old, over the {limit:.0f} s limit")


def workers_component(i: HealthInputs, *, timeout: float = 30.0) -> Component:
    if i.workers is None:
        return Component("workers", WEIGHTS["workers"], 1.0, HEALTHY, "embedded: tasks run in this process")
    dead = sorted(q for q, age in i.workers.items() if age is None or age > timeout)
    if dead:
        return Component("workers", WEIGHTS["workers"], 0.0, FAILING,
                         f"no live worker on queue(s) {', '.join(dead)} (none answered within {timeout:.0f} s)")
    return Component("workers", WEIGHTS["workers"], 1.0, HEALTHY,
                     f"queue(s) {', '.join(sorted(i.workers))} answered within {timeout:.0f} s")


def health_score(i: HealthInputs, *, worker_timeout: float = 30.0) -> HealthScore:
    components = (edge_component(i), calibration_component(i), accuracy_component(i), drift_component(i),
                  latency_component(i), freshness_component(i), workers_component(i, timeout=worker_timeout))
    score = sum(c.contribution for c in components)
    caps = []
    if not i.has_edge:
        caps.append({"reason": "no validated out-of-sample edge", "cap": NO_EDGE_CAP})
    failing = [c.name for c in components if c.status == FAILING and c.name != "edge"]
    if failing:
        caps.append({"reason": f"failing: {', '.join(failing)}", "cap": FAILING_CAP})
    for cap in caps:
        score = min(score, cap["cap"])
    score = round(max(0.0, min(100.0, score)), 1)
    return HealthScore(score=score, components=components, caps=tuple(caps), reason=_reason(score, components))


def _reason(score: float, components) -> str:
    """The weakest components, worst first, in one line for recommendation cards and alerts."""
    weak = sorted((c for c in components if c.status in (FAILING, DEGRADED)),
                  key=lambda c: (c.status != FAILING, c.score))
    if not weak:
        unknown = [c.name for c in components if c.status == UNKNOWN]
        return f"{score:.0f}/100" + (f" (not yet measured: {', '.join(unknown)})" if unknown else ": all healthy")
    return f"{score:.0f}/100: " + "; ".join(f"{c.name} {c.status} ({c.detail})" for c in weak[:3])
