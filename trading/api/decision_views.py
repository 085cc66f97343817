"""REST endpoints of decisions and execution: recommendations (approve, reject), accounts and their controls,
trading configuration, the kill switch, the audit trail, orders, fills and positions.

Each write parses its body, calls one service with the user and the client's address, and maps the service's
refusals: a missing permission is 403, a decision that cannot be taken 409 (with the recommendation's state), an
invalid value 400 naming the field. The services check permissions and audit, refusals included; a control's body
refused here (a value missing or unparseable) is recorded through the same audit service before the 400.
"""
from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView

from minhos_site.client_address import client_address
from minhos_site.controls import AuditedControls
from minhos_site.pagination import CheckedCursorPagination
from trading import selectors, services
from trading.models import Account, AuditEvent, TradingConfig

from .decision_serializers import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    AccountFilterSerializer,
    AccountSummaryOutputSerializer,
    AuditEventFilterSerializer,
    AuditEventOutputSerializer,
    AutoTradingInputSerializer,
    EquitySnapshotOutputSerializer,
    FillOutputSerializer,
    KillSwitchInputSerializer,
    KillSwitchOutputSerializer,
    NoValueInputSerializer,
    OrderOutputSerializer,
    PageSizeSerializer,
    PositionFilterSerializer,
    PositionOutputSerializer,
    RecommendationConflictSerializer,
    RecommendationFilterSerializer,
    RecommendationOutputSerializer,
    TradingConfigFilterSerializer,
    TradingConfigOutputSerializer,
    TradingConfigUpdateInputSerializer,
    TradingStateInputSerializer,
)

BAD_QUERY = OpenApiResponse(description='Invalid query; the body names each bad parameter, e.g. {"state": ["..."]}.')
BAD_BODY = OpenApiResponse(description='Invalid body; the body names each bad field, e.g. {"kelly_fraction": ["..."]}.')
FORBIDDEN = OpenApiResponse(description="The user lacks the permission this write needs; the detail names it.")
NO_ACCOUNT = OpenApiResponse(description="No account has that id.")
CONFLICT = OpenApiResponse(
    RecommendationConflictSerializer,
    description="The decision cannot be taken: the recommendation is not pending, is stale (a bar later than its "
                "time to live exists; it is now expired) or the risk manager now blocks it. `state` is its state now.",
)


def _client_address(request) -> str | None:
    return client_address(request)


@contextmanager
def _service_refusals():
    """A missing permission is 403 with the service's message; a Django ValidationError is 400 naming the fields."""
    try:
        yield
    except services.PermissionRefused as exc:
        raise PermissionDenied(str(exc)) from None
    except DjangoValidationError as exc:
        raise ValidationError(as_serializer_error(exc)) from None


def _query(serializer_class, request) -> dict:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


def _control_body(serializer_class, request, *, control: str, account_id: int | None = None) -> dict:
    """A control's body. One that is refused (a value missing or unparseable) is a refused attempt at the control:
    audited as the services audit theirs, then a 400 naming the field."""
    body = serializer_class(data=request.data)
    if body.is_valid():
        return body.validated_data
    errors = {name: [str(message) for message in messages] if isinstance(messages, list) else [str(messages)]
              for name, messages in body.errors.items()}
    services.audit_refusal_record(
        control=control, user=request.user, account_id=account_id, client_address=_client_address(request),
        reason="; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items()),
        details={"errors": errors})
    raise ValidationError(body.errors)


def _account_filter(filters: dict) -> Account | None:
    """The `account` query parameter as an Account; an unknown id is a bad query, not an empty result."""
    account_id = filters.get("account")
    if account_id is None:
        return None
    account = selectors.account_list().filter(pk=account_id).first()
    if account is None:
        raise ValidationError({"account": [f"There is no account #{account_id}."]})
    return account


def _account_or_404(account_id: int) -> Account:
    return get_object_or_404(selectors.account_list(), pk=account_id)


class _Cursor(CheckedCursorPagination):
    """Newest first by default; a cursor stays stable while rows are added and never needs OFFSET."""

    page_size = PAGE_SIZE
    max_page_size = MAX_PAGE_SIZE


class RecommendationCursorPagination(_Cursor):
    ordering = ("-bar_timestamp", "-id")


class OrderCursorPagination(_Cursor):
    ordering = ("-placed_at", "-id")


class FillCursorPagination(_Cursor):
    ordering = ("-timestamp", "-id")


