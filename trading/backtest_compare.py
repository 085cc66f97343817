"""Live against backtest: an account's live trades beside a backtest of the same bars, trade by trade.

Trades are matched by the bar whose prediction they came from (its time) and their side. Every difference is
listed: a trade the backtest made and the account did not (missing), one the account made and the backtest did not
(extra), or a matched pair whose size, entry fill price, exit reason, exit price or exit time differ, each with
the reason where the records tell it: a recommendation that expired unapproved, was rejected or was blocked by risk
live; an approval after a later bar had arrived (the entry then fills at a later bar's open); a bar the live
workflow never decided (a gap); another model version live; a size made with another model health (live read the
version's score of the moment, the backtest holds its score from the run's creation).
"""
from __future__ import annotations

from collections.abc import Callable

from .backtest import _json_ready, trades_of
from .models import Account, BacktestRun, Order, Recommendation

COMPARED = ("contracts", "entry_price", "exit_reason", "exit_price", "exit_at")


def live_version(*, account_name: str, symbol: str, timeframe: str, start, end) -> int | None:
    """The model version the account's live recommendations in the window used most (the one to replay)."""
    from django.db.models import Count

    row = (Recommendation.objects.filter(account__name=account_name, account__backtest=False,
                                         instrument__symbol=symbol, timeframe=timeframe, bar_timestamp__gte=start,
                                         bar_timestamp__lte=end)
           .values("model_version_id").annotate(n=Count("id")).order_by("-n").first())
    return row["model_version_id"] if row else None


def _key(trade: dict) -> tuple:
    return (trade["signal_at"], trade["side"])


def _with_signal(trades: list[dict]) -> list[dict]:
    signals = dict(Recommendation.objects.filter(pk__in=[t["recommendation"] for t in trades if t["recommendation"]])
                   .values_list("pk", "bar_timestamp"))
    return [{**t, "signal_at": signals.get(t["recommendation"])} for t in trades]


def compare(*, run: BacktestRun, account_name: str) -> dict:
    """The differences between `account_name`'s trades on the run's market and window and the run's trades."""
    account = Account.objects.get(name=account_name, backtest=False)
    live_recs = {r.bar_timestamp: r for r in Recommendation.objects.filter(
        account=account, instrument=run.instrument, timeframe=run.timeframe, bar_timestamp__gte=run.start,
        bar_timestamp__lte=run.end)}
    in_window = {r.pk for r in live_recs.values()}  # the run's market, timeframe and window, read once
    live = {_key(t): t for t in _with_signal(trades_of(account=account)) if t["recommendation"] in in_window}
    test = {_key(t): t for t in _with_signal(trades_of(account=run.account))}
    test_recs = {r.bar_timestamp: r for r in Recommendation.objects.filter(account=run.account)}
    differences = []
    for key in sorted(set(live) | set(test), key=lambda k: (k[0], k[1])):
        signal_at, side = key
        ours, theirs = test.get(key), live.get(key)
        if theirs is None:
            differences.append(_row("missing", signal_at, side, ours, None,
                                    _why_missing(live_recs.get(signal_at), run)))
        elif ours is None:
            differences.append(_row("extra", signal_at, side, None, theirs,
                                    _why_extra(test_recs.get(signal_at), theirs, run)))
        else:
            for field in COMPARED:
                if ours[field] != theirs[field]:
                    differences.append({**_row("different", signal_at, side, ours, theirs,
                                               _why_different(field, theirs, live_recs.get(signal_at), run,
                                                              test_recs.get(signal_at))),
                                        "field": field, "backtest": ours[field], "live": theirs[field]})
    matched = len(set(live) & set(test))
    return _json_ready({"run": run.pk, "account": account.name, "symbol": run.instrument.symbol,
                   "timeframe": run.timeframe, "from": run.start, "to": run.end, "model_version": run.model_version_id,
                   "live_trades": len(live), "backtest_trades": len(test), "matched": matched,
                   "identical": matched - len({(d["signal_at"], d["side"]) for d in differences
                                               if d["kind"] == "different"}),
                   "differences": differences,
                   "unexplained": sum(1 for d in differences if not d["reason"])})


