"""Server-rendered backtest pages: the runs and a form to start one, a run's report (or its progress), one trade."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models.fields.json import KT
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from minhos_site.controls import audited_control
from minhos_site.parsers import single_valued_post
from mlcore import selectors as ml_selectors

from . import backtest, report_text as text, selectors
from .domain.timeframes import TIMEFRAMES, timeframe_delta
from .models import BacktestRun, Order, Recommendation

RUN_PERMISSION = "trading.run_backtest"
LIST_LIMIT = 100  # newest runs on the page; the API pages through all of them
IN_FLIGHT = (BacktestRun.Status.QUEUED, BacktestRun.Status.RUNNING)


# --- shared shapes ---------------------------------------------------------------------------------------------

def backtest_runs():
    """Runs, newest first, with the two report figures a list shows read in SQL (the report itself not loaded)."""
    return (BacktestRun.objects.select_related("instrument", "requested_by").defer("report")
            .annotate(net_pnl=KT("report__net_pnl"), trade_count=KT("report__trades")))


def progress_percent(run: BacktestRun) -> float:
    if run.status == BacktestRun.Status.DONE:
        return 100.0
    return round(100 * run.bars_done / run.bars_total, 1) if run.bars_total else 0.0


def progress_payload(run: BacktestRun) -> dict:
    """What the report page polls while a run is queued or running."""
    return {"id": run.pk, "status": run.status, "status_label": run.get_status_display(), "bars_done": run.bars_done,
            "bars_total": run.bars_total, "percent": progress_percent(run), "error": run.error}


# --- report rows ------------------------------------------------------------------------------------------------

def _trade_figures(figures: dict) -> list[tuple[str, str]]:
    """One side's (or the whole run's) trade figures as rows."""
    return [
        ("Trades", str(figures.get("trades", 0))),
        ("Wins / losses", f"{figures.get('wins', 0)} / {figures.get('losses', 0)}"),
        ("Hit rate", text.percent(figures.get("hit_rate"))),
        ("Profit factor", text.number(figures.get("profit_factor"))),
        ("Expectancy", text.money(figures.get("expectancy"))),
        ("Net P&L", text.money(figures.get("net_pnl"))),
        ("Gross P&L", text.money(figures.get("gross_pnl"))),
        ("Commissions", text.money(figures.get("commissions"))),
        ("Slippage", text.money(figures.get("slippage"))),
    ]


def report_view(run: BacktestRun) -> dict:
    """The report as the page shows it: tables of formatted figures and the charts' series."""
    r = run.report
    down = r.get("max_drawdown") or {}
    money = [("Starting equity", text.money(r.get("starting_equity"))),
             ("Ending equity", text.money(r.get("ending_equity"))),
             ("Net P&L", text.money(r.get("net_pnl"))), ("Gross P&L", text.money(r.get("gross_pnl"))),
             ("Commissions", text.money(r.get("commissions"))), ("Slippage", text.money(r.get("slippage"))),
             ("Buy and hold (1 contract)", text.money((r.get("buy_hold") or {}).get("net_pnl")))]
    estimated = [(label, *text.ratio_parts(r, name)) for label, name in (
        ("Sharpe", "sharpe"), ("Sortino", "sortino"), ("Annualised return", "annualised_return"),
        ("Calmar", "calmar"))]
    ratios = [("Max drawdown", f"{text.percent(down.get('fraction'), 2)} ({text.money(down.get('money'))})"),
              ("Longest drawdown", text.duration(down.get("longest_seconds"))
               + ("" if down.get("recovered", True) else " (not recovered)")),
              ("Hit rate", text.percent(r.get("hit_rate"))), ("Profit factor", text.number(r.get("profit_factor"))),
              ("Expectancy", text.money(r.get("expectancy"))), ("Exposure", text.percent(r.get("exposure"))),
              ("Trades per day", text.number(r.get("trades_per_day"))),
              ("Trades", f"{r.get('trades', 0)} closed, {r.get('open_trades', 0)} open at the end"),
              ("Wins / losses", f"{r.get('wins', 0)} / {r.get('losses', 0)}")]
    # (label, text, reason): a reason only where the window cannot estimate the ratio ("n/a")
    ratios = [*estimated, *((label, value, "") for label, value in ratios)]
    sides = [{"side": side, "rows": _trade_figures(figures)} for side, figures in (r.get("per_side") or {}).items()]
    calibration = [{**row, "predicted_text": text.percent(row.get("predicted")),
                    "realised_text": text.percent(row.get("realised")),
                    "kelly_text": text.number(row.get("kelly_fraction"), 4)} for row in r.get("calibration") or []]
    trades = []
    for t in r.get("trade_list") or []:
        gross = t.get("gross_pnl")
        net = (Decimal(gross) - Decimal(t["commission"]) - Decimal(t["slippage"])) if gross is not None else None
        trades.append({**t, "net_text": text.money(net), "gross_text": text.money(gross),
                       "costs_text": text.money(Decimal(t["commission"]) + Decimal(t["slippage"])),
                       "net_sign": "" if net is None else ("up" if net > 0 else "down" if net < 0 else ""),
                       "probability_text": text.percent(t.get("probability")),
                       "kelly_text": text.number(t.get("kelly_fraction"), 4)})
    equity = r.get("equity") or {}
    charts = {
        "equity": {"t": equity.get("t", []), "equity": equity.get("equity", []),
                   "drawdown": equity.get("drawdown", []), "buy_hold": equity.get("buy_hold", [])},
        "calibration": r.get("calibration") or [],
        "sizes": r.get("sizes") or {},
    }
    return {"money": money, "ratios": ratios, "sides": sides, "calibration": calibration, "trades": trades,
            "charts": charts, "risk_blocks": r.get("risk_blocks") or {},
            "recommendations": r.get("recommendations") or {}, "window": r.get("window") or {},
            "sizes": sorted(((int(k), v) for k, v in (r.get("sizes") or {}).items())),
            "config": r.get("config") or run.config}


