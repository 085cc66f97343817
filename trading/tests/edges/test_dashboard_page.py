"""The dashboard page: behind login, instrument picker, initial bars for the chart, Plotly.js served locally."""
import json
import re
from datetime import UTC, datetime

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from trading.tests.factories import BarFactory, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def nq():
    return InstrumentFactory(symbol="NQ")


@pytest.fixture
def user_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="trader", password="not-used-here")
    client.force_login(user)
    return client


def initial_payload(response) -> dict:
    match = re.search(
        r'<script id="dashboard-initial" type="application/json">(.*?)</script>', response.content.decode(), re.S
    )
    assert match, "the page must carry the chart's initial data as json_script"
    return json.loads(match.group(1))


def test_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(reverse("dashboard"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert "next=/" in response.url


def test_login_page_renders_the_form(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="login-form"' in html
    assert 'name="username"' in html and 'name="password"' in html
    assert "csrfmiddlewaretoken" in html


def test_login_form_leads_to_the_dashboard(client, django_user_model, nq):
    django_user_model.objects.create_user(username="trader", password="s3cret-Pass-word")

    response = client.post(reverse("login"), {"username": "trader", "password": "s3cret-Pass-word"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert response.context["user"].username == "trader"
    assert 'id="chart"' in response.content.decode()


def test_dashboard_shows_picker_strip_chart_and_initial_bars(user_client, nq):
    inactive = InstrumentFactory(symbol="ES", active=False)
    other = InstrumentFactory(symbol="YM")
    bars = BarFactory.create_series(3, instrument=nq, start=datetime(2024, 3, 1, 14, 30, tzinfo=UTC))

    response = user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "1m"})

    assert response.status_code == 200
    html = response.content.decode()
    # Instrument picker: active instruments only, the shown one selected; timeframe picker too.
    assert re.search(r'<select name="symbol" id="symbol-select"', html)
    assert re.search(r'<option value="NQ"\s+selected>', html)
    assert f'<option value="{other.symbol}">' in html
    assert f'value="{inactive.symbol}"' not in html
    assert re.search(r'<option value="1m"\s+selected>1m</option>', html)
    assert '<option value="1h">1h</option>' in html
    # Hooks the browser script and the tests rely on.
    assert 'id="status-strip"' in html and 'data-ws-state="connecting"' in html
    assert 'data-bar-count="3"' in html
    assert 'data-last-bar-time="2024-03-01T14:32:00Z"' in html
    # Logout is a POST with a CSRF token (Django 5 refuses GET logout).
    logout_form = r'<form method="post" action="/accounts/logout/"[^>]*>\s*<input type="hidden" name="csrfmiddlewaretoken"'
    assert re.search(logout_form, html)
    assert ">trader<" in html

    payload = initial_payload(response)
    assert payload["symbol"] == "NQ" and payload["timeframe"] == "1m"
    assert [bar["t"] for bar in payload["bars"]] == [
        "2024-03-01T14:30:00Z", "2024-03-01T14:31:00Z", "2024-03-01T14:32:00Z",
    ]
    assert payload["bars"][-1]["c"] == float(bars[-1].close)
    assert payload["bars"][-1]["v"] == float(bars[-1].volume)
    assert payload["status"]["running"] is False
    assert payload["max_bars"] >= 100


def test_timeframe_without_bars_renders_the_empty_chart_state(user_client, nq):
    BarFactory.create_series(2, instrument=nq, timeframe="1m")

    response = user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "5m"})

    assert response.status_code == 200
    assert initial_payload(response)["bars"] == []
    html = response.content.decode()
    assert 'data-bar-count="0"' in html
    assert re.search(r'<div id="chart-empty" class="chart-empty">', html), "empty-state message must be visible"


def test_plotly_and_every_asset_are_served_locally(user_client, nq):
    response = user_client.get(reverse("dashboard"))

    html = response.content.decode()
    assert '<script src="/static/vendor/plotly/plotly.min.js" defer></script>' in html
    # The static path resolves through the staticfiles finders, so no collectstatic is needed.
    plotly_js = finders.find("vendor/plotly/plotly.min.js")
    assert plotly_js, "vendor/plotly/plotly.min.js must be found by the staticfiles finders"
    with open(plotly_js, encoding="utf-8", errors="replace") as f:
        assert "plotly.js" in f.read(2000).lower()
    for path in ("js/dashboard.js", "css/minhos.css"):
        assert finders.find(path), path
    # ...and the running site serves it (WhiteNoise from the finders, no collectstatic).
    served = user_client.get("/static/vendor/plotly/plotly.min.js")
    assert served.status_code == 200
    assert "javascript" in served["Content-Type"]
    served.close()
    # No CDN, no external fonts: every script and stylesheet reference is a local path.
    references = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', html)
    assert len(references) >= 3
    assert all(ref.startswith("/static/") for ref in references), references
    assert "//" not in "".join(references)


def test_unknown_symbol_is_404(user_client, nq):
    assert user_client.get(reverse("dashboard"), {"symbol": "NOPE"}).status_code == 404


def test_unknown_timeframe_is_404(user_client, nq):
    assert user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "7m"}).status_code == 404


def test_inactive_symbol_is_404(user_client, nq):
    InstrumentFactory(symbol="ES", active=False)

    assert user_client.get(reverse("dashboard"), {"symbol": "ES"}).status_code == 404


def test_no_active_instrument_shows_a_hint_instead_of_a_chart(user_client, nq):
    nq.active = False
    nq.save()

    response = user_client.get(reverse("dashboard"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "No active instrument" in html
    assert 'id="chart"' not in html
