"""The deployment through an outage of its database (the test database alone refuses connections and its sessions are
ended, for OUTAGE_SECONDS), with real processes: web, a trading and an inference worker, beat and the feed.

During it /healthz says the database is down within seconds; the API (the kill switch included) and the pages answer
503 saying the database cannot be reached, never a 500; every role stays up and logs the outage in a few lines
instead of a traceback per try (the feed exited; beat, the workers and web logged ~20,000 lines in 30 s). Afterwards
the bar the feed held is stored first and every bar is settled and decided once, in bar order; nothing is stuck."""
import json
import re
import time
import urllib.error
import urllib.request

import pytest
from django.test import Client
from django.utils import timezone

from trading import services
from trading.models import BarWorkflow, FeedStatus, KillSwitch
from trading.tests.database_outage import database_outage
from trading.tests.decisions import user_with
from trading.tests.processes import (  # noqa: F401  (fixtures)
    assert_decided_once,
    assert_limits_held,
    assert_settled_and_decided_in_bar_order,
    assert_sized_against_settled_positions,
    assert_stale_recommendations_expired,
    market,
    process_stack,
    wait_until_every_bar_is_done,
)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

FEED_PACE = 0.25
OUTAGE_SECONDS = 30.0
# The most error lines a role may log through the outage (one when it starts, summaries, one per worker process).
ERROR_LINES_MAX = 10
# Django's line for each 503 of a probe (one per request: the probes' callers choose how often).
PROBE_LINE = re.compile(r"Service Unavailable: /(healthz|readyz)$")
# One per attempt at a control that could not be audited (each attempt is worth its line).
AUDIT_LINE = re.compile(r"could not audit a refused attempt at \w+ \(.*\): the database cannot be reached$")