# --- the form ---------------------------------------------------------------------------------------------------

BREAKER_CHOICES = [(backtest.BREAKER_HOLD, "Hold a tripped breaker to the end (as live)"),
                   (backtest.BREAKER_DAILY, "Reset a tripped breaker at the next trading day")]


class BacktestStartForm(forms.Form):
    """Parses the page's form; the rules (known market, window, version, look-ahead) are backtest_create's."""

    symbol = forms.CharField(max_length=20)
    timeframe = forms.ChoiceField(choices=[(tf, tf) for tf in TIMEFRAMES], initial="1m")
    version = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                 help_text="Model version id; empty: the market's active version.")
    approval = forms.ChoiceField(choices=BacktestRun.Approval.choices, initial=BacktestRun.Approval.APPROVE)
    allow_lookahead = forms.BooleanField(required=False)
    breaker = forms.ChoiceField(choices=BREAKER_CHOICES, initial=backtest.BREAKER_HOLD, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # "from" and "to" as the API and the command name them (Python keywords, so not class attributes).
        self.fields["from"] = forms.CharField(max_length=40, help_text="UTC; a date alone is its midnight.")
        self.fields["to"] = forms.CharField(max_length=40, help_text="UTC, inclusive; a date alone is the whole day.")

    def clean(self):
        data = super().clean()
        for name in ("from", "to"):
            if name in data:
                try:
                    data[name] = backtest.window_moment(data[name], end_of_day=name == "to")
                except ValueError as exc:
                    self.add_error(name, f"'{name}' is {exc}")
        return data


# --- the stored range the form offers ---------------------------------------------------------------------------

# The default window ends at the last stored bar. Every bar is replayed through the model and the decision path, so
# intraday bars get a week (about 5 trading days: 6,900 one-minute bars, enough trades to read) and daily bars a year
# (252 bars, enough for the annual figures, which need a quarter).
DEFAULT_SPAN_INTRADAY = timedelta(days=7)
DEFAULT_SPAN_DAILY = timedelta(days=365)
INPUT_MINUTE = "%Y-%m-%dT%H:%M"  # a datetime-local input's value (UTC here, as the form reads it)


def bar_range_payload(stored: selectors.BarRange) -> dict:
    """The range as the form shows it and limits its inputs to, with a default window; the page renders the first
    market's and its script asks the endpoint for the others."""
    base = {"symbol": stored.symbol, "timeframe": stored.timeframe, "count": stored.count}
    if not stored.count:
        return {**base, "first": None, "last": None, "default_from": None, "default_to": None,
                "text": f"No stored {stored.timeframe} bar of {stored.symbol}: there is nothing to replay."}
    span = DEFAULT_SPAN_DAILY if timeframe_delta(stored.timeframe) >= timedelta(days=1) else DEFAULT_SPAN_INTRADAY
    start = max(stored.first, stored.last - span)
    return {**base, "first": stored.first.strftime(INPUT_MINUTE), "last": stored.last.strftime(INPUT_MINUTE),
            "default_from": start.strftime(INPUT_MINUTE), "default_to": stored.last.strftime(INPUT_MINUTE),
            "text": f"Stored {stored.symbol} {stored.timeframe} bars: {stored.first:%Y-%m-%d %H:%M} → "
                    f"{stored.last:%Y-%m-%d %H:%M} UTC, {stored.count:,} bar{'' if stored.count == 1 else 's'}."}


@require_GET
@login_required
def backtest_bar_range(request):
    """?symbol=NQ&timeframe=1m: the stored range of a live market, for the start form (JSON)."""
    symbol, timeframe = request.GET.get("symbol", ""), request.GET.get("timeframe", "")
    if not symbol or not timeframe:
        return JsonResponse({"error": "give both 'symbol' and 'timeframe'"}, status=400)
    stored = selectors.bar_range(symbol=symbol, timeframe=timeframe)
    if stored is None:
        return JsonResponse({"error": f"no live market {symbol!r} with a {timeframe!r} timeframe "
                                      f"(timeframes: {', '.join(TIMEFRAMES)})"}, status=404)
    return JsonResponse(bar_range_payload(stored))


# --- pages ------------------------------------------------------------------------------------------------------

@audited_control("backtest_start")
@require_http_methods(["GET", "POST"])
@login_required
@single_valued_post
def backtest_list(request):
    """The runs, newest first; POST (with trading.run_backtest) checks and starts one, then shows its page."""
    can_run = request.user.has_perm(RUN_PERMISSION)
    instruments = list(selectors.instrument_list_active())
    form, status = BacktestStartForm(initial={"timeframe": "1m", "approval": BacktestRun.Approval.APPROVE,
                                              "symbol": instruments[0].symbol if instruments else ""}), 200
    if request.method == "POST":
        if not can_run:
            raise PermissionDenied(f"Starting a backtest needs the {RUN_PERMISSION} permission")
        form = BacktestStartForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                run = backtest.backtest_create(
                    symbol=data["symbol"], timeframe=data["timeframe"], start=data["from"], end=data["to"],
                    version_id=data["version"], approval=data["approval"], allow_lookahead=data["allow_lookahead"],
                    breaker=data["breaker"] or backtest.BREAKER_HOLD, requested_by=request.user, via="page")
            except backtest.BacktestRefused as exc:
                form.add_error(None, str(exc))
            else:
                backtest.backtest_request(run=run)
                return redirect("backtest", run_id=run.pk)
        status = 400
    runs = [{"run": run, "percent": progress_percent(run), "net_pnl": text.money(run.net_pnl),
             "net_sign": _sign(run.net_pnl)} for run in backtest_runs()[:LIST_LIMIT]]
    # The range of the market the form shows chosen (the posted one after a refusal); only those who may start a run
    # see the form.
    stored = selectors.bar_range(symbol=str(form["symbol"].value() or ""),
                                 timeframe=str(form["timeframe"].value() or "")) if can_run else None
    context = {"runs": runs, "form": form, "can_run": can_run,
               "bar_range": bar_range_payload(stored) if stored else None,
               "instruments": instruments, "timeframes": list(TIMEFRAMES),
               "approvals": BacktestRun.Approval.choices, "breakers": BREAKER_CHOICES,
               "run_permission": RUN_PERMISSION}
    return render(request, "trading/backtests.html", context, status=status)


def _sign(value) -> str:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, TypeError):
        return ""
    return "up" if number > 0 else "down" if number < 0 else ""


