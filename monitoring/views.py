"""The monitoring page (health, metrics, calibration, drift, operations, alerts), its JSON for live refreshes, the
alerts strip's JSON, and the two actions it offers: acknowledge an alert, take a snapshot now."""
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_POST

from minhos_site.api_fields import control_character_problem
from minhos_site.parsers import single_valued_post
from minhos_site.controls import audited_control
from trading.services import control_refused
from trading.domain.timeframes import TIMEFRAMES

from . import page, services

ACKNOWLEDGE_PERMISSION = "monitoring.acknowledge_alert"


def can_take_snapshot(user) -> bool:
    return bool(user.is_authenticated and (user.is_staff or user.has_perm(ACKNOWLEDGE_PERMISSION)))


def _market(request):
    try:
        return page.market_resolve(symbol=request.GET.get("symbol"), timeframe=request.GET.get("timeframe"))
    except LookupError as exc:
        raise Http404(str(exc)) from None


def _range(request) -> str:
    value = request.GET.get("range", page.DEFAULT_RANGE)
    return value if value in page.RANGES else page.DEFAULT_RANGE


def monitoring_url(symbol: str | None = None, timeframe: str | None = None, range_key: str | None = None,
                   anchor: str = "") -> str:
    query = {k: v for k, v in (("symbol", symbol), ("timeframe", timeframe), ("range", range_key)) if v}
    return reverse("monitoring") + (f"?{urlencode(query)}" if query else "") + (f"#{anchor}" if anchor else "")


@require_GET
@login_required
def monitoring_page(request):
    instruments, instrument, timeframe = _market(request)
    range_key = _range(request)
    view = page.market_view(instrument=instrument, timeframe=timeframe, range_key=range_key) if instrument else None
    can_acknowledge = request.user.has_perm(ACKNOWLEDGE_PERMISSION)
    context = {
        "instruments": instruments, "instrument": instrument, "timeframe": timeframe, "timeframes": list(TIMEFRAMES),
        "view": view, "alerts": page.alerts_view(), "can_acknowledge": can_acknowledge,
        "can_snapshot": can_take_snapshot(request.user), "range": range_key,
        "can_promote": request.user.has_perm(PROMOTE_PERMISSION),
        "ranges": list(page.RANGES),
        "here": request.get_full_path(),
    }
    context["initial"] = {
        "symbol": instrument.symbol if instrument else None, "timeframe": timeframe, "range": range_key,
        "view": view, "alerts": context["alerts"], "can_acknowledge": can_acknowledge,
        "can_snapshot": context["can_snapshot"],
    }
    return render(request, "monitoring/page.html", context)


@require_GET
@login_required
def monitoring_data(request):
    """?symbol=&timeframe=&range=: the latest snapshot as the page shows it, the series over the range and the
    alerts. With &after=<ISO time of the page's newest point>, the series holds only the newer points."""
    _, instrument, timeframe = _market(request)
    if instrument is None:
        raise Http404("no active instrument")
    range_key = _range(request)
    view = page.market_view(instrument=instrument, timeframe=timeframe, range_key=range_key)
    after = _parse_time(request.GET.get("after"))
    if after is not None and view["snapshot"] is not None:
        view["series"] = page.series_read(instrument=instrument, timeframe=timeframe,
                                          since=page.range_since(range_key), after=after)
        view["series_appended"] = True
    return JsonResponse({"symbol": instrument.symbol, "timeframe": timeframe, "range": range_key, "view": view,
                         "alerts": page.alerts_view()})


@require_GET
@login_required
def alerts_summary(request):
    """The alerts strip's figures (after a reconnect, the strip reads them again)."""
    return JsonResponse(page.alerts_strip())


def _parse_time(value: str | None) -> datetime | None:
    if not value or control_character_problem(value):  # fromisoformat reads "...T14:30:00\x00Z" as a time
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _back(request, fallback: str) -> HttpResponseRedirect:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                   require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(fallback)


