"""The dashboard page: behind login, instrument picker, initial bars for the chart, Plotly.js served locally."""
import json
import re
from datetime import UTC, datetime
from html import unescape

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


# ---- the decision panel: recommendation, Kelly factors, risk checks, Approve / Reject, account and positions ------

KELLY_SHOWN = {
    # p = 0.7, b = 1.5: f* = 0.7 - 0.3 / 1.5 = 0.5; x 0.25; confidence 0.5 + 0.5 x 0.1 / 0.4 = 0.625 -> 0.078125
    "full_kelly": "0.5000", "kelly_fraction": "0.2500", "confidence_factor": "0.6250", "drawdown_factor": "1.0000",
    "health_factor": "1.0000", "volatility_factor": "1.0000", "adjusted_fraction": "0.0781",
    # 10-point stop x $20; 0.078125 x 100,000 / 200 = 39.0625 -> capped at 5
    "risk_per_contract": "200.00", "raw_contracts": "39.0625", "contracts": "5", "capped": "reached (5 max)",
}


@pytest.fixture
def trader_client(client):
    from trading.tests.decisions import user_with

    client.force_login(user_with("approver", "trading.approve_recommendation"))
    return client


def pending_recommendation(instrument, *, p=0.7, bars=3):
    """A prediction on the newest of `bars` flat bars, sized and risk-checked by the service as a bar closes."""
    from trading import services
    from trading.tests import decisions

    series = decisions.flat_bars(instrument, bars)
    version = decisions.model_version(instrument)
    stored = decisions.prediction(series[-1], version, p=p)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=stored.pk, now=decisions.close_time(series[-1]))
    return recommendation


def decision_panel(html: str) -> str:
    match = re.search(r'<aside id="decision".*?</aside>', html, re.S)
    assert match, "the dashboard must carry the decision panel"
    return match.group(0)


def account_panel(html: str) -> str:
    match = re.search(r'<section id="account".*?</section>', html, re.S)
    assert match, "the dashboard must carry the account panel"
    return match.group(0)


def factor(html: str, name: str) -> str:
    match = re.search(rf'<tr data-factor="{name}"[^>]*>\s*<th[^>]*>[^<]*</th>\s*<td[^>]*>([^<]*)</td>', html)
    assert match, name
    return match.group(1).strip()


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, element_id
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(2))).strip()


def test_a_pending_recommendation_shows_its_size_every_kelly_factor_every_risk_check_and_the_buttons(trader_client, nq):
    from trading import selectors

    recommendation = pending_recommendation(nq)
    assert recommendation.state == "pending" and recommendation.contracts == 5

    response = trader_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "1m"})

    html = decision_panel(response.content.decode())
    assert re.search(rf'<section id="recommendation"[^>]*\bdata-id="{recommendation.pk}"', html)
    assert re.search(r'<section id="recommendation"[^>]*\bdata-state="pending"', html)
    assert re.search(r'<section id="recommendation"[^>]*\baria-live="polite"', html)
    assert text_of(html, "rec-state") == "Pending approval"
    assert text_of(html, "rec-side") == "LONG" and text_of(html, "rec-contracts") == "5"
    assert text_of(html, "rec-contracts-unit") == "contracts"
    assert text_of(html, "rec-probability") == "70%" and text_of(html, "rec-payoff") == "1.50 : 1"
    assert text_of(html, "rec-account") == recommendation.account.name
    assert {name: factor(html, name) for name in KELLY_SHOWN} == KELLY_SHOWN
    assert not visible(html, "rec-empty") and visible(html, "rec-body")
    # Every check the risk manager made, passed or failed, with its message; then its decision.
    for check in recommendation.risk["checks"]:
        item = re.search(rf'<li class="check (check-pass|check-fail)" data-check="{check["name"]}" '
                         rf'data-passed="(true|false)">(.*?)</li>', html, re.S)
        assert item, check["name"]
        assert item.group(2) == ("true" if check["passed"] else "false")
        assert ("Pass" if check["passed"] else "Fail") in item.group(3)
        assert check["message"] in unescape(item.group(3))
    assert len(recommendation.risk["checks"]) >= 10
    assert text_of(html, "rec-risk-decision") == recommendation.risk_decision.upper() == "APPROVE"
    # Approve and Reject for a user with the permission, usable since it is pending, with a CSRF token for the POST.
    assert visible(html, "rec-actions")
    assert re.search(r'<button type="button" id="approve"[^>]*>Approve</button>', html)
    assert re.search(r'<button type="button" id="reject"[^>]*>Reject</button>', html)
    assert re.search(r'<div id="rec-actions"[^>]*>\s*<input type="hidden" name="csrfmiddlewaretoken"', html)
    assert 'data-approve-url="/api/recommendations/{id}/approve/"' in html
    assert 'data-reject-url="/api/recommendations/{id}/reject/"' in html
    assert 'id="rec-read-only"' not in html

    initial = initial_payload(response)
    stored = type(recommendation).objects.select_related("account").get(pk=recommendation.pk)
    assert initial["recommendation"] == selectors.recommendation_payload(stored)
    assert initial["can_decide"] is True