def _run_or_404(run_id: int) -> BacktestRun:
    return get_object_or_404(BacktestRun.objects.select_related("instrument", "requested_by"), pk=run_id)


def held_health_text(config: dict) -> str:
    """The version's health score the run held (recorded when it was created), as sizing read it."""
    if "model_health_reason" not in config:
        # Runs made before the score was held recorded it too, but sized with the live score at each bar.
        return "the live score at each bar (a run made before backtests held it)"
    score = config["model_health"]
    if score is None:
        held = "not scored: " + ("full size (validated edge)" if config.get("model_has_edge") else "no size (no edge)")
    else:
        held = f"{score:.0f}/100" + (f" ({config['model_health_reason']})" if config["model_health_reason"] else "")
    return f"{held}, its score when the run was created"


@require_GET
@login_required
def backtest_detail(request, run_id: int):
    """A run's report; while it is queued or running, its progress (polled), and a failed run's error."""
    run = _run_or_404(run_id)
    done = run.status == BacktestRun.Status.DONE and bool(run.report)
    view = report_view(run) if done else None
    context = {"run": run, "report": run.report if done else None, "view": view,
               "model_health": held_health_text(run.config),
               "progress": progress_payload(run), "in_flight": run.status in IN_FLIGHT,
               "charts": view["charts"] if view else None}
    return render(request, "trading/backtest.html", context)