class AuditEventCursorPagination(_Cursor):
    ordering = ("-at", "-id")


class EquityCursorPagination(_Cursor):
    ordering = ("timestamp",)  # one snapshot per account and time: the curve, oldest first


def _paginated(view, queryset, serializer_class):
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


# --- recommendations ----------------------------------------------------------------------------------------------


class RecommendationListApi(APIView):
    pagination_class = RecommendationCursorPagination

    @extend_schema(parameters=[RecommendationFilterSerializer],
                   responses={200: RecommendationOutputSerializer(many=True), 400: BAD_QUERY},
                   summary="Recommendations, newest bar first",
                   description="Filter by symbol, timeframe, state and account; paginated by cursor.")
    def get(self, request):
        filters = _query(RecommendationFilterSerializer, request)
        recommendations = selectors.recommendation_list(
            account=_account_filter(filters), symbol=filters.get("symbol"), timeframe=filters.get("timeframe"),
            state=filters.get("state"))
        return _paginated(self, recommendations, RecommendationOutputSerializer)


class RecommendationDetailApi(APIView):
    @extend_schema(responses={200: RecommendationOutputSerializer,
                              404: OpenApiResponse(description="No recommendation has that id.")},
                   summary="One recommendation with every Kelly factor and risk check")
    def get(self, request, recommendation_id: int):
        recommendation = get_object_or_404(selectors.recommendation_list(), pk=recommendation_id)
        return Response(RecommendationOutputSerializer(recommendation).data)


class _RecommendationDecisionApi(APIView):
    """POST with no body: take the decision through the service, or say why it cannot be taken."""

    decide = None  # the service

    def post(self, request, recommendation_id: int):
        try:
            with _service_refusals():
                recommendation = type(self).decide(recommendation_id=recommendation_id, user=request.user,
                                                   client_address=_client_address(request))
        except (services.RecommendationNotPending, services.RecommendationStale,
                services.RecommendationRefusedByRisk) as exc:
            # The refusal may itself have changed the state (stale -> expired, risk -> blocked): report it as now.
            current = get_object_or_404(selectors.recommendation_list(), pk=recommendation_id)
            return Response({"detail": str(exc), "state": current.state}, status=status.HTTP_409_CONFLICT)
        except services.RecommendationError as exc:
            raise Http404(str(exc)) from None
        return Response(RecommendationOutputSerializer(recommendation).data)


_DECISION_RESPONSES = {200: RecommendationOutputSerializer, 403: FORBIDDEN,
                       404: OpenApiResponse(description="No recommendation has that id."), 409: CONFLICT}


class RecommendationApproveApi(AuditedControls, _RecommendationDecisionApi):
    controls = {"POST": AuditEvent.Action.APPROVE}
    decide = services.recommendation_approve

    @extend_schema(request=None, responses=_DECISION_RESPONSES, summary="Approve a pending recommendation",
                   description="Exactly once: the row is locked and its state checked, the risk manager is asked "
                               "again with today's exposure and data freshness, and one entry order is placed "
                               "(it fills at the next bar's open). Needs trading.approve_recommendation; audited.")
    def post(self, request, recommendation_id: int):
        return super().post(request, recommendation_id)


class RecommendationRejectApi(AuditedControls, _RecommendationDecisionApi):
    controls = {"POST": AuditEvent.Action.REJECT}
    decide = services.recommendation_reject

    @extend_schema(request=None, responses=_DECISION_RESPONSES, summary="Reject a pending recommendation",
                   description="Needs trading.approve_recommendation; audited.")
    def post(self, request, recommendation_id: int):
        return super().post(request, recommendation_id)


# --- orders, fills, positions -------------------------------------------------------------------------------------


class OrderListApi(APIView):
    pagination_class = OrderCursorPagination

    @extend_schema(parameters=[AccountFilterSerializer],
                   responses={200: OrderOutputSerializer(many=True), 400: BAD_QUERY},
                   summary="Paper orders, newest first")
    def get(self, request):
        filters = _query(AccountFilterSerializer, request)
        return _paginated(self, selectors.order_list(account=_account_filter(filters)), OrderOutputSerializer)


class FillListApi(APIView):
    pagination_class = FillCursorPagination

    @extend_schema(parameters=[AccountFilterSerializer],
                   responses={200: FillOutputSerializer(many=True), 400: BAD_QUERY},
                   summary="Fills, newest market time first")
    def get(self, request):
        filters = _query(AccountFilterSerializer, request)
        return _paginated(self, selectors.fill_list(account=_account_filter(filters)), FillOutputSerializer)