def test_a_read_only_user_sees_the_recommendation_but_no_buttons(user_client, nq):
    recommendation = pending_recommendation(nq)

    response = user_client.get(reverse("dashboard"), {"symbol": "NQ"})

    html = decision_panel(response.content.decode())
    assert re.search(rf'<section id="recommendation"[^>]*\bdata-id="{recommendation.pk}"', html)
    assert 'data-can-decide="false"' in html
    assert factor(html, "full_kelly") == "0.5000"
    assert 'id="approve"' not in html and 'id="reject"' not in html and 'id="rec-actions"' not in html
    assert 'csrfmiddlewaretoken' not in html
    assert "needs the “approve recommendation” permission" in text_of(html, "rec-read-only")
    assert initial_payload(response)["can_decide"] is False


def test_a_superuser_may_decide(client, django_user_model, nq):
    client.force_login(django_user_model.objects.create_superuser(username="root", password="unused"))
    pending_recommendation(nq)

    html = decision_panel(client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())

    assert 'id="approve"' in html and visible(html, "rec-actions")


def test_a_decided_recommendation_keeps_the_buttons_hidden(trader_client, nq):
    from trading import services
    from trading.tests.decisions import close_time, user_with

    recommendation = pending_recommendation(nq)
    services.recommendation_approve(recommendation_id=recommendation.pk, now=close_time(recommendation.bar),
                                    user=user_with("other", "trading.approve_recommendation"))

    html = decision_panel(trader_client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())

    assert re.search(r'<section id="recommendation"[^>]*\bdata-state="approved"', html)
    assert text_of(html, "rec-state") == "Approved"
    assert 'id="approve"' in html, "rendered for the next one, which may arrive live"
    assert not visible(html, "rec-actions")


def test_a_blocked_recommendation_shows_the_failed_checks_and_the_reasons(trader_client, nq):
    from trading.models import KillSwitch

    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True})
    recommendation = pending_recommendation(nq)
    assert recommendation.state == "blocked"

    response = trader_client.get(reverse("dashboard"), {"symbol": "NQ"})
    html = decision_panel(response.content.decode())

    assert re.search(r'<section id="recommendation"[^>]*\bdata-state="blocked"', html)
    assert re.search(r'<section id="recommendation"[^>]*\bdata-risk-decision="block"', html)
    assert text_of(html, "rec-state") == "Blocked by risk" and text_of(html, "rec-contracts") == "0"
    assert re.search(r'data-check="kill_switch" data-passed="false">\s*<span class="check-verdict">Fail</span>', html)
    assert visible(html, "rec-reasons") and "kill switch is on" in text_of(html, "rec-reasons")
    assert text_of(html, "rec-risk-decision") == "BLOCK"
    assert not visible(html, "rec-actions")
    html = account_panel(response.content.decode())
    assert re.search(r'<section id="account"[^>]*\bdata-kill-switch="engaged"', html)
    assert text_of(html, "account-kill-switch") == "Engaged"


