"""Retraining end to end, the challenger trained inside the retraining: on a pure random walk no challenger is
promoted; the command prints the decision; with real processes (beat, a monitoring worker, two training workers on
a private Redis) the nightly schedule and monitoring's degradation hook each start exactly one retraining, whose
member fits are spread over both training workers and whose decision is recorded and shown."""
import json

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from mlcore import registry, retraining, services
from mlcore.models import ModelVersion, Retraining, RetrainingPolicy
from mlcore.tests.retraining_data import CHAMPION_BARS, CONFIG, POLICY, regime_bars
from mlcore.training import train_model
from monitoring.defaults import RULES
from monitoring.models import AlertRule
from trading import services as trading_services
from trading.tests.factories import InstrumentFactory
from trading.tests.processes import process_stack, send  # noqa: F401  (fixture)

TIMEOUT = 240.0


@pytest.fixture(scope="module")
def signal_series():
    return regime_bars(signal_after=True)


@pytest.fixture(scope="module")
def walk_series():
    return regime_bars(signal_after=False)


@pytest.fixture(scope="module")
def signal_champion(signal_series):
    return train_model(signal_series.iloc[:CHAMPION_BARS].reset_index(drop=True), CONFIG)


def store_market(series, champion_model, **policy) -> dict:
    """NQ 1m: the series stored, the champion (trained on its first part) registered and active, the policy set."""
    services.model_cache_clear()
    nq = InstrumentFactory(symbol="NQ")  # a transactional test flushed the row the migration seeds
    trading_services.bars_ingest(instrument=nq, timeframe="1m", frame=series.assign(row=range(1, len(series) + 1)))
    champion = services._version_register(instrument=nq, timeframe="1m", config=CONFIG, trained=champion_model)
    registry.model_version_promote(version_id=champion.pk)
    RetrainingPolicy.objects.create(instrument=nq, timeframe="1m", **{**POLICY, **policy})
    return {"instrument": nq, "champion": ModelVersion.objects.get(pk=champion.pk)}


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    yield
    services.model_cache_clear()


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_on_a_pure_random_walk_no_challenger_is_promoted_even_under_the_automatic_policy(walk_series):
    champion_model = train_model(walk_series.iloc[:CHAMPION_BARS].reset_index(drop=True), CONFIG)
    market = store_market(walk_series, champion_model, promotion="automatic")
    record = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="manual", requested_by="t", run="none")

    record = retraining.retraining_run(retraining_id=record.pk, distributed=False)

    assert record.status == Retraining.Status.KEPT, record.decision_reason
    assert record.decision in {"no_edge", "neither_has_edge", "not_better"}
    assert ModelVersion.objects.get(status="active").pk == market["champion"].pk
    assert ModelVersion.objects.get(pk=record.challenger_id).status == ModelVersion.Status.CANDIDATE


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_the_retrain_command_trains_scores_and_prints_the_proposed_decision_as_json(signal_series, signal_champion,
                                                                                    capsys):
    market = store_market(signal_series, signal_champion)  # manual promotion: the default policy

    call_command("retrain", "--symbol", "NQ", "--json")

    payload = json.loads(capsys.readouterr().out)
    assert payload["status"] == "proposed" and payload["decision"] == "promote", payload["reason"]
    assert payload["trigger"] == "manual" and payload["requested_by"].startswith("command")
    assert payload["champion"] == market["champion"].pk and payload["challenger"] != market["champion"].pk
    assert payload["window"]["stretch_bars"] == POLICY["holdout_bars"] + CONFIG.label.horizon
    assert {"long", "short"} == set(payload["sides"]) and payload["rule"]
    assert ModelVersion.objects.get(status="active").pk == market["champion"].pk  # proposed, not promoted


@pytest.mark.django_db
@pytest.mark.usefixtures("media")
def test_the_retrain_command_says_why_nothing_ran(signal_series, signal_champion, capsys):
    store_market(signal_series, signal_champion, min_new_bars=50_000)
    call_command("retrain", "--symbol", "NQ")
    out = capsys.readouterr().out
    assert "SKIPPED" in out and "too few new bars: 15000" in out
    with pytest.raises(Exception, match="NOPE"):
        call_command("retrain", "--symbol", "NOPE")


