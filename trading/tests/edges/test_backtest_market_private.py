"""A backtest's private market (its Instrument, Account, TradingConfig, recommendations and predictions) is invisible
to every live endpoint and refused by every write, by name: the API (every operation of the schema that takes a
symbol or an id), the pages, the websocket, the admin's forms and the commands that take a symbol.

The run is a real one (trading.backtest over stored NQ bars); its market is then marked active, as an admin could
have done, so that only the backtest flag keeps it out of the live lists.
"""
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from mlcore.models import Prediction
from trading import selectors
from trading.models import Account, AuditEvent, BacktestRun, Instrument, Recommendation, TradingConfig
from trading.tests.decisions import SERIES_ORIGIN, model_version
from trading.tests.services.test_backtest import path, run_backtest

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

WRITES = ("post", "put", "patch", "delete")
# Bodies that would be accepted for a live market (so a refusal is the private market's, not the body's).
BODIES = {
    "/api/retrainings/": {"timeframe": "1m"},
    "/api/model-versions/rollback/": {"timeframe": "1m"},
    "/api/backtests/": {"timeframe": "1m", "from": "2024-05-07T13:30:00Z", "to": "2024-05-07T14:30:00Z"},
    "/api/accounts/{account_id}/auto-trading/": {"enabled": True},
    "/api/accounts/{account_id}/trading-state/": {"trading_state": "HALTED"},
    "/api/trading-configs/{config_id}/": {"kelly_fraction": 0.5},
}
# The backtest's own endpoints reach its records by its run: they are its report, not a live view.
OWN = {"/api/backtests/{run_id}/"}


def _operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for route, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield route, method, operation


OPERATIONS = list(_operations())


@pytest.fixture
def private():
    """A finished backtest of NQ: its market (made active), account, configuration and a recommendation left
    pending (as a "record" run's last one can be)."""
    nq = Instrument.objects.get(symbol="NQ")
    version = model_version(nq)
    version.data_end = SERIES_ORIGIN - timedelta(days=1)
    version.save(update_fields=["data_end"])
    run = run_backtest(nq, version, path(nq, [None] * 8), {0: "long", 4: "short"}, approval="record")
    market = Instrument.objects.get(pk=run.market_id)
    Instrument.objects.filter(pk=market.pk).update(active=True)
    recommendation = Recommendation.objects.filter(account_id=run.account_id).latest("pk")
    Recommendation.objects.filter(pk=recommendation.pk).update(state=Recommendation.State.PENDING)
    assert Prediction.objects.filter(instrument=market, backtest=True).exists()
    return {"run": run, "symbol": market.symbol, "market": market, "account": Account.objects.get(pk=run.account_id),
            "config": TradingConfig.objects.get(account_id=run.account_id), "recommendation": recommendation}


@pytest.fixture
def admin_client():
    user = get_user_model().objects.create_superuser("root", password="pw-root")
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    client.force_login(user)
    return client


def _ids(private) -> dict:
    return {"account_id": private["account"].pk, "config_id": private["config"].pk,
            "recommendation_id": private["recommendation"].pk, "symbol": private["symbol"]}


def _text(response) -> str:
    return response.content.decode(errors="replace")


def test_the_schema_operations_that_take_a_symbol_or_an_id_never_show_or_change_a_backtests_market(private,
                                                                                                  admin_client):
    """Every operation of the schema, as a superuser: one that names the private market or one of its rows by path
    is a 404, by a symbol filter lists nothing, by a symbol in the body is a 400 naming it; no list shows its rows."""
    ids, symbol = _ids(private), private["symbol"]
    private_ids = {private["account"].pk, private["config"].pk, private["recommendation"].pk}
    reached = []
    for route, method, operation in OPERATIONS:
        if route in OWN:
            continue
        names = re.findall(r"{(\w+)}", route)
        if any(name not in ids for name in names):
            continue  # ids the private market has none of (model versions, retrainings, runs)
        url = route.format(**ids)
        params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        body_props = (operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                      .get("schema", {}))
        takes_symbol_in_body = "symbol" in str(body_props) or route in ("/api/retrainings/",
                                                                        "/api/model-versions/rollback/",
                                                                        "/api/backtests/")
        if names:
            reached.append((route, method))
            if method in WRITES:
                response = getattr(admin_client, method)(url, BODIES.get(route, {}), format="json")
            else:
                response = admin_client.get(url)
            assert response.status_code == 404, (route, method, response.status_code, _text(response))
        elif method == "get":
            query = {"symbol": symbol} if "symbol" in params else {}
            if "account" in params:
                query["account"] = private["account"].pk
            response = admin_client.get(url, query)
            if query:
                reached.append((route, method))
                assert response.status_code in (200, 400, 404), (route, response.status_code)
                if response.status_code == 400:
                    assert "account" in _text(response) or "backtest" in _text(response), (route, _text(response))
            assert response.status_code in (200, 400, 404), (route, response.status_code, _text(response))
            if response.status_code == 200 and route not in ("/api/backtests/",):
                for item in _items(response.json()):
                    assert item.get("symbol") != symbol, (route, item)
                    assert item.get("account") not in (private["account"].pk, private["account"].name), (route, item)
                    assert not (route == "/api/accounts/" and item["id"] in private_ids), (route, item)
        elif method in WRITES and takes_symbol_in_body:
            reached.append((route, method))
            response = admin_client.post(url, {"symbol": symbol, **BODIES.get(route, {})}, format="json")
            assert response.status_code == 400, (route, response.status_code, _text(response))
            assert "backtest" in _text(response), (route, _text(response))
    # The operations the issue found, among the ones checked.
    for found in [("/api/instruments/{symbol}/", "get"), ("/api/bars/", "get"), ("/api/trading-configs/", "get"),
                  ("/api/trading-configs/{config_id}/", "patch"), ("/api/retrainings/", "post"),
                  ("/api/accounts/{account_id}/auto-trading/", "post"),
                  ("/api/recommendations/{recommendation_id}/approve/", "post")]:
        assert found in reached, found
    # Nothing changed: the backtest's account and settings are as the run left them.
    account = Account.objects.get(pk=private["account"].pk)
    assert account.auto_trading is False and account.trading_state == "ACTIVE"
    assert TradingConfig.objects.get(pk=private["config"].pk).kelly_fraction == private["config"].kelly_fraction
    assert Recommendation.objects.get(pk=private["recommendation"].pk).state == Recommendation.State.PENDING


