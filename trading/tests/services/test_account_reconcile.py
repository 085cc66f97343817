"""Positions and P&L recomputed from fills match the stored ones; a tampered position is reported."""
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from trading import services
from trading.models import Position
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def trade_twice(nq, trader):
    """Two round trips and one open trade, through sizing, approval and the broker."""
    bars = flat_bars(nq, 3)
    version = model_version(nq)
    i = 3
    for side in ("long", "short", "long"):
        [recommendation] = services.recommendations_create_for_prediction(
            prediction_id=prediction(bars[-1], version, side=side, p=0.7).pk, now=close_time(bars[-1]))
        services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(bars[-1]))
        bars.append(bar_at(nq, i, open_="18000.50", high="18001", low="17999", close="18000.75"))
        services.bar_settle(bar_id=bars[-1].pk)
        i += 1
        if side == "long" and i < 6:
            bars.append(bar_at(nq, i, open_="18001", high="18030", low="18000", close="18020"))  # take-profit
            services.bar_settle(bar_id=bars[-1].pk)
            i += 1
        elif side == "short":
            bars.append(bar_at(nq, i, open_="18001", high="18030", low="18000", close="18020"))  # stop
            services.bar_settle(bar_id=bars[-1].pk)
            i += 1


def test_replaying_the_fills_gives_the_stored_positions_exactly(nq, trader):
    trade_twice(nq, trader)
    report = services.account_reconcile()
    assert report.fills_replayed == 5 and report.positions_checked == 1
    assert report.differences == []
    assert Position.objects.get(instrument=nq).quantity > 0  # the last trade is still open


def test_a_position_changed_without_a_fill_is_reported(nq, trader):
    trade_twice(nq, trader)
    Position.objects.filter(instrument=nq).update(realized_pnl=Decimal("1.00"))
    report = services.account_reconcile()
    assert [d["field"] for d in report.differences] == ["realized_pnl"]


def test_the_reconcile_command_reports_zero_differences_as_json(nq, trader):
    trade_twice(nq, trader)
    out = io.StringIO()
    call_command("reconcile", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"positions_checked": 1, "fills_replayed": 5, "differences": []}


def test_the_reconcile_command_exits_non_zero_on_a_difference(nq, trader):
    trade_twice(nq, trader)
    Position.objects.filter(instrument=nq).update(quantity=7)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile", stdout=out)
    assert exit_info.value.code == 1
    assert "quantity: stored 7" in out.getvalue()
