"""The table of trading settings' ranges and its strict parser: every setting has a type and a closed or open interval,
and a value is refused unless it is a number of that type inside it."""
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.domain.config_ranges import CONFIG_RANGES, SettingRange

TTL = CONFIG_RANGES["recommendation_ttl_bars"]


@pytest.mark.parametrize(("name", "value"), [
    # What the fuzzer got accepted: each one stopped or distorted trading.
    ("recommendation_ttl_bars", 228601184493597),
    ("slippage_ticks", 2**63 - 1),
    ("max_position_contracts", 2_445_088),
    ("health_floor", True),
    ("recommendation_ttl_bars", 2.9),
])
def test_the_values_a_fuzzer_got_accepted_are_refused(name, value):
    with pytest.raises(ValueError):
        CONFIG_RANGES[name].parse(value)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_a_number(value):
    for setting in CONFIG_RANGES.values():
        with pytest.raises(ValueError, match="boolean"):
            setting.parse(value)


@pytest.mark.parametrize("value", [2.5, "2.5", Decimal("2.5"), "25e-1"])
def test_a_fraction_is_not_a_whole_number(value):
    with pytest.raises(ValueError, match="whole number"):
        TTL.parse(value)


@pytest.mark.parametrize("value", [2, 2.0, "2", " 2 ", "2.00", Decimal("2")])
def test_a_whole_number_is_read_in_any_spelling_as_an_int(value):
    parsed = TTL.parse(value)
    assert parsed == 2 and type(parsed) is int


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "NaN", "inf", "-Infinity", Decimal("NaN"),
                                   "sNaN"])
def test_nan_and_infinities_are_refused_everywhere(value):
    for setting in CONFIG_RANGES.values():
        with pytest.raises(ValueError):
            setting.parse(value)


@pytest.mark.parametrize("value", ["half", "", "  ", "0x10", "1,5", "1" * 41, None, [0.5], {"v": 0.5}, object()])
def test_anything_that_is_not_a_number_is_refused(value):
    with pytest.raises(ValueError):
        CONFIG_RANGES["kelly_fraction"].parse(value)


def test_a_huge_exponent_is_refused_by_range_without_building_the_number():
    with pytest.raises(ValueError, match=r"in \[1, 1440\]"):
        TTL.parse("1e999999999")


def test_open_and_closed_ends():
    kelly, confidence = CONFIG_RANGES["kelly_fraction"], CONFIG_RANGES["min_confidence"]
    assert kelly.parse(1) == 1.0 and confidence.parse("0.5") == 0.5
    with pytest.raises(ValueError, match=r"\(0.0, 1.0\]"):
        kelly.parse(0)
    with pytest.raises(ValueError, match=r"\[0.5, 1.0\)"):
        confidence.parse(1)
    # Below 1 as written, 1.0 as a float: the float is what would be stored, so it is refused.
    with pytest.raises(ValueError):
        confidence.parse("0.99999999999999999999")


def test_money_keeps_two_decimals_exactly():
    limit = CONFIG_RANGES["daily_loss_limit"]
    assert limit.parse("1500.25") == Decimal("1500.25")
    assert limit.parse(1500.5) == Decimal("1500.5")
    assert limit.parse(0) == Decimal(0)
    with pytest.raises(ValueError, match="2 decimal places"):
        limit.parse("1500.125")
    with pytest.raises(ValueError):
        limit.parse("-0.01")


def test_every_range_is_finite_and_holds_its_own_ends_as_documented():
    for name, setting in CONFIG_RANGES.items():
        assert setting.kind in (int, float, Decimal), name
        assert setting.low < setting.high, name
        assert setting.contains(setting.low) is not setting.low_open, name
        assert setting.contains(setting.high) is not setting.high_open, name
        assert str(setting) in setting.describe()


@given(st.sampled_from(sorted(CONFIG_RANGES)), st.one_of(st.integers(), st.floats(), st.text(max_size=12),
                                                         st.decimals(), st.booleans(), st.none()))
def test_whatever_parses_is_of_the_settings_type_and_inside_its_range(name, value):
    setting: SettingRange = CONFIG_RANGES[name]
    try:
        parsed = setting.parse(value)
    except ValueError:
        return
    assert type(parsed) is setting.kind
    assert setting.contains(parsed)
    if isinstance(parsed, float):
        assert math.isfinite(parsed)
