"""Kelly sizing: the formula, each factor, the conversion to whole contracts, the cap and the degenerate inputs."""
import json
import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trading.domain.kelly import KellyConfig, KellyInputs, KellySize, kelly_size

NQ = dict(equity=Decimal("100000"), stop_distance=Decimal("20"), point_value=Decimal("20"))  # $400 risk a contract
UNCAPPED = KellyConfig(max_contracts=1_000_000)


def _inputs(**overrides) -> KellyInputs:
    values = dict(probability=0.65, payoff_ratio=1.5, confidence=0.65, drawdown=0.0, model_health=1.0,
                  volatility_ratio=1.0, **NQ)
    values.update(overrides)
    if "probability" in overrides and "confidence" not in overrides:
        values["confidence"] = overrides["probability"]
    return KellyInputs(**values)


# ------------------------------------------------------------------------------------------------ the formula

def test_full_kelly_is_p_minus_q_over_b():
    size = kelly_size(_inputs(probability=0.6, payoff_ratio=2.0), KellyConfig())
    assert size.full_kelly == pytest.approx(0.6 - 0.4 / 2.0)


def test_full_kelly_is_kept_even_when_negative():
    size = kelly_size(_inputs(probability=0.62, payoff_ratio=0.5), KellyConfig())
    assert size.full_kelly == pytest.approx(0.62 - 0.38 / 0.5)
    assert size.adjusted_fraction == 0.0


def test_default_kelly_fraction_is_a_quarter_of_full_kelly():
    size = kelly_size(_inputs(probability=1.0, payoff_ratio=2.0), KellyConfig())
    assert KellyConfig().kelly_fraction == 0.25
    assert size.kelly_fraction == 0.25
    assert size.adjusted_fraction == pytest.approx(0.25 * 1.0)


def test_adjusted_fraction_is_the_kelly_fraction_of_full_kelly_times_every_factor():
    size = kelly_size(_inputs(probability=0.7, payoff_ratio=1.5, drawdown=0.03, model_health=0.64,
                              volatility_ratio=1.25), KellyConfig(kelly_fraction=0.5))
    expected = size.full_kelly * 0.5 * size.confidence_factor * size.drawdown_factor * size.health_factor \
        * size.volatility_factor
    assert size.adjusted_fraction == pytest.approx(expected)
    assert size.confidence_factor == pytest.approx(0.5 + 0.5 * (0.7 - 0.6) / 0.4)
    assert size.drawdown_factor == pytest.approx(0.7)
    assert size.health_factor == pytest.approx(0.8)  # (0.64 - 0.40) / (0.70 - 0.40)
    assert size.volatility_factor == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------------ one test per factor

def test_confidence_factor_is_one_half_at_the_threshold_rising_linearly_to_one_at_certainty():
    config = KellyConfig(confidence_threshold=0.6)
    factors = [kelly_size(_inputs(confidence=c), config).confidence_factor for c in (0.6, 0.8, 1.0)]
    assert factors == pytest.approx([0.5, 0.75, 1.0])


def test_confidence_factor_is_zero_below_the_threshold():
    size = kelly_size(_inputs(probability=0.7, confidence=0.59), KellyConfig(confidence_threshold=0.6))
    assert size.confidence_factor == 0.0
    assert size.contracts == 0
    assert size.reason == "confidence 0.59 is under the confidence threshold 0.60"


def test_drawdown_factor_is_one_with_no_drawdown_and_falls_linearly_to_zero_at_the_maximum():
    config = KellyConfig(max_drawdown=0.10)
    factors = [kelly_size(_inputs(drawdown=d), config).drawdown_factor for d in (0.0, 0.025, 0.05, 0.10, 0.5)]
    assert factors == pytest.approx([1.0, 0.75, 0.5, 0.0, 0.0])


def test_size_is_zero_with_a_reason_when_drawdown_reaches_the_maximum():
    size = kelly_size(_inputs(drawdown=0.10), KellyConfig(max_drawdown=0.10))
    assert size.contracts == 0
    assert size.reason == "drawdown 10.0% reached the maximum 10.0%"


