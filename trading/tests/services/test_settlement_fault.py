"""A per-bar settlement that fails is never swallowed: the account is marked and takes no new entries, the error is
logged and raised, the dashboard's figures say why, and the next bar that settles clears the mark and catches up
on the stop the failed bar touched."""
import logging
from decimal import Decimal

import pytest
from django.db import transaction

from trading import selectors, services
from trading.models import Account, EquitySnapshot, Order, Position, Recommendation
from trading.services import execution
from trading.services.execution import SettlementFailed
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def long_open(nq, trader):
    """A long of 5 filled at bar 2's open (18000.25; stop 17990.25, take-profit 18015.25), bars 0-2 settled."""
    bars = flat_bars(nq, 2)
    for bar in bars:
        services.bar_settle(bar_id=bar.pk)
    version = model_version(nq)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], version, p=0.7).pk, now=close_time(bars[-1]))
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(bars[-1]))
    services.bar_settle(bar_id=bar_at(nq, 2).pk)
    assert Position.objects.get(instrument=nq).quantity == 5
    return version


def _fail_marking(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away")
    monkeypatch.setattr(execution, "_settle_events_store", broken)


def test_a_failed_settlement_marks_the_account_logs_and_raises(nq, long_open, monkeypatch, caplog):
    _fail_marking(monkeypatch)
    stop_touched = bar_at(nq, 3, open_="18000", low="17980", close="17985")
    with caplog.at_level(logging.ERROR, logger="trading.services.execution"), \
            pytest.raises(SettlementFailed, match="RuntimeError: database went away"):
        services.bar_settle(bar_id=stop_touched.pk)
    account = Account.objects.get(name="paper")
    assert "2024-01-02 14:33 UTC" in account.settlement_fault and "database went away" in account.settlement_fault
    assert account.settlement_fault_at is not None
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "new entries are blocked" in record.getMessage() and record.exc_info is not None
    # Nothing of the failed bar was half-written: the stop did not fill, no snapshot for the bar.
    assert Position.objects.get(instrument=nq).quantity == 5
    assert not EquitySnapshot.objects.filter(timestamp=close_time(stop_touched)).exists()
    summary = selectors.account_summary(account=account)
    assert summary["settlement_fault"] == account.settlement_fault


def test_no_new_entry_is_offered_or_auto_approved_while_settlement_is_failing(nq, long_open, monkeypatch):
    Account.objects.filter(name="paper").update(auto_trading=True, settlement_fault="bar X: RuntimeError: boom")
    bar = bar_at(nq, 3)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bar, long_open, side="short", p=0.7).pk, now=close_time(bar))
    assert recommendation.state == Recommendation.State.BLOCKED
    assert any("settling the last bar failed" in r and "boom" in r for r in recommendation.reasons)
    assert Order.objects.filter(kind="entry").count() == 1


def test_the_next_bar_that_settles_clears_the_fault_and_fills_the_stop_the_failed_bar_touched(nq, long_open,
                                                                                               monkeypatch):
    stop_touched = bar_at(nq, 3, open_="18000", low="17980", close="17985")
    with monkeypatch.context() as patch:
        _fail_marking(patch)
        with pytest.raises(SettlementFailed):
            services.bar_settle(bar_id=stop_touched.pk)
    recovered_bar = bar_at(nq, 4, open_="17990", high="17995", close="17992")
    [stop] = services.bar_settle(bar_id=recovered_bar.pk)
    # The stop filled at the bar that touched it, at the stop less one tick of slippage, not at a later price.
    assert stop.order.kind == "stop_loss"
    assert stop.timestamp == stop_touched.timestamp and stop.price == Decimal("17990.00")
    assert Position.objects.get(instrument=nq).quantity == 0
    account = Account.objects.get(name="paper")
    assert account.settlement_fault == "" and account.settlement_fault_at is None
    assert services.account_reconcile().clean
    # New entries are taken again.
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(recovered_bar, long_open, p=0.7).pk, now=close_time(recovered_bar))
    assert recommendation.state == Recommendation.State.PENDING


def test_the_recovery_is_logged_once_committed_and_not_when_its_settlement_rolls_back(
        nq, long_open, monkeypatch, caplog, django_capture_on_commit_callbacks):
    with monkeypatch.context() as patch:
        _fail_marking(patch)
        with pytest.raises(SettlementFailed):
            services.bar_settle(bar_id=bar_at(nq, 3).pk)
    recovered_bar = bar_at(nq, 4)

    with caplog.at_level(logging.WARNING, logger="trading.services.execution"):
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
            services.bar_settle(bar_id=recovered_bar.pk)
            raise RuntimeError("the settlement's transaction fails after the account recovered")
        assert "allowed again" not in caplog.text
        assert Account.objects.get(name="paper").settlement_fault != ""

        with django_capture_on_commit_callbacks(execute=True):
            services.bar_settle(bar_id=recovered_bar.pk)
    [line] = [r.getMessage() for r in caplog.records if "allowed again" in r.getMessage()]
    assert "database went away" in line  # the fault it recovered from, as it was before it was cleared


def test_one_accounts_failure_does_not_stop_the_others_from_settling(nq, long_open, monkeypatch):
    other = Account.objects.create(name="second")
    services.trading_config_get(account=other, instrument=nq)
    real = execution._settle_events_store

    def fails_for_paper(account, *args):
        if account.name == "paper":
            raise RuntimeError("only paper")
        return real(account, *args)
    monkeypatch.setattr(execution, "_settle_events_store", fails_for_paper)
    bar = bar_at(nq, 3)
    with pytest.raises(SettlementFailed, match="only paper"):
        services.bar_settle(bar_id=bar.pk)
    assert EquitySnapshot.objects.filter(account=other, timestamp=close_time(bar)).exists()
    assert Account.objects.get(pk=other.pk).settlement_fault == ""


def test_a_bar_of_another_market_does_not_clear_the_mark(nq, long_open, monkeypatch):
    from trading.tests.factories import InstrumentFactory

    with monkeypatch.context() as patch:
        _fail_marking(patch)
        with pytest.raises(SettlementFailed):
            services.bar_settle(bar_id=bar_at(nq, 3).pk)
    es = InstrumentFactory(symbol="ES")
    services.trading_config_get(account=Account.objects.get(name="paper"), instrument=es)
    services.bar_settle(bar_id=bar_at(es, 3, open_="5000").pk)
    assert "NQ 1m" in Account.objects.get(name="paper").settlement_fault
    services.bar_settle(bar_id=bar_at(nq, 4).pk)
    assert Account.objects.get(name="paper").settlement_fault == ""
