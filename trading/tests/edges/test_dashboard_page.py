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


# ---- the prediction panel ---------------------------------------------------------------------------------

NO_EDGE = ("Long: No edge: the meta-learner's out-of-sample log loss 0.6931 is not better than the logistic "
           "baseline's 0.6902. Short: No edge: the meta-learner's out-of-sample log loss 0.6950 is not better than "
           "the logistic baseline's 0.6911.")
LONG_EDGE_ONLY = ("Long: Edge: the meta-learner's out-of-sample log loss 0.6612 beats every baseline by at least "
                  "0.0050 (best baseline: logistic, 0.6702), and its ROC AUC 0.5810 is at least the best baseline's "
                  "(logistic, 0.5400). Short: No edge: the meta-learner's out-of-sample log loss 0.6950 is not better "
                  "than the logistic baseline's 0.6911.")
MEMBERS = ("lstm", "xgboost", "lightgbm", "random_forest", "catboost")


def model_version(instrument, *, has_edge=False, statement=NO_EDGE, edge_by_side=None, status="active",
                  timeframe="1m"):
    """A registered version as training leaves it, without artifacts (the page never loads the model)."""
    from mlcore.models import ModelVersion

    edge_by_side = edge_by_side or {"long": has_edge, "short": has_edge}
    return ModelVersion.objects.create(
        instrument=instrument, timeframe=timeframe, status=status, preset="fast", seed=0,
        data_start=datetime(2024, 2, 1, tzinfo=UTC), data_end=datetime(2024, 2, 29, 21, tzinfo=UTC), n_bars=20_000,
        feature_names=["ret_1", "atr_14"], feature_window=60, sequence_length=32,
        hyperparameters={"preset": "fast", "seed": 0, "n_folds": 4},
        label_settings={"tp_atr": 2.0, "sl_atr": 1.0, "horizon": 30}, payoff_ratio=2.0,
        metrics={side: {"verdict": {"has_edge": edge}} for side, edge in edge_by_side.items()},
        has_edge=has_edge, edge_statement=statement, member_seconds=dict.fromkeys(MEMBERS, 1.5),
    )


def prediction(version, bar, *, side="long", p_long=0.6243, p_short=0.3107, agreement=0.8, latency_ms=12.34):
    from mlcore.models import Prediction

    return Prediction.objects.create(
        instrument=bar.instrument, bar=bar, version=version, p_long=p_long, p_short=p_short, side=side,
        confidence=p_long if side == "long" else p_short, agreement=agreement,
        members={"members": {"long": dict.fromkeys(MEMBERS, p_long), "short": dict.fromkeys(MEMBERS, p_short)},
                 "meta_raw": {"long": p_long, "short": p_short}},
        latency_ms=latency_ms,
    )


def panel(html: str) -> str:
    match = re.search(r'<aside id="prediction".*?</aside>', html, re.S)
    assert match, "the dashboard must carry the prediction panel"
    return match.group(0)


def visible(html: str, element_id: str) -> bool:
    tag = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', html)
    assert tag, element_id
    return not re.search(r"\shidden(\s|>|$)", tag.group(0))


def train_command(html: str) -> str:
    match = re.search(r'<code id="pred-train-command">(.*?)</code>', html, re.S)
    assert match, "the no-model hint must show the command"
    return re.sub(r"<[^>]+>", "", match.group(1))


