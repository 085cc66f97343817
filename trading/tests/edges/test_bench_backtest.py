"""`manage.py bench backtest --json`: MinhOS's backtest and backtesting.py on the same entries, every difference
explained, nothing left behind. On PostgreSQL only: it trains a model and replays bars, about a minute."""
import io
import json

import pytest
from django.core.management import call_command

from trading.models import Instrument


@pytest.mark.django_db(transaction=True)
def test_bench_backtest_runs_both_backtesters_on_the_same_entries_explains_every_difference_and_cleans_up(settings,
                                                                                                      tmp_path):
    pytest.importorskip("backtesting")
    from trading.peer_backtest import RULE_NAMES
    from mlcore.models import ModelVersion
    from trading.models import Account, BacktestRun

    settings.MEDIA_ROOT = tmp_path / "media"
    out = io.StringIO()
    call_command("bench", "backtest", "--bars", "400", "--history", "3000", "--json", stdout=out)
    result = json.loads(out.getvalue())
    minhos, peer, comparison = result["minhos"], result["backtesting_py"], result["comparison"]
    assert result["bench"] == "backtest" and result["bars"] == 400
    assert minhos["bars_per_s"] > 0 and peer["bars_per_s"] > 0
    assert comparison["ours"] == minhos["trades"] and comparison["peer"] == peer["trades"]
    assert comparison["unexplained"] == 0, result["differences_sample"]
    # Every difference is counted under the rule that explains it.
    assert set(comparison["by_rule"]) <= set(RULE_NAMES)
    # Scratch records removed: market, account, run, version.
    assert not BacktestRun.objects.exists() and not ModelVersion.objects.exists()
    assert not Instrument.objects.filter(symbol__startswith="BTB").exists()
    assert not Account.objects.filter(name__startswith="bench-").exists()