@require_GET
@login_required
def backtest_progress(request, run_id: int):
    return JsonResponse(progress_payload(_run_or_404(run_id)))


@require_GET
@login_required
def backtest_trade(request, run_id: int, recommendation_id: int):
    """One recommendation of the run: every Kelly factor and risk check, the reasons, the prediction, the fills.
    Only the run's own account's recommendations are reachable here."""
    run = _run_or_404(run_id)
    if run.account_id is None:
        raise Http404(f"Backtest #{run.pk} has no account yet.")
    recommendation = get_object_or_404(Recommendation.objects.select_related("account", "instrument"),
                                       pk=recommendation_id, account_id=run.account_id)
    prediction = ml_selectors.prediction_facts(prediction_id=recommendation.prediction_id)
    orders = (Order.objects.filter(account_id=run.account_id, recommendation=recommendation)
              .select_related("fill").order_by("id"))
    entries = [o for o in orders if o.kind == Order.Kind.ENTRY]
    exits = list(Order.objects.filter(parent__in=entries).select_related("fill").order_by("id")) if entries else []
    trade = next((t for t in (run.report or {}).get("trade_list", []) if t.get("recommendation") == recommendation.pk),
                 None)
    context = {
        "run": run, "r": selectors.recommendation_payload(recommendation), "prediction": prediction,
        "orders": [_order_row(order) for order in [*entries, *exits]],
        "trade": trade, "report": run.report or {},
        "net_text": text.money(Decimal(trade["gross_pnl"]) - Decimal(trade["commission"]) - Decimal(trade["slippage"]))
        if trade and trade.get("gross_pnl") is not None else "—",
        "instrument": None,  # the navigation's dashboard link stays plain (this market is a backtest's own)
    }
    return render(request, "trading/backtest_trade.html", context)


def _order_row(order: Order) -> dict:
    fill = getattr(order, "fill", None)
    return {"id": order.pk, "kind": order.get_kind_display(), "side": order.side, "quantity": order.quantity,
            "status": order.get_status_display(), "take_profit": order.take_profit, "stop_loss": order.stop_loss,
            "price": fill.price if fill else None, "at": fill.timestamp if fill else None,
            "commission": text.money(fill.commission) if fill else "—"}