def test_latest_prediction_is_server_rendered_with_side_confidence_and_version(user_client, nq):
    bars = BarFactory.create_series(3, instrument=nq, start=datetime(2024, 3, 1, 14, 30, tzinfo=UTC))
    version = model_version(nq, has_edge=True, statement=LONG_EDGE_ONLY, edge_by_side={"long": True, "short": False})
    prediction(version, bars[1], side="short", p_long=0.2, p_short=0.55)
    prediction(version, bars[2], side="long", p_long=0.6243, p_short=0.3107, agreement=0.8, latency_ms=12.34)

    response = user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "1m"})

    html = panel(response.content.decode())
    # Hooks for the browser script and the tests: the newest bar's prediction.
    assert 'data-state="ready"' in html
    assert 'data-side="long"' in html
    assert 'data-confidence="0.6243"' in html
    assert f'data-version="{version.pk}"' in html
    assert 'data-bar-time="2024-03-01T14:32:00Z"' in html
    assert f'data-model="{version.pk}"' in html
    # What a trader reads (the script refines the percentages to one decimal).
    assert re.search(r'<span id="pred-side" class="side-badge side-long">LONG</span>', html)
    assert re.search(r'id="pred-confidence"[^>]*>\s*62%', html.replace("\n", " "))
    assert re.search(r'id="pred-p-long"[^>]*>62%<', html) and re.search(r'id="pred-p-short"[^>]*>31%<', html)
    assert ">4/5 members agree<" in html
    assert ">14:32 UTC<" in html
    assert ">12.3 ms<" in html
    admin_url = reverse("admin:mlcore_modelversion_change", args=[version.pk])
    assert admin_url == f"/admin/mlcore/modelversion/{version.pk}/change/"
    assert re.search(rf'<a id="pred-model-link" href="{admin_url}"[^>]*>v{version.pk}</a>', html)
    assert ">2.00 : 1<" in html
    # The call is long and the model's edge is on the long side: no warning.
    assert 'data-edge="edge"' in html and "Edge over baselines" in html
    assert not visible(html, "pred-no-model") and not visible(html, "pred-other-version")

    initial = initial_payload(response)
    assert initial["prediction"] == {
        "bar_timestamp": "2024-03-01T14:32:00Z", "version": version.pk, "p_long": 0.6243, "p_short": 0.3107,
        "side": "long", "confidence": 0.6243, "agreement": 0.8, "latency_ms": 12.34, "members": 5,
    }
    assert initial["model"] == {
        "id": version.pk, "has_edge": True, "edge_statement": LONG_EDGE_ONLY,
        "edge_by_side": {"long": True, "short": False}, "payoff_ratio": 2.0, "members": 5,
        "created_at": version.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_no_edge_warning_shows_when_the_active_version_has_none(user_client, nq):
    bar = BarFactory(instrument=nq, timeframe="1m")
    version = model_version(nq, has_edge=False)
    prediction(version, bar)

    html = panel(user_client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())

    assert 'data-edge="none"' in html
    assert re.search(r'<span id="pred-edge-tag" class="tag tag-warn">No edge over baselines</span>', html)
    assert visible(html, "pred-edge-note") and "treat its calls as unproven" in html
    assert NO_EDGE.replace("'", "&#x27;") in html, "the full verdict is one click away"


def test_a_call_on_the_side_without_edge_is_flagged(user_client, nq):
    bar = BarFactory(instrument=nq, timeframe="1m")
    version = model_version(nq, has_edge=True, statement=LONG_EDGE_ONLY, edge_by_side={"long": True, "short": False})
    prediction(version, bar, side="short", p_long=0.31, p_short=0.58)

    html = panel(user_client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())

    assert 'data-side="short"' in html and 'data-edge="other-side"' in html
    assert "No edge on the short side" in html


def test_without_a_model_the_panel_says_how_to_train_one(user_client, nq):
    BarFactory.create_series(2, instrument=nq)

    response = user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "1m"})

    html = panel(response.content.decode())
    assert 'data-state="no-model"' in html and 'data-version=""' in html
    assert visible(html, "pred-no-model") and not visible(html, "pred-body") and not visible(html, "pred-model")
    assert "No active model" in html
    assert train_command(html) == "python manage.py train --symbol NQ --fast"
    initial = initial_payload(response)
    assert initial["model"] is None and initial["prediction"] is None


def test_the_train_hint_names_a_timeframe_other_than_the_default(user_client, nq):
    html = panel(user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "5m"}).content.decode())

    assert train_command(html) == "python manage.py train --symbol NQ --timeframe 5m --fast"


def test_active_model_without_predictions_waits_for_the_next_bar(user_client, nq):
    version = model_version(nq, has_edge=False)

    html = panel(user_client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())

    assert 'data-state="waiting"' in html and f'data-model="{version.pk}"' in html
    assert visible(html, "pred-waiting") and not visible(html, "pred-body") and visible(html, "pred-model")
    assert "No edge over baselines" in html


def test_the_panel_only_shows_the_selected_market(user_client, nq):
    es = InstrumentFactory(symbol="ES")
    es_bar = BarFactory(instrument=es, timeframe="1m")
    prediction(model_version(es), es_bar)
    nq_5m = BarFactory(instrument=nq, timeframe="5m")
    prediction(model_version(nq, timeframe="5m"), nq_5m)

    html = panel(user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "1m"}).content.decode())

    assert 'data-state="no-model"' in html


def test_a_call_from_a_version_that_is_not_active_any_more_says_so(user_client, nq):
    bar = BarFactory(instrument=nq, timeframe="1m")
    old = model_version(nq, status="retired")
    prediction(old, bar)
    active = model_version(nq, has_edge=True, edge_by_side={"long": True, "short": True}, statement="Long: Edge: ...")

    html = panel(user_client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())

    assert f'data-version="{old.pk}"' in html and f'data-model="{active.pk}"' in html
    assert visible(html, "pred-other-version")
    assert re.search(rf'<a id="pred-version" href="/admin/mlcore/modelversion/{old.pk}/change/">v{old.pk}</a>', html)
    assert "% of members agree<" in html, "the member count is the active version's: a share for another one"