def one_retraining_decided(trigger: str):
    """The retraining of `trigger` that got past the skips, once it reached a decision (or an end)."""
    started = Retraining.objects.filter(trigger=trigger).exclude(status=Retraining.Status.SKIPPED)
    return started.exclude(status__in=Retraining.IN_FLIGHT).first()


def fits_per_worker(workers) -> list[int]:
    return [sum(1 for line in w.log_text().splitlines() if "fit_member_unit[" in line and " succeeded in " in line)
            for w in workers]


@pytest.mark.deployment
@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_the_schedule_starts_exactly_one_retraining_spread_over_two_training_workers_and_records_its_decision(
        process_stack, signal_series, signal_champion, settings):  # noqa: F811
    settings.MEDIA_ROOT = process_stack.tmp_path / "media"
    market = store_market(signal_series, signal_champion, promotion="automatic")
    # The nightly entry, due every 3 s instead: beat keeps asking while the first one trains.
    every = IntervalSchedule.objects.create(every=3, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name="retrain-nightly", defaults={
        "task": "mlcore.tasks.retrain_scheduled", "interval": every, "crontab": None, "queue": "monitoring"})
    stack = process_stack
    training = stack.workers(["training"], ["training"], concurrency=1)
    stack.worker(["monitoring"], concurrency=1)
    stack.beat()

    record = stack.wait_for(lambda: one_retraining_decided("schedule"), TIMEOUT,
                            lambda: f"no scheduled retraining decided: {list(Retraining.objects.values_list('id', 'status', 'note'))[-5:]}")

    assert record.status == Retraining.Status.PROMOTED, (record.status, record.error, record.decision_reason)
    assert ModelVersion.objects.get(status="active").pk == record.challenger_id != market["champion"].pk
    assert Retraining.objects.filter(trigger="schedule").exclude(status="skipped").count() == 1
    skipped = Retraining.objects.filter(trigger="schedule", status="skipped")
    assert skipped.exists() and all(r.note.startswith(("retraining #", "too few new bars")) for r in skipped)
    fits = fits_per_worker(training)
    assert all(fits), f"member fits per training worker: {fits} (both should take part)"


@pytest.mark.deployment
@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_the_degradation_hook_starts_exactly_one_retraining_whose_decision_is_recorded(
        process_stack, signal_series, signal_champion, settings):  # noqa: F811
    settings.MEDIA_ROOT = process_stack.tmp_path / "media"
    market = store_market(signal_series, signal_champion, cooldown_minutes=60)
    assert not market["champion"].has_edge  # trained before the signal: monitoring's "no edge" alert opens
    name, severity, threshold, description = RULES["no_edge"]
    AlertRule.objects.update_or_create(code="no_edge", defaults={
        "name": name, "severity": severity, "threshold": threshold, "description": description,
        "queue_retraining": True})
    PeriodicTask.objects.filter(name="retrain-nightly").update(enabled=False)
    stack = process_stack
    stack.workers(["training"], ["training"], concurrency=1)
    stack.worker(["monitoring"], concurrency=1)
    from monitoring import tasks as monitoring_tasks

    for _ in range(3):  # three snapshots: the alert opens once; the retraining is asked for once
        send(stack, monitoring_tasks.snapshot_all.name)

    record = stack.wait_for(lambda: one_retraining_decided("degradation"), TIMEOUT,
                            lambda: f"no degradation retraining decided: {list(Retraining.objects.values_list('id', 'status', 'note'))}")

    assert record.requested_by == "monitoring" and "alert no_edge" in record.reason
    assert record.status == Retraining.Status.PROPOSED, (record.status, record.error, record.decision_reason)
    assert Retraining.objects.filter(trigger="degradation").exclude(status="skipped").count() == 1
    assert ModelVersion.objects.get(status="active").pk == market["champion"].pk  # manual: proposed only