def _row(kind: str, signal_at, side: str, ours: dict | None, theirs: dict | None, reason: str) -> dict:
    return {"kind": kind, "signal_at": signal_at, "side": side, "reason": reason,
            "backtest_recommendation": ours["recommendation"] if ours else None,
            "live_recommendation": theirs["recommendation"] if theirs else None}


def _why_missing(live: Recommendation | None, run: BacktestRun) -> str:
    if live is None:
        return ("no live recommendation for this bar: the live workflow never decided it (a gap in the feed, or no "
                "model was active then)")
    if live.model_version_id != run.model_version_id:
        return f"live predicted with model v{live.model_version_id}, the backtest with v{run.model_version_id}"
    state = Recommendation.State
    if live.state == state.EXPIRED:
        if live.reasons and str(live.reasons[0]).startswith("expired before it was offered"):
            return "live sized it after a later bar had closed (a backlog): expired before it was offered"
        return "the live recommendation expired unapproved"
    if live.state == state.REJECTED:
        return f"rejected live by {live.decided_by or 'a person'}"
    if live.state == state.BLOCKED:
        return "blocked by risk live: " + "; ".join(live.reasons or [])
    if live.state == state.PENDING:
        return "still pending approval live"
    return ""


def _why_extra(test: Recommendation | None, live_trade: dict, run: BacktestRun) -> str:
    if test is None:
        return "the backtest has no recommendation for this bar"
    if test.state == Recommendation.State.BLOCKED:
        return "blocked by risk in the backtest: " + "; ".join(test.reasons or [])
    return ""


def _why_different(field: str, live_trade: dict, live: Recommendation | None, run: BacktestRun,
                   test: Recommendation | None = None) -> str:
    if live is None:
        return ""
    entry = Order.objects.filter(recommendation=live, kind=Order.Kind.ENTRY).first()
    if entry is not None and entry.after_bar_timestamp > live.bar_timestamp:
        return (f"approved live after the bar of {entry.after_bar_timestamp:%Y-%m-%d %H:%M} UTC had closed: the entry "
                "filled at a later bar's open")
    if live.model_version_id != run.model_version_id:
        return f"live predicted with model v{live.model_version_id}, the backtest with v{run.model_version_id}"
    if field == "contracts" and live.contracts != live.kelly_contracts:
        return "resized live when approved (risk at approval time)"
    if field == "contracts" and test is not None:
        live_health, test_health = (live.kelly or {}).get("health_factor"), (test.kelly or {}).get("health_factor")
        if live_health != test_health:
            # The backtest holds the version's score from its creation; live sized with the score of that moment.
            return (f"model health sized it differently: health factor {_factor(live_health)} live (the version's "
                    f"score then), {_factor(test_health)} in the backtest (its score when the run was created)")
    if field in ("exit_reason", "exit_price", "exit_at") and live_trade["exit_at"] is None:
        return "still open live"
    return ""


def _factor(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_comparison(comparison: dict, write: Callable[[str], None]) -> None:
    c = comparison
    write(f"{c['account']} against backtest #{c['run']} ({c['symbol']} {c['timeframe']} {c['from']} .. {c['to']}, "
          f"model v{c['model_version']}): live {c['live_trades']} trades, backtest {c['backtest_trades']}, "
          f"{c['matched']} matched ({c['identical']} identical), {len(c['differences'])} difference(s), "
          f"{c['unexplained']} unexplained")
    for d in c["differences"]:
        what = d["kind"] if d["kind"] != "different" else f"different {d['field']}: backtest {d['backtest']} live {d['live']}"
        write(f"  {d['signal_at']} {d['side']:<5} {what}  -- {d['reason'] or 'unexplained'}")
