"""The health score: healthy, degraded and dead components, the caps, and the formula's weights."""
import pytest

from monitoring.domain import health as h


def healthy(**overrides):
    values = dict(has_edge=True, edge_statement="Long: Edge", calibration_p=0.5, accuracy_p=0.6, outcomes=500,
                  drift_features={f"f{i}": 0.02 for i in range(20)}, drift_probability=0.03, latency_p99_ms=40.0,
                  freshness_seconds=30.0, workers={"trading": 2.0, "inference": 3.0})
    values.update(overrides)
    return h.HealthInputs(**values)


def test_the_weights_add_up_to_100():
    assert sum(h.WEIGHTS.values()) == 100


def test_every_component_healthy_scores_100():
    score = h.health_score(healthy())
    assert score.score == 100.0 and not score.caps
    assert {c.status for c in score.components} == {"healthy"}
    assert score.reason == "100/100: all healthy"


def test_a_version_without_an_edge_cannot_be_healthy():
    score = h.health_score(healthy(has_edge=False, edge_statement="No edge"))
    assert score.score <= h.NO_EDGE_CAP < 40
    assert {"reason": "no validated out-of-sample edge", "cap": h.NO_EDGE_CAP} in score.caps


def test_unmeasured_components_earn_half_their_weight_so_a_fresh_version_is_not_100():
    score = h.health_score(healthy(calibration_p=None, accuracy_p=None, outcomes=10, drift_features={},
                                   drift_probability=None))
    assert score.score == pytest.approx(100 - 0.5 * (15 + 15 + 20))
    assert "not yet measured: calibration, accuracy, drift" in score.reason


def test_a_failing_component_caps_the_score_under_the_full_size_floor():
    score = h.health_score(healthy(workers={"trading": 2.0, "inference": None}))
    assert score.score == h.FAILING_CAP
    assert "workers failing" in score.reason and "inference" in score.reason


@pytest.mark.parametrize("p, expected", [(0.05, 1.0), (0.2, 1.0), (0.001, 0.0), (0.0001, 0.0)])
def test_p_value_components_are_healthy_from_005_and_dead_at_0001(p, expected):
    component = h.calibration_component(healthy(calibration_p=p))
    assert component.score == pytest.approx(expected)


def test_a_p_value_between_is_degraded_log_linearly():
    component = h.accuracy_component(healthy(accuracy_p=10 ** ((-3 + (-1.30103)) / 2)))
    assert component.status == "degraded" and component.score == pytest.approx(0.5, abs=1e-3)


def test_drift_degrades_with_the_share_of_drifted_features_and_fails_from_a_quarter():
    few = {f"f{i}": (0.3 if i < 2 else 0.02) for i in range(20)}
    many = {f"f{i}": (0.9 if i < 6 else 0.02) for i in range(20)}
    assert h.drift_component(healthy(drift_features=few)).status == "degraded"
    assert h.drift_component(healthy(drift_features=few)).score == pytest.approx(0.9)
    failing = h.drift_component(healthy(drift_features=many))
    assert failing.status == "failing" and failing.score <= 0.25 and "6 of 20 features" in failing.detail
    assert h.drift_component(healthy(drift_probability=0.4)).status == "failing"


def test_latency_and_freshness_scale_down_between_the_budget_and_its_failing_multiple():
    assert h.latency_component(healthy(latency_p99_ms=1250.0)).score == pytest.approx(0.5)
    assert h.freshness_component(healthy(freshness_seconds=360.0)).score == pytest.approx(0.5)
    assert h.freshness_component(healthy(freshness_seconds=None)).status == "failing"
    assert h.freshness_component(healthy(freshness_seconds=99999.0, market_open=False)).status == "healthy"


def test_embedded_mode_has_no_workers_to_lose():
    assert h.workers_component(healthy(workers=None)).status == "healthy"


def test_each_components_contribution_is_weight_times_score():
    score = h.health_score(healthy(latency_p99_ms=1250.0))
    assert score.score == pytest.approx(sum(c.contribution for c in score.components))
    latency = next(c for c in score.components if c.name == "latency")
    assert latency.as_dict()["contribution"] == pytest.approx(2.5)
