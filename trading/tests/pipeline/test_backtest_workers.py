"""A backtest on a real training worker (a private redis-server, one worker `-Q training -c 2`, the test database):
started through POST /api/backtests/, it goes queued -> running -> done on the worker, its progress is seen part way
through on GET /api/backtests/{id}/ while it runs, and its report is stored. The same task sent again while the run
is running is not executed a second time: the run has exactly one private market and account, each bar copied once.

The version is the processes' fast model (trading/tests/processes.py `market`), trained on the history; the run
replays the bars stored after it, so it is out of sample (no look-ahead)."""
import pytest
from rest_framework.test import APIClient

from trading import backtest, services
from trading.models import Account, BacktestRun, Bar, BarWorkflow, Instrument
from trading.tests.decisions import user_with
from trading.tests.processes import market, process_stack, send  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

TIMEOUT = 90.0
WINDOW_BARS = 200  # about 20 s on the worker; progress is written every 100 bars
TASK = "trading.tasks.backtest_run"


def task_results(worker) -> list[str]:
    """What each backtest_run the worker finished returned (or that it raised), in order."""
    lines = worker.log_text().splitlines()
    return [line.split(": ", 2)[-1] for line in lines if f"Task {TASK}[" in line
            and (" succeeded in " in line or " raised " in line)]


def test_a_backtest_started_through_the_api_runs_once_on_a_training_worker_with_live_progress(process_stack, market):
    stack = process_stack
    worker = stack.worker(["training"], concurrency=2, wait=False)
    window = market.live.iloc[:WINDOW_BARS]
    services.bars_ingest(instrument=market.instrument, timeframe="1m", frame=window)  # after the history
    start, end = window["timestamp"].iloc[0].to_pydatetime(), window["timestamp"].iloc[-1].to_pydatetime()
    assert market.version.data_end < start  # trained before the window: out of sample
    client = APIClient()
    runner = user_with("runner", "trading.run_backtest")
    client.force_authenticate(runner)
    worker.wait_ready()

    # Recorded as the API records it, and queued by a process of its own, as the other process tests queue: in a full
    # run, a task queued from the test process could go out on an earlier test's pooled connection. (The API's own
    # queueing on commit is checked in test_backtest_api.py.)
    # The database replay: a bar at a time, its progress written every 100 bars, so the run is seen part way (the memory
    # engine runs these 200 bars in about a second and writes its progress every 5,000).
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=start, end=end, version_id=market.version.pk,
                                   requested_by=runner, via="api", engine=backtest.ENGINE_DB)
    created = client.get(f"/api/backtests/{run.pk}/").json()
    send(stack, TASK, run.pk)
    run_id, total = created["id"], created["bars_total"]
    assert created["status"] == "queued" and created["lookahead"] is False and total == WINDOW_BARS
    seen = []  # (status, bars_done) of every GET /api/backtests/{id}/ while waiting

    def look() -> dict:
        body = client.get(f"/api/backtests/{run_id}/").json()
        seen.append((body["status"], body["bars_done"]))
        return body

    def part_way_or_over():
        body = look()
        if body["status"] == "running" and 0 < body["bars_done"] < total or body["status"] in ("done", "failed"):
            return body
        return None

    body = stack.wait_for(part_way_or_over, TIMEOUT, lambda: f"never seen running part way: last {seen[-5:]}")
    assert body["status"] == "running", f"not seen running part way through: {body['status']} {body['error']}; {seen}"
    # The same task again while the run runs: the worker's second pool process takes it and leaves the run alone.
    send(stack, TASK, run_id)
    body = stack.wait_for(lambda: (b := look())["status"] in ("done", "failed") and b, TIMEOUT,
                          lambda: f"the run did not end: last {seen[-5:]}")

    assert body["status"] == "done", body["error"]
    statuses = [created["status"]] + [status for status, _ in seen]
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == ["queued", "running", "done"]
    assert all(done % 100 == 0 for status, done in seen if status == "running")  # written every 100 bars
    report = body["report"]
    assert body["bars_done"] == total and body["progress"] == 100.0 and body["started_at"] and body["finished_at"]
    assert report["window"]["bars"] == total and report["model_version"] == market.version.pk
    assert report["lookahead"] is False and len(report["equity"]["equity"]) == total  # one snapshot per bar
    assert report["recommendations"] and "net_pnl" in report
    run = BacktestRun.objects.get(pk=run_id)
    assert run.report == report and run.via == "api" and run.requested_by.username == "runner"
    # Executed once: the duplicate, taken while the run ran, returned "not queued"; one private market and account,
    # each bar copied once.
    stack.wait_for(lambda: len(task_results(worker)) == 2, 15, lambda: f"task results: {task_results(worker)}")
    assert task_results(worker) == ["'not queued'", "'done'"], task_results(worker)
    assert list(Instrument.objects.filter(backtest=True).values_list("pk", flat=True)) == [run.market_id]
    assert list(Account.objects.filter(backtest=True).values_list("pk", flat=True)) == [run.account_id]
    assert BarWorkflow.objects.filter(instrument_id=run.market_id).count() == total
    assert Bar.objects.filter(instrument_id=run.market_id, timestamp__gte=start).count() == total
