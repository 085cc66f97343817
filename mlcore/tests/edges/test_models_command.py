"""`manage.py models list|promote|rollback`: the registry from the command line."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mlcore.models import ModelVersion
from mlcore.registry import model_version_promote
from trading.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("model_cache")]


def models(*args) -> str:
    out = StringIO()
    call_command("models", *args, stdout=out)
    return out.getvalue()


def status_of(version) -> str:
    return ModelVersion.objects.get(pk=version.pk).status


def test_list_prints_every_version_newest_first_with_market_status_and_preset(register):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)

    lines = models("list").splitlines()

    assert lines[0].split()[:4] == ["id", "market", "status", "preset"]
    rows = [line.split() for line in lines[1:]]
    assert [row[:5] for row in rows] == [
        [str(second.pk), "NQ", "1m", "candidate", "fast"],
        [str(first.pk), "NQ", "1m", "active", "fast"],
    ]
    assert f"{first.metrics['long']['meta']['log_loss']:.4f}" in lines[2]  # the long meta-learner's log loss


def test_list_filters_by_symbol(register):
    register()

    assert len(models("list", "--symbol", "NQ").splitlines()) == 2
    assert len(models("list", "--symbol", "ES").splitlines()) == 1  # the header only


def test_list_shows_a_version_whose_metrics_hold_no_auc_or_none_at_all(register):
    # A metric that was NaN is stored as null (JSON has no NaN); a version may also have no report yet.
    no_auc, no_report = register(), register()
    metrics = no_auc.metrics
    metrics["long"]["meta"]["roc_auc"] = None
    ModelVersion.objects.filter(pk=no_auc.pk).update(metrics=metrics)
    ModelVersion.objects.filter(pk=no_report.pk).update(metrics={})

    rows = {line.split()[0]: line for line in models("list").splitlines()[1:]}

    assert set(rows) == {str(no_auc.pk), str(no_report.pk)}
    assert "n/a" in rows[str(no_auc.pk)]


def test_promote_makes_the_version_active_and_says_so(register):
    previous, version = register(), register()
    model_version_promote(version_id=previous.pk)

    out = models("promote", str(version.pk))

    assert out.strip() == f"v{version.pk} is now active for NQ 1m"
    assert (status_of(previous), status_of(version)) == ("retired", "active")


def test_rollback_reactivates_the_previous_version_and_says_so(register):
    previous, current = register(), register()
    model_version_promote(version_id=previous.pk)
    model_version_promote(version_id=current.pk)

    out = models("rollback", "--symbol", "NQ")

    assert out.strip() == f"rolled back: v{previous.pk} is active again for NQ 1m"
    assert (status_of(previous), status_of(current)) == ("active", "retired")


def test_promote_and_rollback_from_the_command_are_audited_with_the_machine_user(register, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "ops")
    previous, version = register(), register()
    model_version_promote(version_id=previous.pk)

    models("promote", str(version.pk))
    models("rollback", "--symbol", "NQ")

    promote = AuditEvent.objects.filter(action="model_promote").order_by("id").last()
    rollback = AuditEvent.objects.get(action="model_rollback")
    assert (promote.user, promote.state_before, promote.state_after, promote.details["via"]) == (
        None, f"v{previous.pk}", f"v{version.pk}", "command (OS user ops)")
    assert (rollback.state_before, rollback.state_after, rollback.details["via"]) == (
        f"v{version.pk}", f"v{previous.pk}", "command (OS user ops)")


def test_a_refused_promote_from_the_command_is_audited(db):
    with pytest.raises(CommandError):
        models("promote", "424242")

    refused = AuditEvent.objects.get()
    assert (refused.action, refused.details["control"], refused.details["version_after"]) == (
        "refused", "model_promote", 424242)


def test_promote_of_an_unknown_version_is_a_command_error_naming_it(db):
    with pytest.raises(CommandError, match="no model version 424242"):
        models("promote", "424242")


def test_promote_of_a_corrupted_version_is_a_command_error_and_the_active_one_stays(register, corrupt_artifact):
    serving, broken = register(), register()
    model_version_promote(version_id=serving.pk)
    corrupt_artifact(broken)

    with pytest.raises(CommandError, match=f"model version {broken.pk}: artifact .* is corrupted"):
        models("promote", str(broken.pk))

    assert (status_of(serving), status_of(broken)) == ("active", "candidate")


def test_rollback_with_nothing_before_is_a_command_error_with_the_reason(register):
    model_version_promote(version_id=register().pk)

    with pytest.raises(CommandError, match="NQ 1m: no earlier active version to roll back to"):
        models("rollback", "--symbol", "NQ")


def test_rollback_of_an_unknown_symbol_is_a_command_error_naming_it(db):
    with pytest.raises(CommandError, match="unknown instrument symbol 'NOPE'"):
        models("rollback", "--symbol", "NOPE")