class PositionListApi(APIView):
    @extend_schema(parameters=[PositionFilterSerializer],
                   responses={200: PositionOutputSerializer(many=True), 400: BAD_QUERY},
                   summary="Net positions by account and symbol (they change only through fills)")
    def get(self, request):
        filters = _query(PositionFilterSerializer, request)
        positions = selectors.position_list(account=_account_filter(filters), open_only=filters["open_only"])
        return Response(PositionOutputSerializer(positions, many=True).data)


# --- accounts and their controls ----------------------------------------------------------------------------------


class AccountListApi(APIView):
    @extend_schema(responses=AccountSummaryOutputSerializer(many=True), summary="Accounts with equity and controls")
    def get(self, request):
        return Response([selectors.account_summary(account=account) for account in selectors.account_list()])


class AccountDetailApi(APIView):
    @extend_schema(responses={200: AccountSummaryOutputSerializer, 404: NO_ACCOUNT},
                   summary="One account: equity, P&L, drawdown, trading state, circuit breaker, auto-trading")
    def get(self, request, account_id: int):
        return Response(selectors.account_summary(account=_account_or_404(account_id)))


class AccountEquityApi(APIView):
    pagination_class = EquityCursorPagination

    @extend_schema(parameters=[PageSizeSerializer],
                   responses={200: EquitySnapshotOutputSerializer(many=True), 400: BAD_QUERY, 404: NO_ACCOUNT},
                   summary="The account's equity curve, oldest first",
                   description="One snapshot per marking bar (at its close); paginated by cursor.")
    def get(self, request, account_id: int):
        _query(PageSizeSerializer, request)
        curve = selectors.equity_curve(account=_account_or_404(account_id))
        return _paginated(self, curve, EquitySnapshotOutputSerializer)


def _account_write(service, account_id: int, **kwargs) -> Response:
    with _service_refusals():
        try:
            account = service(account_id=account_id, **kwargs)
        except Account.DoesNotExist:
            raise Http404(f"There is no account #{account_id}.") from None
    return Response(selectors.account_summary(account=account))


_ACCOUNT_WRITE_RESPONSES = {200: AccountSummaryOutputSerializer, 400: BAD_BODY, 403: FORBIDDEN, 404: NO_ACCOUNT}


class AccountAutoTradingApi(AuditedControls, APIView):
    controls = {"POST": AuditEvent.Action.AUTO_TRADING}

    @extend_schema(request=AutoTradingInputSerializer, responses=_ACCOUNT_WRITE_RESPONSES,
                   summary="Turn auto-trading on or off",
                   description="Needs trading.toggle_auto_trading; audited.")
    def post(self, request, account_id: int):
        body = _control_body(AutoTradingInputSerializer, request, control=AuditEvent.Action.AUTO_TRADING,
                             account_id=account_id)
        return _account_write(services.auto_trading_set, account_id, enabled=body["enabled"], user=request.user,
                              client_address=_client_address(request))


class AccountCircuitBreakerResetApi(AuditedControls, APIView):
    controls = {"POST": AuditEvent.Action.CIRCUIT_BREAKER_RESET}

    @extend_schema(request=None, responses=_ACCOUNT_WRITE_RESPONSES, summary="Reset a tripped circuit breaker",
                   description="The account becomes ACTIVE again. 400 if the breaker is not tripped, or if the "
                               "body sends any value (it takes none). Needs trading.reset_circuit_breaker; audited.")
    def post(self, request, account_id: int):
        _control_body(NoValueInputSerializer, request, control=AuditEvent.Action.CIRCUIT_BREAKER_RESET,
                      account_id=account_id)
        return _account_write(services.circuit_breaker_reset, account_id, user=request.user,
                              client_address=_client_address(request))


class AccountTradingStateApi(AuditedControls, APIView):
    controls = {"POST": AuditEvent.Action.TRADING_STATE}

    @extend_schema(request=TradingStateInputSerializer, responses=_ACCOUNT_WRITE_RESPONSES,
                   summary="Set the account's trading state",
                   description="While the circuit breaker is tripped only HALTED is accepted. "
                               "Needs trading.set_trading_state; audited.")
    def post(self, request, account_id: int):
        body = _control_body(TradingStateInputSerializer, request, control=AuditEvent.Action.TRADING_STATE,
                             account_id=account_id)
        return _account_write(services.trading_state_set, account_id, state=body["trading_state"],
                              user=request.user, client_address=_client_address(request))