def test_health_factor_is_one_from_the_full_size_floor_and_falls_linearly_to_zero_at_the_blocking_floor():
    config = KellyConfig(health_full_at=0.70, health_zero_at=0.40)
    healths = (-0.5, 0.0, 0.40, 0.49, 0.55, 0.6997, 0.70, 1.0, 1.7)
    factors = [kelly_size(_inputs(model_health=h), config).health_factor for h in healths]
    assert factors == pytest.approx([0.0, 0.0, 0.0, 0.3, 0.5, 0.999, 1.0, 1.0, 1.0])


def test_health_factor_is_a_step_when_the_full_size_floor_is_not_above_the_blocking_floor():
    config = KellyConfig(health_full_at=0.5, health_zero_at=0.5)
    assert [kelly_size(_inputs(model_health=h), config).health_factor for h in (0.49, 0.5, 0.51)] == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("name", ["health_full_at", "health_zero_at"])
@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan])
def test_health_floors_outside_zero_and_one_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        KellyConfig(**{name: value})


def test_size_is_zero_with_a_reason_when_model_health_is_at_the_blocking_floor():
    size = kelly_size(_inputs(model_health=0.4), KellyConfig())
    assert size.contracts == 0
    assert size.reason == "model health 40/100 is at or under the blocking floor 40"


def test_volatility_factor_shrinks_size_when_volatility_is_above_normal_and_never_grows_it():
    factors = [kelly_size(_inputs(volatility_ratio=r), KellyConfig()).volatility_factor for r in (0.5, 1.0, 2.0, 4.0)]
    assert factors == [1.0, 1.0, 0.5, 0.25]


@pytest.mark.parametrize("ratio", [0.0, -1.0, math.nan, math.inf])
def test_volatility_factor_is_zero_for_a_ratio_that_is_not_a_finite_positive_number(ratio):
    size = kelly_size(_inputs(volatility_ratio=ratio), KellyConfig())
    assert size.volatility_factor == 0.0
    assert size.contracts == 0
    assert "volatility ratio" in size.reason


# ------------------------------------------------------------------------------------------------ to contracts

def test_contracts_come_from_equity_stop_distance_and_point_value():
    # f* = 0.6 - 0.4/2 = 0.4; a quarter of it = 0.1; confidence at the threshold halves it: 0.05 of equity,
    # $5,000 at risk over $400 a contract (20 points at $20) = 12.5 contracts, floored to 12.
    size = kelly_size(_inputs(probability=0.6, payoff_ratio=2.0), UNCAPPED)
    assert size.risk_per_contract == Decimal("400")
    assert size.raw_contracts == Decimal("12.5000")
    assert size.contracts == 12
    assert not size.capped
    assert size.reason == ""


def test_raw_contracts_are_rounded_down_to_four_decimals_never_up():
    # 0.05 * 100000 / 300 = 16.6666...
    size = kelly_size(_inputs(probability=0.6, payoff_ratio=2.0, stop_distance=Decimal("15")), UNCAPPED)
    assert size.raw_contracts == Decimal("16.6666")
    assert size.contracts == 16


def test_size_is_capped_at_max_contracts_and_marked_capped():
    size = kelly_size(_inputs(probability=0.6, payoff_ratio=2.0), KellyConfig())  # 12.5 raw, default cap 5
    assert KellyConfig().max_contracts == 5
    assert size.contracts == 5
    assert size.capped
    assert size.raw_contracts == Decimal("12.5000")


def test_size_is_zero_with_a_reason_when_the_cap_is_zero():
    size = kelly_size(_inputs(), KellyConfig(max_contracts=0))
    assert size.contracts == 0
    assert size.reason == "max_contracts is 0"


def test_a_fraction_of_a_contract_rounds_down_to_zero_with_a_reason():
    size = kelly_size(_inputs(equity=Decimal("5000")), KellyConfig())
    assert Decimal(0) < size.raw_contracts < 1
    assert size.contracts == 0
    assert size.reason == f"size {size.raw_contracts} contracts rounds down to 0"


# ------------------------------------------------------------------------------------------------ zero, with a reason

def test_size_is_zero_when_probability_is_under_the_confidence_threshold():
    size = kelly_size(_inputs(probability=0.55), KellyConfig())
    assert size.contracts == 0
    assert size.reason == "probability 0.55 is under the confidence threshold 0.60"


def test_a_probability_just_under_the_threshold_is_not_printed_as_equal_to_it():
    assert kelly_size(_inputs(probability=0.5999), KellyConfig()).reason == \
        "probability 0.5999 is under the confidence threshold 0.60"


