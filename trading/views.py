"""Server-rendered pages of the trading app: the dashboard."""
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import render

from mlcore import selectors as ml_selectors
from mlcore import services as ml_services

from . import chart, health, readiness, realtime, selectors
from .domain.timeframes import TIMEFRAMES
from .services.accounts import DEFAULT_ACCOUNT

DASHBOARD_BARS = 300
APPROVE_PERMISSION = "trading.approve_recommendation"


@login_required
def dashboard(request):
    instruments = list(selectors.instrument_list_active())
    symbol = request.GET.get("symbol") or (instruments[0].symbol if instruments else None)
    timeframe = request.GET.get("timeframe", "1m")
    if timeframe not in TIMEFRAMES:
        raise Http404(f"unknown timeframe {timeframe!r}")
    instrument = next((i for i in instruments if i.symbol == symbol), None)
    if symbol and instrument is None:
        raise Http404(f"unknown instrument {symbol!r}")
    bars, model, prediction, recommendation = [], None, None, None
    if instrument:
        bars = selectors.bars_last_n(instrument=instrument, timeframe=timeframe, n=DASHBOARD_BARS)
        model = ml_selectors.model_version_active(instrument=instrument, timeframe=timeframe)
        prediction = ml_selectors.prediction_latest(instrument=instrument, timeframe=timeframe)
        # The one waiting for a person first; otherwise the newest, whatever became of it.
        recommendation = (selectors.recommendation_pending_latest(instrument=instrument, timeframe=timeframe)
                          or selectors.recommendation_latest(instrument=instrument, timeframe=timeframe))
    account = _dashboard_account(recommendation) if instrument else None
    context = {
        "instruments": instruments,
        "instrument": instrument,
        "timeframe": timeframe,
        "timeframes": list(TIMEFRAMES),
        "initial": {
            "symbol": symbol,
            "timeframe": timeframe,
            "bars": [realtime.bar_message(bar) for bar in bars],
            "status": selectors.feed_status_payload(symbol=symbol, timeframe=timeframe) if instrument else None,
            "max_bars": DASHBOARD_BARS,
            "model": ml_selectors.model_version_summary(model) if model else None,
            "prediction": ml_services.prediction_payload(prediction) if prediction else None,
            "recommendation": selectors.recommendation_payload(recommendation) if recommendation else None,
            "account": selectors.account_summary(account=account) if account else None,
            "positions": [selectors.position_payload(position)
                          for position in selectors.position_list(account=account, open_only=True)] if account else [],
            "can_decide": request.user.has_perm(APPROVE_PERMISSION),
            # Drawn over the candles: calls, the account's fills and open brackets, its equity curve.
            "chart": chart.chart_overlays(instrument=instrument, timeframe=timeframe, account=account,
                                          bar_times=[bar.timestamp for bar in bars]) if instrument else None,
        },
    }
    return render(request, "trading/dashboard.html", context)


def _dashboard_account(recommendation):
    """The account the page shows: the recommendation's, else the default paper account, else the first one."""
    if recommendation is not None:
        return recommendation.account
    accounts = list(selectors.account_list())
    return next((a for a in accounts if a.name == DEFAULT_ACCOUNT), accounts[0] if accounts else None)


def healthz(request):
    """For process managers, load balancers and the dashboard: 200 when the database, Redis (deployment) and the
    workers' queues are up, else 503; both say each component's state."""
    report = health.health_report()
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)


def readyz(request):
    """For load balancers and deploy scripts: 200 when this deployment can decide bars now (database, Redis when
    configured, an active model for every market with bars, bars fresh while the market is open), else 503; both
    name each check with ok and its reason."""
    report = readiness.readiness_report()
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)