# --- trading configuration ----------------------------------------------------------------------------------------


class TradingConfigListApi(APIView):
    @extend_schema(parameters=[TradingConfigFilterSerializer],
                   responses={200: TradingConfigOutputSerializer(many=True), 400: BAD_QUERY},
                   summary="Sizing and risk settings per account and instrument")
    def get(self, request):
        filters = _query(TradingConfigFilterSerializer, request)
        configs = selectors.trading_config_list(account=_account_filter(filters), symbol=filters.get("symbol"))
        return Response(TradingConfigOutputSerializer(configs, many=True).data)


class TradingConfigDetailApi(AuditedControls, APIView):
    controls = {"PATCH": AuditEvent.Action.CONFIG_CHANGE}

    @extend_schema(responses={200: TradingConfigOutputSerializer,
                              404: OpenApiResponse(description="No configuration has that id.")},
                   summary="One account's settings for one instrument")
    def get(self, request, config_id: int):
        return Response(TradingConfigOutputSerializer(get_object_or_404(selectors.trading_config_list(), pk=config_id)).data)

    @extend_schema(request=TradingConfigUpdateInputSerializer,
                   responses={200: TradingConfigOutputSerializer, 400: BAD_BODY, 403: FORBIDDEN,
                              404: OpenApiResponse(description="No configuration has that id.")},
                   summary="Change settings",
                   description="Validated whole and applied atomically: one bad value (400 naming it) or an unknown "
                               "setting changes nothing. Each setting is a number (or numeric string) in the range "
                               "the schema gives; booleans are not numbers and whole-number settings take no "
                               "fraction. Needs trading.change_tradingconfig; audited with the values before and "
                               "after, and a refused change is audited too.")
    def patch(self, request, config_id: int):
        # The service checks the permission first, then refuses a body that is not an object of settings, unknown
        # settings and values out of their ranges by name: a read-only user gets 403 whatever the body, and every
        # refusal is audited. A form body is one value per setting.
        changes = request.data.dict() if hasattr(request.data, "dict") else request.data
        with _service_refusals():
            try:
                config = services.trading_config_update(config_id=config_id, changes=changes, user=request.user,
                                                        client_address=_client_address(request))
            except TradingConfig.DoesNotExist:
                raise Http404(f"There is no trading configuration #{config_id}.") from None
        return Response(TradingConfigOutputSerializer(config).data)


# --- kill switch and audit ----------------------------------------------------------------------------------------


class KillSwitchApi(AuditedControls, APIView):
    controls = {"POST": AuditEvent.Action.KILL_SWITCH}

    @extend_schema(responses=KillSwitchOutputSerializer, summary="The global kill switch")
    def get(self, request):
        return Response(KillSwitchOutputSerializer(selectors.kill_switch_get()).data)

    @extend_schema(request=KillSwitchInputSerializer,
                   responses={200: KillSwitchOutputSerializer, 400: BAD_BODY, 403: FORBIDDEN},
                   summary="Engage or release the global kill switch",
                   description="Engaged, nothing trades on any account. Needs trading.engage_kill_switch; audited.")
    def post(self, request):
        body = _control_body(KillSwitchInputSerializer, request, control=AuditEvent.Action.KILL_SWITCH)
        with _service_refusals():
            switch = services.kill_switch_set(engaged=body["engaged"], reason=body["reason"], user=request.user,
                                              client_address=_client_address(request))
        return Response(KillSwitchOutputSerializer(switch).data)


class AuditEventListApi(APIView):
    pagination_class = AuditEventCursorPagination

    @extend_schema(parameters=[AuditEventFilterSerializer],
                   responses={200: AuditEventOutputSerializer(many=True), 400: BAD_QUERY},
                   summary="The audit trail, newest first: who decided what, when, from where")
    def get(self, request):
        filters = _query(AuditEventFilterSerializer, request)
        events = selectors.audit_list()
        account = _account_filter(filters)
        if account is not None:
            events = events.filter(account=account)
        if filters.get("recommendation"):
            events = events.filter(recommendation_id=filters["recommendation"])
        if filters.get("action"):
            events = events.filter(action=filters["action"])
        return _paginated(self, events, AuditEventOutputSerializer)