def test_size_is_zero_under_the_threshold_even_when_a_long_payoff_gives_an_edge():
    size = kelly_size(_inputs(probability=0.55, confidence=0.9, payoff_ratio=5.0), KellyConfig())
    assert size.full_kelly > 0
    assert size.contracts == 0
    assert size.adjusted_fraction == 0.0


def test_size_is_zero_when_there_is_no_edge():
    size = kelly_size(_inputs(probability=0.62, payoff_ratio=0.5), KellyConfig())
    assert size.contracts == 0
    assert size.reason.startswith("no edge: f* = -0.1400 <= 0")


def test_size_is_zero_with_a_reason_for_zero_equity():
    size = kelly_size(_inputs(equity=Decimal(0)), KellyConfig())
    assert size.contracts == 0
    assert size.raw_contracts == Decimal(0)
    assert size.reason == "zero equity"


def test_a_negative_equity_is_stated_in_cents_as_the_ledger_stores_it():
    # The account's equity comes from the ledger with ten decimal places.
    size = kelly_size(_inputs(equity=Decimal("-1250.5000000000")), KellyConfig())
    assert size.contracts == 0
    assert size.reason == "negative equity -1250.50"


@pytest.mark.parametrize("equity, stated", [
    (Decimal("-0.004"), "negative equity -0.004"),  # cents would say 0.00: not a negative equity at all
    (Decimal("-1E+27"), "negative equity -1E+27"),  # beyond cents' precision: stated as it came, never raised
])
def test_a_negative_equity_is_stated_so_that_it_reads_negative_and_never_raises(equity, stated):
    size = kelly_size(_inputs(equity=equity), KellyConfig())
    assert size.contracts == 0 and size.reason == stated


@pytest.mark.parametrize("field, value, words", [
    ("probability", math.nan, "probability"),
    ("probability", math.inf, "probability"),
    ("probability", 1.2, "probability"),
    ("probability", -0.1, "probability"),
    ("payoff_ratio", 0.0, "payoff ratio"),
    ("payoff_ratio", -1.5, "payoff ratio"),
    ("payoff_ratio", math.nan, "payoff ratio"),
    ("payoff_ratio", math.inf, "payoff ratio"),
    ("confidence", math.nan, "confidence"),
    ("equity", Decimal("-100"), "negative equity"),
    ("equity", Decimal("NaN"), "equity"),
    ("equity", Decimal("Infinity"), "equity"),
    ("equity", None, "equity"),
    ("stop_distance", Decimal(0), "stop distance"),
    ("stop_distance", Decimal("-4"), "stop distance"),
    ("stop_distance", Decimal("sNaN"), "stop distance"),
    ("point_value", Decimal(0), "point value"),
    ("point_value", "20", "point value"),
])
def test_degenerate_input_sizes_to_zero_contracts_with_a_reason_instead_of_raising(field, value, words):
    inputs = replace(_inputs(), **{field: value})
    size = kelly_size(inputs, KellyConfig())
    assert size.contracts == 0
    assert words in size.reason
    assert _finite_and_non_negative(size)
    json.dumps(size.as_dict(), allow_nan=False)


@pytest.mark.parametrize("money", [
    dict(equity=Decimal("9E+999990"), stop_distance=Decimal("1E-999990"), point_value=Decimal("1E-999990")),
    dict(stop_distance=Decimal("9E+999990"), point_value=Decimal("9E+999990")),
])
def test_amounts_beyond_decimal_range_size_to_zero_instead_of_overflowing(money):
    size = kelly_size(_inputs(**money), KellyConfig())
    assert size.contracts == 0
    assert "out of range" in size.reason


@pytest.mark.parametrize("field, value", [("drawdown", math.nan), ("model_health", math.nan)])
def test_a_nan_risk_factor_sizes_to_zero(field, value):
    size = kelly_size(replace(_inputs(), **{field: value}), KellyConfig())
    assert size.contracts == 0
    assert size.reason


def test_ints_and_floats_are_accepted_for_money_and_converted_exactly():
    size = kelly_size(_inputs(probability=0.6, payoff_ratio=2.0, equity=100000, stop_distance=20.0, point_value=20),
                      UNCAPPED)
    assert size.contracts == 12