def _items(body):
    if isinstance(body, dict):
        return body.get("results", [body]) if "results" in body else [body]
    return body


def test_the_bars_and_instrument_endpoints_name_the_private_market(private, admin_client):
    symbol = private["symbol"]
    response = admin_client.get(f"/api/instruments/{symbol}/")
    assert response.status_code == 404
    response = admin_client.get("/api/bars/", {"symbol": symbol, "timeframe": "1m"})
    assert response.status_code == 400 and "backtest's private market" in response.json()["symbol"][0]
    assert symbol not in {i["symbol"] for i in admin_client.get("/api/instruments/").json()}
    assert not [c for c in admin_client.get("/api/trading-configs/").json() if c["symbol"] == symbol]


def test_a_refused_write_on_a_backtests_account_is_audited_without_linking_it(private, admin_client):
    """The refusal is a refused attempt (audited), recorded without the backtest's account: its records go with
    its run, and a live audit list never shows them."""
    account_id = private["account"].pk
    response = admin_client.post(f"/api/accounts/{account_id}/auto-trading/", {"enabled": True}, format="json")
    assert response.status_code == 404
    event = AuditEvent.objects.get(action=AuditEvent.Action.REFUSED)
    assert event.account_id is None and event.details["account"] == account_id
    assert "backtest's own account" in event.details["reason"]


@pytest.mark.parametrize("page", ["/", "/chart/overlays/?timeframe=1m&symbol={symbol}", "/monitoring/",
                                  "/monitoring/data/"])
def test_no_page_shows_the_private_market(private, admin_client, page):
    url = page.format(symbol=private["symbol"])
    response = admin_client.get(url, {"symbol": private["symbol"], "timeframe": "1m"} if "?" not in url else {})
    assert response.status_code == 404, (url, response.status_code)


def test_the_market_pickers_and_the_websocket_do_not_offer_the_private_market(private, admin_client):
    symbol = private["symbol"]
    assert symbol not in _text(admin_client.get("/"))
    assert symbol not in {i.symbol for i in selectors.instrument_list_active()}
    # What the market websocket asks before it joins a market's group.
    assert not selectors.market_exists(symbol=symbol, timeframe="1m")


def test_a_snapshot_of_the_private_market_is_refused_by_name(private, admin_client):
    response = admin_client.post("/monitoring/snapshot/", {"symbol": private["symbol"], "timeframe": "1m"},
                                 follow=True)
    assert "private market" in _text(response)  # (the page escapes the apostrophe)


def test_the_admin_shows_the_private_rows_but_edits_none(private, admin_client):
    market, account, config = private["market"], private["account"], private["config"]
    for url in (f"/admin/trading/instrument/{market.pk}/change/", f"/admin/trading/account/{account.pk}/change/",
                f"/admin/trading/tradingconfig/{config.pk}/change/"):
        assert admin_client.get(url).status_code == 200  # shown, read-only
        assert admin_client.post(url, {"name": "changed"}).status_code == 403, url
    assert Instrument.objects.get(pk=market.pk).name == market.name
    form = _text(admin_client.get("/admin/trading/tradingconfig/add/"))
    assert f'value="{account.pk}"' not in form.split('name="account"')[1].split("</select>")[0]
    policy_form = _text(admin_client.get("/admin/mlcore/retrainingpolicy/add/"))
    assert f'value="{market.pk}"' not in policy_form.split('name="instrument"')[1].split("</select>")[0]
    # The instrument picker (autocomplete) offers live markets only.
    found = admin_client.get("/admin/autocomplete/", {"app_label": "trading", "model_name": "tradingconfig",
                                                      "field_name": "instrument", "term": "BT"}).json()
    assert not [r for r in found["results"] if r["text"] == market.symbol]


def test_the_admin_account_actions_refuse_a_backtests_account(private, admin_client):
    account = private["account"]
    response = admin_client.post("/admin/trading/account/", {"action": "auto_trading_on",
                                                             "_selected_action": [account.pk]}, follow=True)
    assert response.status_code == 200 and "s own account" in _text(response)
    assert Account.objects.get(pk=account.pk).auto_trading is False


@pytest.mark.parametrize("command, args", [
    ("generate_bars", ["--timeframe", "1m", "--days", "1", "--seed", "1"]),
    ("import_bars", ["--timeframe", "1m", "--create", "{file}"]),
    ("train", ["--timeframe", "1m", "--fast"]),
    ("retrain", ["--timeframe", "1m"]),
    ("run_feed", ["--timeframe", "1m", "--source", "synthetic", "--pace", "0", "--max-bars", "1"]),
])
def test_the_commands_that_take_a_symbol_refuse_the_private_market_by_name(private, command, args, tmp_path):
    csv = tmp_path / "bars.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n2024-05-07T13:30:00Z,1,2,1,2,1\n")
    args = [a.format(file=csv) for a in args]
    with pytest.raises(CommandError, match="backtest's private market"):
        call_command(command, "--symbol", private["symbol"], *args, stdout=StringIO(), stderr=StringIO())
    assert BacktestRun.objects.count() == 1
