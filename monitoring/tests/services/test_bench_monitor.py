"""`manage.py bench monitor` runs on its own instrument and leaves the real markets untouched."""
import json

import pytest
from django.core.management import call_command

from mlcore.models import Prediction
from trading.models import Instrument

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_bench_monitor_times_a_snapshot_over_the_resolved_predictions_it_made_and_cleans_up(capsys):
    before = Instrument.objects.count()
    call_command("bench", "monitor", "--predictions", "1200", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["bench"] == "monitor" and report["resolved_predictions"] == 1200
    assert len(report["snapshot_seconds_runs"]) == 3 and report["snapshot_seconds_median"] > 0
    assert report["target_seconds"] == 2.0
    assert Instrument.objects.count() == before and not Prediction.objects.exists()
