"""`bench statements`: SQL statements per bar of the live settle and decide steps, counted, and nothing left behind."""
import io
import json

import pytest
from django.core.management import call_command

from trading.models import Account, Instrument

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_the_bench_counts_each_steps_statements_over_bars_with_and_without_a_trade():
    out = io.StringIO()
    call_command("bench", "statements", "--bars", "24", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["bench"] == "statements" and result["bars"] == 24
    assert result["fills"] >= 2  # an entry and its exit: bars with an open trade were counted
    for step in ("settle", "decide"):
        assert 1 <= result[step]["median"] <= result[step]["max"]
    assert result["together"]["mean"] == pytest.approx(result["settle"]["mean"] + result["decide"]["mean"], abs=0.02)
    assert not Instrument.objects.filter(symbol__startswith="BST").exists()
    assert not Account.objects.filter(name__startswith="bench-BST").exists()