def test_the_pending_one_is_shown_before_a_newer_decided_one(trader_client, nq):
    from trading import services
    from trading.tests import decisions

    first = pending_recommendation(nq)
    later_bar = decisions.bar_at(nq, 3)
    version = decisions.model_version(nq)
    [later] = services.recommendations_create_for_prediction(
        prediction_id=decisions.prediction(later_bar, version, p=0.7).pk, now=decisions.close_time(later_bar))
    services.recommendation_reject(recommendation_id=later.pk, user=decisions.user_with("x", "trading.approve_recommendation"))

    html = decision_panel(trader_client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())

    assert re.search(rf'<section id="recommendation"[^>]*\bdata-id="{first.pk}"[^>]*\bdata-state="pending"', html)


def test_without_a_recommendation_the_panel_says_one_will_appear(trader_client, nq):
    es = InstrumentFactory(symbol="ES")
    pending_recommendation(es)

    response = trader_client.get(reverse("dashboard"), {"symbol": "NQ"})

    html = decision_panel(response.content.decode())
    assert re.search(r'<section id="recommendation"[^>]*\bdata-id=""[^>]*\bdata-state="none"', html)
    assert visible(html, "rec-empty") and not visible(html, "rec-body") and not visible(html, "rec-actions")
    assert "No recommendation for NQ 1m yet." in html
    assert initial_payload(response)["recommendation"] is None


def test_account_figures_controls_and_open_positions_are_server_rendered(trader_client, nq):
    from trading import selectors, services
    from trading.models import Position
    from trading.tests.decisions import bar_at, close_time

    recommendation = pending_recommendation(nq)
    services.recommendation_approve(recommendation_id=recommendation.pk, user=recommendation_approver(),
                                    now=close_time(recommendation.bar))
    entry_bar = bar_at(nq, 3, open_="18001.00", high="18006", low="17999", close="18004.50")
    services.bar_settle(bar_id=entry_bar.pk)
    position = Position.objects.get(instrument=nq)
    assert position.quantity == 5

    response = trader_client.get(reverse("dashboard"), {"symbol": "NQ"})

    html = account_panel(response.content.decode())
    summary = selectors.account_summary(account=type(recommendation.account).objects.get(pk=recommendation.account_id))
    assert re.search(rf'<section id="account"[^>]*\bdata-account-id="{recommendation.account.pk}"', html)
    # Entry at 18001.25 (open + 1 tick), marked at 18004.50: 3.25 points x 5 x $20 = 325.00, less $12.50 commission.
    assert summary["unrealized_pnl"] == "325.00" and summary["realized_pnl"] == "-12.50"
    assert text_of(html, "account-equity") == "100,312.50" == f"{float(summary['equity']):,.2f}"
    assert text_of(html, "account-unrealized") == "325.00" and text_of(html, "account-realized") == "-12.50"
    assert re.search(r'id="account-unrealized" class="num up"', html)
    assert re.search(r'id="account-realized" class="num down"', html)
    assert text_of(html, "account-daily") == "312.50"
    assert text_of(html, "account-trades") == "1"
    assert text_of(html, "account-auto-trading") == "Off" and text_of(html, "account-trading-state") == "ACTIVE"
    assert text_of(html, "account-breaker") == "OK" and text_of(html, "account-kill-switch") == "Off"
    assert not visible(html, "account-breaker-reason")
    row = re.search(r'<tr data-symbol="NQ" data-quantity="5">(.*?)</tr>', html, re.S)
    assert row, "the open position is a row of #positions"
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(1), re.S)]
    assert cells == ["NQ", "+5", "18,001.25", "18,004.50", "325.00", "0.00"]
    assert re.search(r'<table id="positions" class="positions" data-count="1">', html)
    assert not visible(html, "positions-empty")

    initial = initial_payload(response)
    assert initial["account"] == summary
    assert initial["positions"] == [selectors.position_payload(position)]


