"""Exposure the limits count: open trades and working entries, worst case per side, and the risk they commit."""
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.domain.exposure import EntryExposure, exposure, open_trade_loss, working_entry_loss

NQ, ES = 1, 2


def _entry(side="long", quantity=1, working=False, loss="0", instrument=NQ) -> EntryExposure:
    return EntryExposure(instrument_id=instrument, side=side, quantity=quantity, working=working,
                         loss_to_stop=Decimal(loss))


def test_no_entries_is_no_exposure():
    empty = exposure([])
    assert empty.position_for(NQ, "long") == 0 and empty.position_for(NQ, "short") == 0
    assert empty.total == 0 and empty.working_entries == 0 and empty.committed_risk == 0


def test_working_entries_count_like_open_trades_on_their_side():
    book = exposure([_entry("long", 2), _entry("long", 3, working=True), _entry("short", 1, working=True)])
    assert book.position_for(NQ, "long") == 5
    assert book.position_for(NQ, "short") == -1
    assert book.working_entries == 2


def test_a_long_and_a_short_do_not_cancel_each_other():
    # Each exits on its own bracket: if the short takes profit, the long of 5 is left.
    book = exposure([_entry("long", 5), _entry("short", 5)])
    assert book.position_for(NQ, "long") == 5 and book.position_for(NQ, "short") == -5
    assert book.total == 5  # the net is somewhere in [-5, 5]


def test_the_total_counts_each_instrument_at_its_worst_side():
    book = exposure([_entry("long", 4), _entry("short", 1), _entry("short", 3, instrument=ES, working=True)])
    assert book.total == 7


def test_a_stored_position_larger_than_the_open_trades_counts_in_full():
    book = exposure([_entry("long", 1)], positions={NQ: 3, ES: -2})
    assert book.position_for(NQ, "long") == 3 and book.position_for(ES, "short") == -2


def test_committed_risk_adds_every_entrys_loss_to_its_stop():
    book = exposure([_entry(loss="450.5"), _entry("short", working=True, loss="100")])
    assert book.committed_risk == Decimal("550.5")


@pytest.mark.parametrize("bad", [_entry(quantity=0), _entry(side="flat"), _entry(loss="-1"), _entry(loss="NaN")])
def test_an_invalid_entry_is_refused(bad):
    with pytest.raises(ValueError):
        exposure([bad])


def test_a_working_entry_risks_its_stop_distance_slippage_and_both_commissions():
    # NQ: 10 points + 1 tick (0.25) at $20 a point, $2.50 each way, 3 contracts.
    loss = working_entry_loss(quantity=3, stop_distance=Decimal("10"), slippage=Decimal("0.25"),
                              point_value=Decimal("20"), commission_per_contract=Decimal("2.50"))
    assert loss == 3 * (Decimal("10.25") * 20 + 5)


def test_an_open_trade_risks_the_distance_from_its_mark_to_its_stop():
    common = dict(quantity=2, slippage=Decimal("0.25"), point_value=Decimal("20"),
                  commission_per_contract=Decimal("2.50"))
    long_loss = open_trade_loss(side="long", mark=Decimal("18005"), stop_loss=Decimal("17990"), **common)
    assert long_loss == 2 * (Decimal("15.25") * 20 + Decimal("2.50"))
    short_loss = open_trade_loss(side="short", mark=Decimal("18005"), stop_loss=Decimal("18010"), **common)
    assert short_loss == 2 * (Decimal("5.25") * 20 + Decimal("2.50"))
    # Marked through the stop (a gap): the stop fills at the next bar, the distance is not negative.
    through = open_trade_loss(side="long", mark=Decimal("17980"), stop_loss=Decimal("17990"), **common)
    assert through == 2 * (Decimal("0.25") * 20 + Decimal("2.50"))


@given(st.lists(st.tuples(st.sampled_from([NQ, ES]), st.sampled_from(["long", "short"]), st.integers(1, 20),
                          st.booleans()), max_size=12))
def test_the_worst_net_position_of_any_subset_of_trades_is_within_the_counted_exposure(entries):
    book = exposure([_entry(side, quantity, working, instrument=instrument)
                     for instrument, side, quantity, working in entries])
    for instrument in (NQ, ES):
        signed = [q if s == "long" else -q for i, s, q, _ in entries if i == instrument]
        # Any subset may still be open at some point (each exits on its own bracket).
        highest = sum(q for q in signed if q > 0)
        lowest = sum(q for q in signed if q < 0)
        assert book.position_for(instrument, "long") == highest
        assert book.position_for(instrument, "short") == lowest
    assert book.total >= max((abs(q) for _, _, q, _ in entries), default=0)
