"""`manage.py bench ingest --json`: one JSON object of measured figures, and no benchmark data left behind."""
import io
import json

import pytest
from django.core.management import CommandError, call_command

from trading.models import Bar, Instrument

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_bench_ingest_prints_one_json_object_with_bars_per_second():
    out = io.StringIO()
    call_command("bench", "ingest", "--json", "--rows", "5000", stdout=out)

    result = json.loads(out.getvalue())  # the whole output is one object
    assert result["bench"] == "ingest"
    assert result["rows"] == result["inserted"] == 5000
    assert result["reimport_unchanged"] == 5000  # the second import is idempotent
    assert result["bars_per_s"] == pytest.approx(5000 / result["seconds"], rel=0.01)
    assert result["phases_s"]["read_csv"] + result["phases_s"]["validate_and_write"] == pytest.approx(
        result["seconds"], abs=0.01
    )


def test_bench_ingest_removes_its_instrument_and_bars():
    bars_before = Bar.objects.count()
    call_command("bench", "ingest", "--json", "--rows", "1000", stdout=io.StringIO())

    assert not Instrument.objects.filter(symbol__startswith="BENCH").exists()
    assert Bar.objects.count() == bars_before


def test_unknown_benchmark_is_refused_with_the_known_names():
    with pytest.raises(CommandError, match="ingest"):
        call_command("bench", "nonsense")


def test_bench_sizing_prints_kelly_risk_microseconds_and_service_milliseconds_and_cleans_up():
    from mlcore.models import ModelVersion
    from trading.models import Account, Recommendation

    out = io.StringIO()
    call_command("bench", "sizing", "--json", "--predictions", "20", stdout=out)
    result = json.loads(out.getvalue())
    assert result["bench"] == "sizing" and result["predictions"] == 20
    for key in ("kelly_risk_us", "service_ms"):
        figures = result[key]
        assert set(figures) == {"p50", "p95", "p99"}
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"]
    # The service does far more (queries, a commit) than the pure sizing it wraps.
    assert result["service_ms"]["p50"] * 1000 > result["kelly_risk_us"]["p50"]
    assert not Instrument.objects.filter(symbol__startswith="BENCH").exists()
    assert not Account.objects.filter(name__startswith="BENCH").exists()
    assert not Recommendation.objects.exists() and not ModelVersion.objects.exists()