def recommendation_approver():
    from trading.tests.decisions import user_with

    return user_with("approver-2", "trading.approve_recommendation")


def test_flat_positions_are_not_listed_and_a_tripped_breaker_says_why(trader_client, nq):
    from trading.models import Account, Position

    account = Account.objects.get_or_create(name="paper")[0]
    Account.objects.filter(pk=account.pk).update(
        circuit_breaker_tripped_at=datetime(2024, 1, 2, 15, 0, tzinfo=UTC),
        circuit_breaker_reason="daily loss 2100.00 reached the limit 2000.00", trading_state="HALTED")
    Position.objects.create(account=account, instrument=nq, quantity=0, realized_pnl=-2100)

    response = trader_client.get(reverse("dashboard"), {"symbol": "NQ"})

    html = account_panel(response.content.decode())
    assert re.search(r'<section id="account"[^>]*\bdata-breaker="tripped"', html)
    assert text_of(html, "account-breaker") == "Tripped"
    assert visible(html, "account-breaker-reason")
    assert text_of(html, "account-breaker-reason") == "daily loss 2100.00 reached the limit 2000.00"
    assert text_of(html, "account-trading-state") == "HALTED"
    assert "<tr data-symbol=" not in html and visible(html, "positions-empty")
    assert re.search(r'<table id="positions" class="positions" data-count="0">', html)
    assert initial_payload(response)["positions"] == []


def test_a_failed_settlement_is_shown_on_the_account_strip_with_its_reason(trader_client, nq):
    from trading.models import Account

    reason = "bar NQ 1m 2024-01-02 14:33 UTC: RuntimeError: database went away"
    account = Account.objects.get_or_create(name="paper")[0]
    Account.objects.filter(pk=account.pk).update(settlement_fault=reason,
                                                 settlement_fault_at=datetime(2024, 1, 2, 14, 34, tzinfo=UTC))

    response = trader_client.get(reverse("dashboard"), {"symbol": "NQ"})

    html = account_panel(response.content.decode())
    assert re.search(r'<section id="account"[^>]*\bdata-settlement="failed"', html)
    assert text_of(html, "account-settlement") == "Failed"
    assert visible(html, "account-settlement-fault")
    assert reason in text_of(html, "account-settlement-fault")
    assert initial_payload(response)["account"]["settlement_fault"] == reason


def test_a_settled_account_shows_no_settlement_warning(trader_client, nq):
    from trading.models import Account

    Account.objects.get_or_create(name="paper")
    html = account_panel(trader_client.get(reverse("dashboard"), {"symbol": "NQ"}).content.decode())
    assert text_of(html, "account-settlement") == "OK"
    assert not visible(html, "account-settlement-fault")


def test_the_status_strip_names_a_queue_no_worker_serves_and_hides_workers_in_embedded_mode(user_client, nq,
                                                                                            settings):
    from datetime import timedelta

    from django.utils import timezone

    from trading.models import WorkerHeartbeat

    settings.CELERY_TASK_ALWAYS_EAGER = False  # deployment: workers serve the queues
    settings.CELERY_QUEUES_SERVED = ("trading", "inference")
    WorkerHeartbeat.objects.create(queue="trading", hostname="a", seen_at=timezone.now())
    WorkerHeartbeat.objects.create(queue="inference", hostname="b", seen_at=timezone.now() - timedelta(minutes=5))

    page = user_client.get(reverse("dashboard")).content.decode()
    item = re.search(r'<div class="strip-item" id="workers-item"(.*?)</div>', page, re.S).group(1)
    assert "hidden" not in item.split(">")[0]
    assert re.search(r'id="workers-badge" class="badge badge-down">Down: inference<', item)

    settings.CELERY_TASK_ALWAYS_EAGER = True  # embedded: nothing to show
    page = user_client.get(reverse("dashboard")).content.decode()
    assert re.search(r'id="workers-item"\s+hidden', page) or 'id="workers-item" hidden' in page
