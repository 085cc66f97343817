"""The safety controls through a Redis outage, on a real deployment-mode web process: its private redis-server is
killed and every control is driven through the REST API (token, kill switch, auto-trading, trading state, circuit
breaker, approve, reject, trading configuration). Each answers as with Redis up, money moves once, refusals are
still audited, the rate limits still hold (in the process), and the outage is logged once as it starts and once as
it ends."""
import json
import re
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from trading import services
from trading.models import Account, AuditEvent, FeedStatus, Instrument, KillSwitch, Order, Recommendation, TradingState
from trading.tests.decisions import close_time, flat_bars, model_version, prediction, user_with
from trading.tests.factories import InstrumentFactory
from trading.tests.processes import process_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

CONTROLS = ("trading.toggle_auto_trading", "trading.reset_circuit_breaker", "trading.set_trading_state",
            "trading.engage_kill_switch", "trading.change_tradingconfig", "trading.approve_recommendation")
TOKEN_RATE = 4  # per minute and address, for this test's web process
OUTAGE_LINE = "the shared cache (Redis) cannot be reached"
RECOVERY_LINE = "the shared cache (Redis) answers again"


def call(url: str, method: str = "GET", body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Token {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text or b"{}")
        except ValueError:
            return error.code, {"text": text.decode(errors="replace")[:500]}


def pending_recommendation(instrument) -> Recommendation:
    bars = flat_bars(instrument, 3, price="5000" if instrument.symbol == "ES" else "18000")
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], model_version(instrument)).pk, now=close_time(bars[-1]))
    assert recommendation.state == Recommendation.State.PENDING, recommendation.reasons
    return recommendation


def test_every_control_answers_through_the_api_while_redis_is_down(process_stack):
    stack = process_stack
    # The seeded NQ is gone once an earlier transactional test of this worker emptied the database.
    nq = Instrument.objects.filter(symbol="NQ").first() or InstrumentFactory(symbol="NQ")
    es = InstrumentFactory(symbol="ES")
    account = services.account_default_get()
    now = timezone.now()
    for instrument in (nq, es):
        FeedStatus.objects.create(instrument=instrument, timeframe="1m", source="test", running=True,
                                  heartbeat_at=now, last_bar_received_at=now)
    to_approve, to_reject = pending_recommendation(nq), pending_recommendation(es)
    config = services.trading_config_get(account=account, instrument=nq)
    Account.objects.filter(pk=account.pk).update(circuit_breaker_tripped_at=now,
                                                  circuit_breaker_reason="the day's loss reached its limit")
    user_with("operator", *CONTROLS)
    user_with("reader")

    web = stack.web(MINHOS_THROTTLE_TOKEN=f"{TOKEN_RATE}/minute")
    api = f"{web.url}/api"
    assert call(f"{api}/kill-switch/")[0] in (401, 403)  # up, and the shared cache was reached once

    stack.redis.stop()

    status, body = call(f"{api}/auth/token/", "POST", {"username": "operator", "password": "pw-operator"})
    assert status == 200, body
    token = body["token"]
    status, reader_body = call(f"{api}/auth/token/", "POST", {"username": "reader", "password": "pw-reader"})
    assert status == 200, reader_body
    reader = reader_body["token"]

    status, body = call(f"{api}/kill-switch/", token=token)
    assert status == 200 and body["engaged"] is False, body
    status, body = call(f"{api}/kill-switch/", "POST", {"engaged": True, "reason": "redis is down"}, token)
    assert status == 200 and body["engaged"] is True, body
    assert KillSwitch.objects.get().engaged
    # A read-only user's attempt is refused and audited, Redis or not.
    refused_before = AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED).count()
    assert call(f"{api}/kill-switch/", "POST", {"engaged": False}, reader)[0] == 403
    assert KillSwitch.objects.get().engaged
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED).count() == refused_before + 1
    status, body = call(f"{api}/kill-switch/", "POST", {"engaged": False, "reason": "released on purpose"}, token)
    assert status == 200 and body["engaged"] is False, body

    status, body = call(f"{api}/accounts/{account.pk}/auto-trading/", "POST", {"enabled": True}, token)
    assert status == 200 and body["auto_trading"] is True, body
    status, body = call(f"{api}/accounts/{account.pk}/auto-trading/", "POST", {"enabled": False}, token)
    assert status == 200 and body["auto_trading"] is False, body
    status, body = call(f"{api}/accounts/{account.pk}/trading-state/", "POST", {"trading_state": "HALTED"}, token)
    assert status == 200, body
    account.refresh_from_db()
    assert account.trading_state == TradingState.HALTED
    status, body = call(f"{api}/accounts/{account.pk}/circuit-breaker/reset/", "POST", {}, token)
    assert status == 200, body
    assert not Account.objects.get(pk=account.pk).circuit_breaker_tripped
    status, body = call(f"{api}/accounts/{account.pk}/trading-state/", "POST", {"trading_state": "ACTIVE"}, token)
    assert status == 200, body
    status, body = call(f"{api}/trading-configs/{config.pk}/", "PATCH", {"max_contracts": 3}, token)
    assert status == 200 and body["max_contracts"] == 3, body

    status, body = call(f"{api}/recommendations/{to_approve.pk}/approve/", "POST", None, token)
    assert status == 200 and body["state"] == "approved", body
    assert call(f"{api}/recommendations/{to_approve.pk}/approve/", "POST", None, token)[0] == 409  # exactly once
    assert Order.objects.filter(recommendation=to_approve).count() == 1
    status, body = call(f"{api}/recommendations/{to_reject.pk}/reject/", "POST", None, token)
    assert status == 200 and body["state"] == "rejected", body

    # The limits still hold while Redis is down, counted in the web process: two tokens were asked for above.
    answers = [call(f"{api}/auth/token/", "POST", {"username": "operator", "password": "pw-operator"})[0]
               for _ in range(TOKEN_RATE - 1)]
    assert answers == [200] * (TOKEN_RATE - 2) + [429]

    log = web.log_text()
    assert log.count(OUTAGE_LINE) == 1, log
    assert " 500" not in log and "Traceback" not in log, log

    stack.redis.start()
    stack.wait_for(lambda: call(f"{api}/kill-switch/", token=token)[0] == 200 and RECOVERY_LINE in web.log_text(),
                   30, "the web process never said the shared cache answers again")
    log = web.log_text()
    assert log.count(OUTAGE_LINE) == 1 and log.count(RECOVERY_LINE) == 1, log
    counted = int(re.search(r"\((\d+) reads and writes were counted in this process", log).group(1))
    assert counted >= 2 * 14  # each request of the outage read and wrote its count locally