def call(url: str, method: str = "GET", body: dict | None = None, *, token: str | None = None,
         cookie: str | None = None) -> tuple[int, str, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def health(url: str) -> dict:
    status, _, body = call(f"{url}/healthz")
    return {**json.loads(body), "http": status}


def test_a_database_outage_is_reported_at_once_answered_503_and_leaves_nothing_stuck(process_stack, market):
    stack = process_stack
    nq = market.instrument
    operator = user_with("operator", "trading.engage_kill_switch")
    browser = Client()
    browser.force_login(operator)
    session = browser.cookies["sessionid"].value
    beat = stack.beat(wait=False)
    workers = stack.workers(["trading", "monitoring"], ["inference"], concurrency=2)
    beat.wait_ready()
    web = stack.web()
    status, _, body = call(f"{web.url}/api/auth/token/", "POST", {"username": "operator", "password": "pw-operator"})
    assert status == 200, body
    token = json.loads(body)["token"]
    feed = stack.feed("--symbol", "NQ", "--timeframe", "1m", "--source", "synthetic", "--pace", str(FEED_PACE),
                      "--seed", "7")

    def done_count():
        return BarWorkflow.objects.filter(instrument=nq, stage=BarWorkflow.Stage.DONE).count()

    stack.wait_for(lambda: done_count() >= 5, 60, lambda: f"only {done_count()} bars done before the outage")
    assert call(f"{web.url}/api/kill-switch/", token=token)[0] == 200
    logged_before = {p.name: len(p.log_text()) for p in stack.processes}

    with database_outage():
        down_at = time.monotonic()
        stored_before = BarWorkflow.objects.filter(instrument=nq).count()  # the test's own session stays
        report = stack.wait_for(lambda: (lambda h: h["http"] == 503 and h)(health(web.url)), 10,
                                "/healthz did not say the database is down")
        healthz_after = time.monotonic() - down_at
        assert report["components"]["database"]["status"] == "down", report
        # The controls and the pages answer 503 naming the database (JSON under /api/), for as long as it lasts.
        answers = []
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            for answer in (call(f"{web.url}/api/kill-switch/", token=token),
                           call(f"{web.url}/api/kill-switch/", "POST", {"engaged": True, "reason": "db down"},
                                token=token),
                           call(f"{web.url}/", cookie=session),
                           call(f"{web.url}/readyz")):
                answers.append(answer)
            assert all(p.alive() for p in stack.processes), {p.name: p.state() for p in stack.processes}
            stack.wait_for(lambda: time.monotonic() - down_at > len(answers) / 4, 5, "")  # about a round a second
        stored_during = BarWorkflow.objects.filter(instrument=nq).count() - stored_before
        up_at, up_wall = time.monotonic(), timezone.now()

    for status, content_type, body in answers:
        assert status == 503, (status, body[:300])
    api = [json.loads(body) for status, content_type, body in answers[::4] + answers[1::4]]
    assert all(a["code"] == "database_unavailable" and "kill switch" in a["detail"] for a in api), api[:2]
    page = answers[2][2].decode()
    assert "database cannot be reached" in page and "<html" not in page.lower(), page[:300]
    assert not KillSwitch.objects.filter(engaged=True).exists()  # nothing half-written

    # Back: /healthz says so, the feed stores the bar it held, and every bar is settled and decided.
    stack.wait_for(lambda: health(web.url)["components"]["database"]["status"] == "ok", 30, "/healthz never said ok")
    healthz_back_after = time.monotonic() - up_at
    stack.wait_for(lambda: BarWorkflow.objects.filter(instrument=nq).count() > stored_before, 30,
                   "the feed stored no bar after the outage")
    feed_back_after = time.monotonic() - up_at
    stack.wait_for(lambda: BarWorkflow.objects.filter(instrument=nq, decided_at__gt=up_wall).exists(), 60,
                   "no bar was decided after the outage")
    decided_back_after = time.monotonic() - up_at
    stack.wait_for(lambda: BarWorkflow.objects.filter(instrument=nq).count() >= stored_before + 10, 30,
                   "the feed did not go on after the outage")
    feed.stop()
    rows = wait_until_every_bar_is_done(stack, market, expected=BarWorkflow.objects.filter(instrument=nq).count(),
                                        timeout=60)

    assert stored_during == 0  # the feed could not store: it held its bar, and stored it first once back
    assert FeedStatus.objects.get(instrument=nq, timeframe="1m").bars_emitted == len(rows)
    assert " skipped: " not in stack.logs("feed") and "bar(s) skipped" not in stack.logs("feed"), stack.logs("feed")
    assert_settled_and_decided_in_bar_order(rows)
    assert_decided_once(market, rows)
    assert_stale_recommendations_expired(market, rows)
    assert_sized_against_settled_positions(market, rows)
    assert_limits_held(market, rows)
    assert services.account_reconcile().clean

    # The kill switch works again.
    status, _, body = call(f"{web.url}/api/kill-switch/", "POST", {"engaged": True, "reason": "after"}, token=token)
    assert status == 200 and json.loads(body)["engaged"] is True, body
    assert call(f"{web.url}/api/kill-switch/", "POST", {"engaged": False, "reason": "back"}, token=token)[0] == 200

    assert all(worker.alive() for worker in workers) and beat.alive() and web.alive()
    # The heartbeats the workers could not write meanwhile are not read as dead workers once it is back.
    assert "alert opened [critical] workers" not in beat.log_text(), beat.log_text()[-3000:]
    assert stack.exits == []
    figures = {"healthz_down_after_s": round(healthz_after, 1), "healthz_back_after_s": round(healthz_back_after, 1),
               "feed_stored_again_after_s": round(feed_back_after, 1),
               "a_bar_decided_again_after_s": round(decided_back_after, 1), "outage_s": round(up_at - down_at, 1)}
    print("FIGURES", figures)
    for process in stack.processes:
        if process.name.split("#")[0] not in ("web", "beat", "feed", "worker"):
            continue
        lines = process.log_text()[logged_before.get(process.name, 0):].splitlines()
        errors = [line for line in lines if re.search(r"\b(ERROR|CRITICAL)\b", line)
                  and not PROBE_LINE.search(line) and not AUDIT_LINE.search(line)]
        print(process.name, len(lines), "lines since the outage began,", len(errors), "errors:", *errors, sep="\n  ")
        assert not any("Traceback" in line for line in lines), "\n".join(lines[:80])
        assert len(errors) <= ERROR_LINES_MAX, "\n".join(errors[:80])
