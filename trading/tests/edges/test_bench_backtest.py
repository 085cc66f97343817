"""`manage.py bench backtest --json`: the memory engine, the database replay (on the window's first --db-bars) and
backtesting.py on the same bars; every difference with backtesting.py explained, the two engines identical on the
bars they share, nothing left behind. On PostgreSQL only: it trains a model and replays bars, about two minutes."""
import io
import json

import pytest
from django.core.management import call_command

from trading.models import Instrument


@pytest.mark.django_db(transaction=True)
def test_bench_backtest_runs_both_engines_and_backtesting_py_on_the_same_bars_and_cleans_up(settings, tmp_path):
    pytest.importorskip("backtesting")
    from trading.peer_backtest import RULE_NAMES
    from mlcore.models import ModelVersion
    from trading.models import Account, BacktestRun

    settings.MEDIA_ROOT = tmp_path / "media"
    out = io.StringIO()
    call_command("bench", "backtest", "--bars", "600", "--db-bars", "300", "--history", "3000", "--json", stdout=out)
    result = json.loads(out.getvalue())
    memory, db, peer, comparison = result["memory"], result["db"], result["backtesting_py"], result["comparison"]
    assert result["bench"] == "backtest" and result["bars"] == 600
    for figures in (memory, db, peer):
        assert figures["bars_per_s"] > 0 and figures["seconds"] > 0 and figures["trades"] >= 0
    assert db["bars"] == 300 and "300" in db["note"]
    assert {"read_bars", "predict", "engine", "write", "report"} <= set(memory["phases_s"])
    assert memory["peak_rss_mb"] > 0 and memory["rss_growth_mb"] >= 0 and memory["memory_measure"]
    # backtesting.py is given the memory run's entries: every difference has a rule that explains it.
    assert comparison["ours"] == memory["trades"] and comparison["peer"] == peer["trades"]
    assert comparison["unexplained"] == 0, result["differences_sample"]
    assert set(comparison["by_rule"]) <= set(RULE_NAMES)
    # The engines agree on the bars they share: every record of a memory run over the db window, and the long
    # memory run's trades closed inside it.
    shared = result["engines_on_db_window"]
    assert shared["bars"] == 300
    assert shared["records_compared"]["recommendations"] > 0 and shared["records_compared"]["equity"] > 0
    assert shared["record_differences"] == 0, shared["record_differences_sample"]
    assert shared["trades_compared"] == db["trades"]
    assert shared["trade_differences"] == 0, shared["trade_differences_sample"]
    # Scratch records removed: market, account, runs, version.
    assert not BacktestRun.objects.exists() and not ModelVersion.objects.exists()
    assert not Instrument.objects.filter(symbol__startswith="BTB").exists()
    assert not Account.objects.filter(name__startswith="bench-").exists()