def _refusal(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@audited_control("alert_acknowledge")
@require_POST
@login_required
@single_valued_post
def alert_acknowledge(request, alert_id: int):
    """Acknowledge one alert with an optional note (audited by the service: who, when, note). Without the
    permission the service refuses: 403, nothing changes."""
    try:
        alert = services.alert_acknowledge(alert_id=alert_id, user=request.user, note=request.POST.get("note", ""))
    except ValidationError as exc:
        control_refused(_refusal(exc))
        messages.error(request, f"Alert #{alert_id} was not acknowledged: {_refusal(exc)}")
    else:
        if alert.acknowledged_by_id == request.user.pk and alert.status == alert.Status.ACKNOWLEDGED:
            messages.success(request, f"Alert #{alert.pk} acknowledged.")
        elif alert.status == alert.Status.RESOLVED:
            messages.info(request, f"Alert #{alert.pk} had already resolved.")
        else:
            who = alert.acknowledged_by.get_username() if alert.acknowledged_by_id else "someone"
            messages.info(request, f"Alert #{alert.pk} was already acknowledged by {who}.")
    return _back(request, monitoring_url(anchor="alerts"))


@audited_control("snapshot")
@require_POST
@login_required
@single_valued_post
def snapshot_take(request):
    """Take a snapshot of the posted market now (staff, or users who may acknowledge alerts)."""
    if not can_take_snapshot(request.user):
        raise PermissionDenied(f"Taking a snapshot needs staff status or the {ACKNOWLEDGE_PERMISSION} permission")
    symbol, timeframe = request.POST.get("symbol", ""), request.POST.get("timeframe", "")
    try:
        result = services.snapshot_for_market(symbol=symbol, timeframe=timeframe)
    except ValidationError as exc:
        control_refused(_refusal(exc), symbol=symbol[:40], timeframe=timeframe[:8])
        messages.error(request, f"No snapshot taken: {_refusal(exc)}")
        try:
            _, instrument, _ = page.market_resolve(symbol=symbol, timeframe=timeframe)
        except LookupError:
            return HttpResponseRedirect(monitoring_url())
        return _back(request, monitoring_url(instrument.symbol if instrument else None, timeframe))
    snapshot = result.snapshot
    opened = f", {len(result.opened)} alert(s) opened" if result.opened else ""
    resolved = f", {len(result.resolved)} resolved" if result.resolved else ""
    messages.success(request, f"Snapshot #{snapshot.pk} of {symbol} {timeframe} taken in {snapshot.seconds:.2f} s: "
                              f"health {snapshot.health_score:.1f}/100{opened}{resolved}.")
    return _back(request, monitoring_url(symbol, timeframe))


# ------------------------------------------------------------------------------------------------ retraining

PROMOTE_PERMISSION = "mlcore.promote_modelversion"


def _posted_market(request):
    """(instrument, timeframe) of the posted market, or (None, what is wrong with it)."""
    symbol = request.POST.get("symbol", "")
    try:
        _, instrument, timeframe = page.market_resolve(symbol=symbol, timeframe=request.POST.get("timeframe", ""))
    except LookupError as exc:
        return None, str(exc)
    return (instrument, timeframe) if instrument is not None else (None, f"unknown instrument {symbol!r}")


@audited_control("retraining_start")
@require_POST
@login_required
@single_valued_post
def retrain(request):
    """Start a retraining of the posted market by hand (recorded; skipped with its reason when one is in flight or
    too few bars came in since the last training)."""
    from mlcore import retraining

    if not request.user.has_perm(PROMOTE_PERMISSION):
        raise PermissionDenied(f"Starting a retraining needs the {PROMOTE_PERMISSION} permission")
    instrument, timeframe = _posted_market(request)
    if instrument is None:
        control_refused(timeframe)
        messages.error(request, f"No retraining started: {timeframe}")
        return HttpResponseRedirect(monitoring_url())
    record = retraining.retraining_request(symbol=instrument.symbol, timeframe=timeframe, trigger="manual",
                                           requested_by=request.user.get_username(), reason="started on the page")
    if record.status == record.Status.SKIPPED:
        messages.warning(request, f"Retraining #{record.pk} skipped: {record.note}")
    else:
        messages.success(request, f"Retraining #{record.pk} of {instrument.symbol} {timeframe} started.")
    return _back(request, monitoring_url(instrument.symbol, timeframe, anchor="card-retraining"))


@audited_control("retraining_approve")
@require_POST
@login_required
@single_valued_post
def retraining_approve(request, retraining_id: int):
    """Promote a proposed challenger (the permission and the staleness are checked by the service; audited)."""
    return _retraining_act(request, retraining_id, approve=True)


@audited_control("retraining_reject")
@require_POST
@login_required
@single_valued_post
def retraining_reject(request, retraining_id: int):
    return _retraining_act(request, retraining_id, approve=False)


def _retraining_act(request, retraining_id: int, *, approve: bool):
    from mlcore import retraining
    from mlcore.models import Retraining
    from trading.services import PermissionRefused

    try:
        if approve:
            record = retraining.retraining_approve(retraining_id=retraining_id, user=request.user, via="page",
                                                   client_address=request.META.get("REMOTE_ADDR"))
        else:
            record = retraining.retraining_reject(retraining_id=retraining_id, user=request.user,
                                                  client_address=request.META.get("REMOTE_ADDR"),
                                                  note=request.POST.get("note", ""))
    except PermissionRefused as exc:
        raise PermissionDenied(str(exc)) from exc
    except Retraining.DoesNotExist:
        control_refused(f"There is no retraining #{retraining_id}.")
        messages.error(request, f"There is no retraining #{retraining_id}.")
        return HttpResponseRedirect(monitoring_url())
    except retraining.RetrainingRefused as exc:
        control_refused(str(exc))
        messages.error(request, str(exc))
        return _back(request, monitoring_url(anchor="card-retraining"))
    if record.status == record.Status.PROMOTED:
        messages.success(request, f"v{record.challenger_id} promoted (retraining #{record.pk}).")
    elif record.status == record.Status.REJECTED and record.error:
        messages.error(request, f"Retraining #{record.pk}: {record.error}")
    else:
        messages.info(request, f"Retraining #{record.pk} {record.status}.")
    return _back(request, monitoring_url(record.instrument.symbol, record.timeframe, anchor="card-retraining"))


@audited_control("model_rollback")
@require_POST
@login_required
@single_valued_post
def rollback(request):
    """Roll the posted market back to the version that was active before the current one (audited by the registry;
    the retraining that promoted the current one is marked rolled back)."""
    from mlcore import registry
    from trading.services import PermissionRefused

    instrument, timeframe = _posted_market(request)
    if instrument is None:
        control_refused(timeframe)
        messages.error(request, f"Nothing rolled back: {timeframe}")
        return HttpResponseRedirect(monitoring_url())
    try:
        restored = registry.model_version_rollback(instrument=instrument, timeframe=timeframe, user=request.user,
                                                   client_address=request.META.get("REMOTE_ADDR"), via="page")
    except PermissionRefused as exc:
        raise PermissionDenied(str(exc)) from exc
    except registry.RegistryError as exc:
        control_refused(str(exc))  # (the registry records its own refusals: this one is not written twice)
        messages.error(request, f"Nothing rolled back: {exc}")
    else:
        messages.success(request, f"v{restored.pk} is active again for {instrument.symbol} {timeframe}.")
    return _back(request, monitoring_url(instrument.symbol, timeframe, anchor="card-retraining"))
