"""The promotion rule on constructed score pairs: better, worse, within the noise, no-edge challenger, no-edge champion."""
import numpy as np
import pytest

from mlcore.domain.promotion import (
    MIN_EFFECTIVE,
    RULE_TEXT,
    log_loss_per_bar,
    paired_log_loss_test,
    promotion_decision,
)


def _informative(n: int, seed: int, strength: float = 0.2):
    """Labels whose true probability varies bar to bar: p_true knows it, the base rate does not."""
    rng = np.random.default_rng(seed)
    p_true = np.clip(0.5 + strength * rng.uniform(-1, 1, n), 0.01, 0.99)
    y = (rng.uniform(size=n) < p_true).astype(float)
    return y, p_true, np.full(n, y.mean())


def _side(verdict: str, *, challenger_edge=True, champion_edge=False):
    return {"challenger_edge": challenger_edge, "champion_edge": champion_edge,
            "paired": {"verdict": verdict, "n": 2000, "n_effective": 2000.0, "mean_difference": 0.01,
                       "lower": 0.005, "upper": 0.015}}


def test_a_challenger_that_knows_the_true_probability_is_better():
    y, truth, base = _informative(4000, 1)
    result = paired_log_loss_test(y, base, truth)
    assert result["verdict"] == "better"
    assert result["lower"] > 0 and result["mean_difference"] > 0


def test_the_same_pair_the_other_way_round_is_worse():
    y, truth, base = _informative(4000, 1)
    result = paired_log_loss_test(y, truth, base)
    assert result["verdict"] == "worse" and result["upper"] < 0


def test_a_challenger_within_sampling_noise_of_the_champion_is_indistinguishable():
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=3000) < 0.45).astype(float)
    champion = np.full(3000, 0.45)
    challenger = np.clip(champion + rng.normal(0, 0.01, 3000), 0.01, 0.99)  # noise, no information
    assert paired_log_loss_test(y, champion, challenger)["verdict"] == "indistinguishable"


def test_a_raw_difference_on_too_few_bars_gives_no_verdict():
    y, truth, base = _informative(20, 5, strength=0.4)
    result = paired_log_loss_test(y, base, truth)
    assert result["n_effective"] < MIN_EFFECTIVE
    assert result["verdict"] == "too_few_bars"


def test_repeating_each_bar_adds_no_evidence():
    """Overlapping labels repeat the same information over neighbouring bars: the test must count them once, or a
    noise-level difference becomes 'significant' by repetition alone."""
    rng = np.random.default_rng(11)
    y = (rng.uniform(size=300) < 0.5).astype(float)
    champion = np.full(300, 0.5)
    challenger = np.clip(0.5 + rng.normal(0, 0.03, 300), 0.01, 0.99)
    once = paired_log_loss_test(y, champion, challenger)
    repeated = paired_log_loss_test(np.repeat(y, 20), np.repeat(champion, 20), np.repeat(challenger, 20))
    assert repeated["tau"] > 10
    assert repeated["n_effective"] < 0.2 * repeated["n"]
    assert repeated["verdict"] != "better" or once["verdict"] == "better"


def test_per_bar_log_loss_matches_scikit_learn_on_average():
    from sklearn.metrics import log_loss

    y, truth, _ = _informative(500, 2)
    assert log_loss_per_bar(y, truth).mean() == pytest.approx(log_loss(y, truth), rel=1e-12)


@pytest.mark.parametrize("bad", [np.array([0.5, np.nan, 0.5]), np.array([0.5, 1.5, 0.5])])
def test_probabilities_that_are_not_probabilities_are_refused(bad):
    with pytest.raises(ValueError, match="p_challenger"):
        paired_log_loss_test(np.array([0.0, 1.0, 0.0]), np.full(3, 0.5), bad)


def test_better_with_an_edge_is_promoted():
    decision = promotion_decision({"long": _side("better"), "short": _side("indistinguishable", challenger_edge=False)},
                                  has_champion=True)
    assert decision.promote and decision.code == "promote"
    assert "long" in decision.reason


def test_worse_on_any_side_is_kept_even_when_better_on_the_other():
    decision = promotion_decision({"long": _side("better"), "short": _side("worse", challenger_edge=False)},
                                  has_champion=True)
    assert not decision.promote and decision.code == "worse_on_a_side"
    assert "short" in decision.reason


def test_within_the_margin_is_kept():
    decision = promotion_decision({"long": _side("indistinguishable"), "short": _side("indistinguishable")},
                                  has_champion=True)
    assert not decision.promote and decision.code == "not_better"


@pytest.mark.parametrize("has_champion", [True, False])
def test_a_challenger_without_an_edge_is_never_promoted_even_when_better(has_champion):
    sides = {"long": _side("better", challenger_edge=False, champion_edge=True),
             "short": _side("better", challenger_edge=False, champion_edge=True)}
    decision = promotion_decision(sides, has_champion=has_champion)
    assert not decision.promote and decision.code == "no_edge"


def test_when_neither_has_an_edge_the_champion_stays_and_the_reason_says_trading_stays_blocked():
    sides = {"long": _side("better", challenger_edge=False), "short": _side("better", challenger_edge=False)}
    decision = promotion_decision(sides, has_champion=True)
    assert not decision.promote and decision.code == "neither_has_edge"
    assert "health score" in decision.reason


def test_a_champion_without_an_edge_is_replaced_by_a_proven_better_challenger():
    sides = {"long": _side("better", champion_edge=False), "short": _side("indistinguishable", challenger_edge=False)}
    assert promotion_decision(sides, has_champion=True).promote


def test_without_a_champion_an_edge_is_enough():
    sides = {"long": {"challenger_edge": True}, "short": {"challenger_edge": False}}
    decision = promotion_decision(sides, has_champion=False)
    assert decision.promote and "No champion" in decision.reason


def test_a_shadow_record_that_shows_the_challenger_worse_stops_the_promotion():
    sides = {"long": _side("better"), "short": _side("indistinguishable", challenger_edge=False)}
    shadow = {"long": {"verdict": "worse", "n": 400, "n_effective": 60.0, "mean_difference": -0.02,
                       "lower": -0.03, "upper": -0.01}, "short": {"verdict": "indistinguishable"}}
    decision = promotion_decision(sides, has_champion=True, shadow=shadow)
    assert not decision.promote and decision.code == "shadow_worse"
    clean = {"long": {"verdict": "indistinguishable"}, "short": {"verdict": "too_few_bars"}}
    assert promotion_decision(sides, has_champion=True, shadow=clean).promote


def test_missing_side_scores_are_refused():
    with pytest.raises(ValueError, match="short"):
        promotion_decision({"long": _side("better")}, has_champion=True)


def test_the_rule_text_states_the_test_and_the_no_edge_clause():
    assert "Diebold-Mariano" in RULE_TEXT and "never promoted" in RULE_TEXT
