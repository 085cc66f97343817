"""`manage.py bench web-soak`: its figures from the RSS samples, and bad options refused before anything starts (the
soak itself is a benchmark, run by hand: it lasts minutes)."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from trading.bench_web_soak import _rss_figures, _slope, bench_web_soak

pytestmark = pytest.mark.embedded


def test_figures_at_the_marks_and_the_slope_of_a_level_curve_is_zero():
    samples = [(0.0, 230.0), (300.0, 250.0), (600.0, 252.0), (1800.0, 255.0), (2700.0, 255.0), (3600.0, 255.0)]

    assert _rss_figures(samples) == {"start": 230.0, "10min": 252.0, "30min": 255.0, "60min": 255.0, "end": 255.0,
                                     "peak": 255.0}
    assert _slope(samples[3:]) == 0.0
    assert _slope([(0.0, 100.0), (1800.0, 101.0), (3600.0, 102.0)]) == 2.0  # MB per hour
    assert _slope([(0.0, 100.0), (30.0, 100.0)]) is None


def test_a_short_run_reports_only_the_marks_it_reached():
    assert _rss_figures([(0.0, 200.0), (30.0, 210.0), (60.0, 205.0)]) == {"start": 200.0, "end": 205.0,
                                                                        "peak": 210.0}


@pytest.mark.parametrize("options", [{"minutes": 0}, {"clients": 0}, {"pace": 0}, {"churn": 6, "clients": 5}])
def test_bad_options_are_refused_naming_them(options):
    with pytest.raises(CommandError, match="--minutes"):
        bench_web_soak(**options)


def test_clients_must_be_a_number():
    with pytest.raises(CommandError, match="--clients must be a whole number"):
        call_command("bench", "web-soak", "--clients", "1,100")
