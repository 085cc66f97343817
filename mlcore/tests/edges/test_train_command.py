"""`manage.py train`: refusals are command errors with the reason; one real --fast run end to end."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mlcore.models import ModelVersion, TrainingRun
from mlcore.registry import artifacts_verify
from trading import services as trading_services

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("storage", "model_cache")]
# Enough bars for three walk-forward folds, few enough that the one real training here stays short.
REAL_RUN_BARS = 900


def train(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("train", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.embedded
def test_an_unknown_symbol_is_a_command_error_naming_it(db):
    with pytest.raises(CommandError, match="unknown instrument symbol 'NOPE'"):
        train("--symbol", "NOPE", "--fast")


@pytest.mark.embedded
def test_too_few_bars_is_a_command_error_with_the_reason_and_no_version(nq, training_bars):
    trading_services.bars_ingest(instrument=nq, timeframe="1m", frame=training_bars.iloc[:200])

    with pytest.raises(CommandError, match=r"too few usable bars: \d+ of 200 .*need 600"):
        train("--symbol", "NQ", "--fast")

    assert not ModelVersion.objects.exists()
    assert TrainingRun.objects.get().status == TrainingRun.Status.FAILED


@pytest.mark.embedded
def test_a_training_already_running_is_a_command_error(nq):
    TrainingRun.objects.create(instrument=nq, timeframe="1m", preset="full")

    with pytest.raises(CommandError, match="a training of NQ 1m is already running"):
        train("--symbol", "NQ", "--fast")


@pytest.mark.embedded
def test_invalid_label_settings_are_a_command_error(nq):
    with pytest.raises(CommandError, match="horizon"):
        train("--symbol", "NQ", "--fast", "--horizon", "0")


@pytest.mark.embedded
def test_until_trains_on_the_bars_up_to_that_time_only(nq, training_bars):
    trading_services.bars_ingest(instrument=nq, timeframe="1m", frame=training_bars.iloc[:REAL_RUN_BARS])
    until = training_bars.timestamp.iloc[199]

    # 200 of the 900 stored bars are up to that minute: too few, refused before any fitting (cheap to test here).
    # Typed at +05:00, it is the same moment, and the progress says it in UTC.
    err = StringIO()
    with pytest.raises(CommandError, match=r"too few usable bars: \d+ of 200 "):
        call_command("train", "--symbol", "NQ", "--fast", "--until", until.tz_convert("+05:00").isoformat(),
                     stdout=StringIO(), stderr=err)
    assert f"200 NQ 1m bars loaded (up to {until:%Y-%m-%d %H:%M} UTC)" in err.getvalue()
    assert not ModelVersion.objects.exists()


@pytest.mark.embedded
@pytest.mark.parametrize("until", ["yesterday", "2026-02-30", "2026-13-01T10:00"])
def test_an_until_that_is_no_date_is_a_command_error_naming_the_option(nq, until):
    with pytest.raises(CommandError, match=r"^--until: not an ISO date or date-time"):
        train("--symbol", "NQ", "--fast", "--until", until)
    assert not TrainingRun.objects.exists()


def test_train_fast_trains_registers_and_promotes_a_version_and_prints_its_report(nq, training_bars):
    # The one real training through the public path (PostgreSQL pass only: it costs tens of seconds). Bars after
    # --until are stored too: the version must be trained on none of them (a backtest of them is out of sample).
    trading_services.bars_ingest(instrument=nq, timeframe="1m", frame=training_bars.iloc[:REAL_RUN_BARS + 60])
    until = training_bars.timestamp.iloc[REAL_RUN_BARS - 1]

    out, err = train("--symbol", "NQ", "--fast", "--until", until.isoformat())

    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.ACTIVE  # the first version of the market
    assert (version.preset, version.n_bars) == ("fast", REAL_RUN_BARS)
    artifacts_verify(version=version)
    run = TrainingRun.objects.get()
    assert (run.status, run.version_id) == (TrainingRun.Status.SUCCEEDED, version.pk)
    assert out.startswith(f"model version {version.pk} (active) for NQ 1m: {REAL_RUN_BARS} bars")
    for heading in ("long side, out of sample", "short side, out of sample", "meta + calibration",
                    "baseline majority"):
        assert heading in out
    assert version.edge_statement in out
    assert version.data_end == until.to_pydatetime()
    assert f"{REAL_RUN_BARS} NQ 1m bars loaded (up to {until:%Y-%m-%d %H:%M} UTC)" in err  # progress: stderr