def test_as_dict_is_json_ready_with_decimals_as_strings():
    as_dict = kelly_size(_inputs(), KellyConfig()).as_dict()
    assert set(as_dict) == set(KellySize.__dataclass_fields__)
    assert as_dict["risk_per_contract"] == "400"
    assert isinstance(as_dict["raw_contracts"], str)
    json.dumps(as_dict, allow_nan=False)


# ------------------------------------------------------------------------------------------------ configuration

@pytest.mark.parametrize("field, value", [
    ("kelly_fraction", 0.0), ("kelly_fraction", 1.01), ("kelly_fraction", math.nan), ("kelly_fraction", -0.25),
    ("confidence_threshold", 0.49), ("confidence_threshold", 1.0), ("confidence_threshold", math.nan),
    ("max_contracts", -1), ("max_contracts", 2.5), ("max_contracts", True),
    ("max_drawdown", 0.0), ("max_drawdown", 1.5), ("max_drawdown", -0.1),
])
def test_config_rejects_a_value_out_of_range_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        KellyConfig(**{field: value})


def test_config_accepts_the_edges_of_its_ranges():
    KellyConfig(kelly_fraction=1.0, confidence_threshold=0.5, max_contracts=0, max_drawdown=1.0)


# ------------------------------------------------------------------------------------------------ properties

probabilities = st.floats(0.0, 1.0)
any_float = st.floats(allow_nan=True, allow_infinity=True)
money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e9"), places=2)
configs = st.builds(
    KellyConfig,
    kelly_fraction=st.floats(0.01, 1.0),
    confidence_threshold=st.one_of(st.sampled_from([0.5, 0.55, 0.6]), st.floats(0.5, 0.99)),
    max_contracts=st.integers(0, 50),
    max_drawdown=st.one_of(st.just(0.1), st.floats(0.01, 1.0)),
)


@st.composite
def sane_inputs(draw) -> KellyInputs:
    """Finite, in-range inputs, weighted towards tradable ones so the sizes are not all zero."""
    probability = draw(st.one_of(st.floats(0.6, 0.95), probabilities))
    return KellyInputs(
        probability=probability,
        payoff_ratio=draw(st.floats(0.05, 20.0)),
        confidence=draw(st.one_of(st.just(probability), probabilities)),
        drawdown=draw(st.one_of(st.floats(0.0, 0.2), st.floats(0.0, 1.0))),
        model_health=draw(st.floats(0.0, 1.0)),
        volatility_ratio=draw(st.floats(0.05, 20.0)),
        equity=draw(st.one_of(st.decimals(min_value=10_000, max_value=10_000_000, places=2), money)),
        stop_distance=draw(st.decimals(min_value=Decimal("0.25"), max_value=Decimal("1000"), places=2)),
        point_value=draw(st.sampled_from([Decimal("0.5"), Decimal("2"), Decimal("5"), Decimal("20"), Decimal("50")])),
    )




@st.composite
def tradable_inputs(draw) -> KellyInputs:
    """Inputs that usually size to some contracts, so the monotonicity checks compare non-zero sizes."""
    probability = draw(st.floats(0.6, 1.0))
    return KellyInputs(
        probability=probability, payoff_ratio=draw(st.floats(0.5, 4.0)), confidence=probability,
        drawdown=draw(st.floats(0.0, 0.05)), model_health=draw(st.floats(0.5, 1.0)),
        volatility_ratio=draw(st.floats(0.5, 2.0)),
        equity=draw(st.decimals(min_value=50_000, max_value=5_000_000, places=2)),
        stop_distance=draw(st.decimals(min_value=Decimal("5"), max_value=Decimal("60"), places=2)),
        point_value=Decimal("20"),
    )


tradable_configs = st.builds(KellyConfig, kelly_fraction=st.floats(0.1, 1.0), max_contracts=st.integers(1, 1000))
any_inputs = st.one_of(sane_inputs(), tradable_inputs())
any_configs = st.one_of(configs, tradable_configs)
wild_inputs = st.builds(
    KellyInputs,
    probability=any_float,
    payoff_ratio=any_float,
    confidence=any_float,
    drawdown=any_float,
    model_health=any_float,
    volatility_ratio=any_float,
    equity=st.decimals(allow_nan=True, allow_infinity=True),
    stop_distance=st.decimals(allow_nan=True, allow_infinity=True),
    point_value=st.decimals(allow_nan=True, allow_infinity=True),
)


