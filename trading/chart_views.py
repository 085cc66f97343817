"""JSON for the dashboard chart's live refresh: the overlays of the shown bars (fills, open brackets, equity...)."""
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.views.decorators.http import require_GET

from . import chart, selectors
from .domain.timeframes import TIMEFRAMES
from .views import DASHBOARD_BARS


@require_GET
@login_required
def chart_overlays(request):
    """?symbol=NQ&timeframe=1m&account=<id>: what `chart.chart_overlays` reads for the newest bars the dashboard shows.
    Without `account`, no account overlays; an unknown market or account is a 404."""
    symbol, timeframe = request.GET.get("symbol", ""), request.GET.get("timeframe", "")
    if timeframe not in TIMEFRAMES:
        raise Http404(f"unknown timeframe {timeframe!r}")
    instrument = selectors.instrument_list_active().filter(symbol=symbol).first()
    if instrument is None:
        raise Http404(f"unknown instrument {symbol!r}")
    account = None
    account_id = request.GET.get("account")
    if account_id:
        if not (account_id.isascii() and account_id.isdigit() and len(account_id) <= 18):  # a bigint, not a 500 from the database
            raise Http404("unknown account")
        account = selectors.account_list().filter(pk=int(account_id)).first()
        if account is None:
            raise Http404("unknown account")
    bar_times = chart.chart_bar_times(instrument=instrument, timeframe=timeframe, n=DASHBOARD_BARS)
    return JsonResponse(chart.chart_overlays(instrument=instrument, timeframe=timeframe, account=account,
                                             bar_times=bar_times))
