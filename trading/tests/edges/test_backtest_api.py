"""The backtest REST API: the runs (paginated, newest first, without their reports), one run with its progress and
report, starting one (trading.run_backtest; a refusal or a bad body is a 400 naming the problem, and creates
nothing), and the schema."""
import json

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from rest_framework.test import APIClient

from trading import backtest
from trading.models import BacktestRun, Instrument
from trading.tests.decisions import model_version, user_with
from trading.tests.edges.test_backtest_pages import WINDOW_END, WINDOW_START, falling_market, finished_run
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

FROM, TO = "2024-01-02T14:40:00Z", "2024-01-02T15:29:00Z"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def nq():
    instrument = Instrument.objects.get(symbol="NQ")
    falling_market(instrument)
    return instrument


@pytest.fixture
def runner():
    return client_for(user_with("runner", "trading.run_backtest"))


@pytest.fixture
def reader():
    return client_for(user_with("reader"))


def queued(instrument, version) -> BacktestRun:
    return backtest.backtest_create(symbol=instrument.symbol, timeframe="1m", start=WINDOW_START, end=WINDOW_END,
                                    version_id=version.pk)


def test_the_list_is_paginated_newest_first_without_the_reports(nq, reader):
    done = finished_run(nq)
    newer = queued(nq, done.model_version)

    response = reader.get("/api/backtests/", {"limit": 1})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and body["next"] and len(body["results"]) == 1
    [first] = body["results"]
    assert first["id"] == newer.pk and first["status"] == "queued" and first["progress"] == 0.0
    second = reader.get(body["next"]).json()["results"][0]
    assert second["id"] == done.pk and second["status"] == "done" and second["progress"] == 100.0
    for row in (first, second):
        assert "report" not in row and "config" not in row
        assert row["symbol"] == "NQ" and row["from"] == FROM and row["to"] == TO


def test_one_run_has_its_status_progress_and_full_report(nq, reader):
    run = finished_run(nq)

    body = reader.get(f"/api/backtests/{run.pk}/").json()

    assert body["status"] == "done" and body["progress"] == 100.0
    assert body["bars_done"] == body["bars_total"] == 50
    assert body["model_version"] == run.model_version_id and body["lookahead"] is False
    assert body["report"] == json.loads(json.dumps(run.report))
    assert body["report"]["net_pnl"] == run.report["net_pnl"] and isinstance(body["report"]["net_pnl"], str)
    assert body["config"]["account"] == "paper"
    assert reader.get("/api/backtests/999999/").status_code == 404


def test_starting_records_a_queued_run(nq, runner, django_capture_on_commit_callbacks):
    version = model_version(nq)

    with django_capture_on_commit_callbacks(execute=False) as started:
        response = runner.post("/api/backtests/", {"symbol": "NQ", "timeframe": "1m", "from": FROM, "to": TO,
                                                   "version": version.pk, "approval": "record", "breaker": "daily"},
                               format="json")

    assert response.status_code == 201, response.content
    run = BacktestRun.objects.get()
    assert run.config["breaker"] == "daily"
    body = response.json()
    assert body["id"] == run.pk and body["status"] == "queued" and body["report"] == {}
    assert body["requested_by"] == "runner" and body["via"] == "api" and body["bars_total"] == 50
    assert (run.instrument, run.timeframe, run.model_version_id, run.approval, run.lookahead) == (
        nq, "1m", version.pk, "record", False)
    assert (run.start, run.end, run.status) == (WINDOW_START, WINDOW_END, BacktestRun.Status.QUEUED)
    assert len(started) == 1  # started once the request commits (a thread in embedded mode, a task otherwise)


def test_a_version_trained_inside_the_window_runs_only_when_look_ahead_is_allowed(nq, runner,
                                                                                   django_capture_on_commit_callbacks):
    version = model_version(nq)
    version.data_end = WINDOW_END
    version.save(update_fields=["data_end"])
    body = {"symbol": "NQ", "from": FROM, "to": TO, "version": version.pk}

    refused = runner.post("/api/backtests/", body, format="json")
    with django_capture_on_commit_callbacks(execute=False):
        allowed = runner.post("/api/backtests/", {**body, "allow_lookahead": True}, format="json")

    assert refused.status_code == 400 and "look-ahead" in refused.json()["detail"]
    assert allowed.status_code == 201 and allowed.json()["lookahead"] is True
    assert BacktestRun.objects.get().lookahead


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"symbol": "ZZZ"}, "detail", "ZZZ"),
    ({"from": TO, "to": FROM}, "detail", "is before 'from'"),
    ({"from": "yesterday"}, "from", "ISO 8601"),
    ({"to": "2024-01-02T15:29:00"}, "to", "UTC offset"),
    ({"version": 999999}, "detail", "there is no model version 999999"),
    ({"version": "other-market"}, "detail", "not NQ 1m"),
    ({"version": "two"}, "version", "integer"),
    ({"from": "2023-01-01T00:00:00Z", "to": "2023-01-02T00:00:00Z"}, "detail", "no stored NQ 1m bars"),
    ({"timeframe": "7m"}, "timeframe", "not a valid choice"),
    ({"approval": "maybe"}, "approval", "not a valid choice"),
    ({"breaker": "never"}, "breaker", "not a valid choice"),
    ({"symbol": None}, "symbol", "may not be null"),
])
def test_a_refused_start_is_a_400_naming_the_problem_and_creates_nothing(nq, runner, change, field, words):
    version = model_version(nq)
    other = model_version(InstrumentFactory(symbol="ES"))
    if change.get("version") == "other-market":
        change = {**change, "version": other.pk}
    body = {"symbol": "NQ", "timeframe": "1m", "from": FROM, "to": TO, "version": version.pk, **change}

    response = runner.post("/api/backtests/", body, format="json")

    assert response.status_code == 400
    message = response.json()[field]
    assert words in (message if isinstance(message, str) else " ".join(message)), response.json()
    assert not BacktestRun.objects.exists()


def test_a_body_without_the_window_names_both_fields(nq, runner):
    response = runner.post("/api/backtests/", {"symbol": "NQ"}, format="json")

    assert response.status_code == 400 and {"from", "to"} <= set(response.json())
    assert not BacktestRun.objects.exists()


def test_starting_needs_the_permission_and_reading_a_login(nq, reader):
    version = model_version(nq)

    response = reader.post("/api/backtests/", {"symbol": "NQ", "from": FROM, "to": TO, "version": version.pk},
                           format="json")

    assert response.status_code == 403 and "trading.run_backtest" in response.json()["detail"]
    assert not BacktestRun.objects.exists()
    assert reader.get("/api/backtests/").status_code == 200
    assert APIClient().get("/api/backtests/").status_code in (401, 403)
    assert APIClient().post("/api/backtests/", {}, format="json").status_code in (401, 403)


def test_the_schema_lists_the_backtest_endpoints_and_validates(client, tmp_path):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    assert {"get", "post"} <= set(schema["paths"]["/api/backtests/"])
    assert "get" in schema["paths"]["/api/backtests/{run_id}/"]
    start = schema["paths"]["/api/backtests/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = start["$ref"].rsplit("/", 1)[1]
    assert {"from", "to", "symbol"} <= set(schema["components"]["schemas"][name]["required"])

    GENERATOR_STATS.reset()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