def _finite_and_non_negative(size: KellySize) -> bool:
    floats = (size.full_kelly, size.confidence_factor, size.drawdown_factor, size.health_factor,
              size.volatility_factor, size.adjusted_fraction)
    return (all(math.isfinite(x) for x in floats)
            and size.adjusted_fraction >= 0
            and size.risk_per_contract.is_finite() and size.risk_per_contract >= 0
            and size.raw_contracts.is_finite() and size.raw_contracts >= 0
            and size.contracts >= 0)


@given(st.one_of(any_inputs, wild_inputs), any_configs)
def test_size_is_never_nan_negative_or_above_the_cap(inputs, config):
    size = kelly_size(inputs, config)
    assert _finite_and_non_negative(size)
    assert isinstance(size.contracts, int)
    assert size.contracts <= config.max_contracts
    assert (size.contracts == 0) == (size.reason != "")
    json.dumps(size.as_dict(), allow_nan=False)


@given(sane_inputs(), configs)
def test_size_is_zero_when_probability_is_under_the_threshold_or_there_is_no_edge(inputs, config):
    size = kelly_size(inputs, config)
    if inputs.probability < config.confidence_threshold or size.full_kelly <= 0:
        assert size.contracts == 0
        assert size.raw_contracts == 0


@given(any_inputs, any_configs)
def test_money_arithmetic_never_rounds_the_size_up(inputs, config):
    # The fraction itself is taken to 12 significant digits (see kelly.py); nothing after it rounds up.
    size = kelly_size(inputs, config)
    fraction = Fraction(Decimal(f"{size.adjusted_fraction:.12g}"))
    exact = fraction * Fraction(inputs.equity) / (Fraction(inputs.stop_distance) * Fraction(inputs.point_value))
    assert Fraction(size.raw_contracts) <= exact
    assert size.contracts <= exact


def test_float_noise_in_the_probability_does_not_cost_a_whole_contract():
    # 0.6 is stored as 0.5999...; taken exactly, 0.05 * 104000 / 400 = 13 contracts would floor to 12.
    size = kelly_size(_inputs(probability=0.6, payoff_ratio=2.0, equity=Decimal("104000")), UNCAPPED)
    assert size.full_kelly < 0.4
    assert size.raw_contracts == Decimal("13.0000")
    assert size.contracts == 13


@given(any_inputs, any_configs, st.floats(0.55, 1.0), st.floats(0.55, 1.0))
def test_size_is_never_larger_when_probability_falls(inputs, config, p1, p2):
    lower, higher = sorted((p1, p2))
    low = kelly_size(replace(inputs, probability=lower, confidence=lower), config)
    high = kelly_size(replace(inputs, probability=higher, confidence=higher), config)
    assert low.adjusted_fraction <= high.adjusted_fraction
    assert low.raw_contracts <= high.raw_contracts
    assert low.contracts <= high.contracts


@given(any_inputs, any_configs, st.floats(0.0, 0.2), st.floats(0.0, 0.2))
def test_size_is_never_larger_when_drawdown_grows(inputs, config, d1, d2):
    smaller, larger = sorted((d1, d2))
    assume(smaller != larger)
    calm = kelly_size(replace(inputs, drawdown=smaller), config)
    deeper = kelly_size(replace(inputs, drawdown=larger), config)
    assert deeper.drawdown_factor <= calm.drawdown_factor
    assert deeper.contracts <= calm.contracts
    assert deeper.raw_contracts <= calm.raw_contracts


@given(any_inputs, any_configs, st.floats(0.05, 20.0), st.floats(0.05, 20.0))
def test_size_is_never_larger_when_volatility_rises(inputs, config, r1, r2):
    calmer, wilder = sorted((r1, r2))
    assert kelly_size(replace(inputs, volatility_ratio=wilder), config).contracts <= \
        kelly_size(replace(inputs, volatility_ratio=calmer), config).contracts


@given(any_inputs, any_configs, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_size_is_never_larger_when_model_health_falls(inputs, config, h1, h2):
    worse, better = sorted((h1, h2))
    assert kelly_size(replace(inputs, model_health=worse), config).contracts <= \
        kelly_size(replace(inputs, model_health=better), config).contracts
