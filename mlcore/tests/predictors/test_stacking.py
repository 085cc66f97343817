"""The meta-learner, member agreement and the long/short decision, on hand-made numbers."""
import json

import numpy as np
import pytest

from mlcore.predictors import MetaLearner, agreement, decide


def _member_predictions(n=5000, seed=2):
    """Three members: one informative, one weakly informative, one noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    signal = np.where(y == 1, 1.0, -1.0)
    logits = np.column_stack([1.5 * signal + rng.normal(size=n), 0.3 * signal + rng.normal(size=n), rng.normal(size=n)])
    return 1 / (1 + np.exp(-logits)), y


def test_meta_learner_weights_the_informative_member_most():
    P, y = _member_predictions()
    meta = MetaLearner().fit(P, y, ["good", "weak", "noise"])
    assert meta.coef[0] > meta.coef[1] > abs(meta.coef[2])
    assert meta.member_names == ["good", "weak", "noise"]


def test_meta_learner_never_turns_a_member_upside_down():
    """A member that is informative backwards gets weight 0, not a negative one; the others keep theirs."""
    P, y = _member_predictions()
    backwards = np.column_stack([P[:, :2], 1 - P[:, 0]])
    meta = MetaLearner().fit(backwards, y, ["good", "weak", "backwards"])
    assert meta.coef[2] == 0.0
    assert meta.coef[0] > meta.coef[1] > 0


def test_meta_learner_matches_an_unconstrained_logistic_regression_when_every_weight_is_positive():
    from sklearn.linear_model import LogisticRegression

    from mlcore.predictors.stacking import logit

    P, y = _member_predictions()
    P = P[:, :2]
    meta = MetaLearner(C=1.0).fit(P, y, ["good", "weak"])
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(logit(P), y)
    np.testing.assert_allclose(meta.coef, reference.coef_[0], atol=1e-3)
    assert meta.intercept == pytest.approx(reference.intercept_[0], abs=1e-3)


def test_meta_learner_predict_one_equals_predict_proba():
    P, y = _member_predictions()
    meta = MetaLearner().fit(P, y, ["a", "b", "c"])
    batch = meta.predict_proba(P[:100])
    np.testing.assert_allclose([meta.predict_one(p) for p in P[:100]], batch, rtol=0, atol=1e-12)


def test_meta_learner_json_round_trip_is_identical():
    P, y = _member_predictions()
    meta = MetaLearner(C=0.5).fit(P, y, ["a", "b", "c"])
    again = MetaLearner.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again.member_names == meta.member_names and again.C == 0.5
    assert np.array_equal(again.predict_proba(P), meta.predict_proba(P))
    assert again.predict_one(P[0]) == meta.predict_one(P[0])


def test_meta_learner_survives_members_that_say_exactly_zero_or_one():
    meta = MetaLearner(["a", "b"], [1.0, 1.0], 0.0)
    p = meta.predict_proba(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    assert np.isfinite(p).all()
    assert p[0] < 1e-9 and p[1] > 1 - 1e-9 and p[2] == pytest.approx(0.5)


def test_meta_learner_refuses_a_matrix_that_does_not_match_the_member_names():
    P, y = _member_predictions()
    with pytest.raises(ValueError, match="expected"):
        MetaLearner().fit(P, y, ["a", "b"])


def test_agreement_counts_members_on_the_side_of_the_final_probability():
    p = np.array([0.6, 0.7, 0.4, 0.55])
    assert agreement(p, 0.62) == 0.75  # three of four say take-profit first
    assert agreement(p, 0.45) == 0.25  # the ensemble says stop-loss first; one member agrees
    assert agreement(np.array([0.5, 0.49]), 0.5) == 0.5  # exactly 0.5 is a take-profit-first vote
    assert agreement(np.array([]), 0.7) == 0.0


def test_decide_chooses_the_side_with_the_higher_calibrated_probability():
    assert decide(0.62, 0.55) == {"side": "long", "confidence": 0.62, "p_long": 0.62, "p_short": 0.55,
                                  "margin": pytest.approx(0.07)}
    short = decide(0.40, 0.58)
    assert short["side"] == "short" and short["confidence"] == 0.58


def test_decide_breaks_a_tie_towards_long_and_may_choose_a_side_below_one_half():
    assert decide(0.5, 0.5)["side"] == "long"
    weak = decide(0.30, 0.35)
    assert weak["side"] == "short" and weak["confidence"] == 0.35


def test_decide_refuses_probabilities_outside_zero_one():
    with pytest.raises(ValueError):
        decide(1.2, 0.3)
    with pytest.raises(ValueError):
        decide(float("nan"), 0.3)
