"""Backtest endpoints: the runs (list, newest first), start one, one run with its progress and report."""
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from minhos_site.controls import AuditedControls
from trading import backtest
from trading.models import BacktestRun

from .backtest_serializers import BacktestRunDetailOutputSerializer, BacktestRunOutputSerializer, BacktestStartSerializer

RUN_PERMISSION = "trading.run_backtest"
BAD_QUERY = OpenApiResponse(description="Invalid limit or offset; the body names each bad parameter.")
FORBIDDEN = OpenApiResponse(description=f"The user lacks {RUN_PERMISSION}; the detail names it.")
REFUSED = OpenApiResponse(description='Invalid body (the body names each bad field), or a backtest that cannot run '
                                      'as asked: {"detail": "..."} says what is wrong (unknown market, no bars in the '
                                      'window, "to" before "from", unknown version or one of another market, '
                                      'look-ahead not allowed).')


class BacktestListApi(AuditedControls, ListAPIView):
    controls = {"POST": "backtest_start"}
    serializer_class = BacktestRunOutputSerializer

    @extend_schema(summary="Backtests, newest first (without their reports)",
                   responses={200: BacktestRunOutputSerializer(many=True), 400: BAD_QUERY})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return BacktestRun.objects.select_related("instrument", "requested_by").defer("report", "config")

    @extend_schema(request=BacktestStartSerializer,
                   responses={201: BacktestRunDetailOutputSerializer, 400: REFUSED, 403: FORBIDDEN},
                   summary="Start a backtest",
                   description=f"Needs {RUN_PERMISSION}. The run is recorded as queued and started in the background "
                               "(a task on the training queue; a thread in embedded mode); follow it with GET "
                               "/api/backtests/{id}/.")
    def post(self, request):
        if not request.user.has_perm(RUN_PERMISSION):
            raise PermissionDenied(f"Starting a backtest needs the permission {RUN_PERMISSION}.")
        body = BacktestStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            run = backtest.backtest_create(
                symbol=data["symbol"], timeframe=data["timeframe"], start=data["from"], end=data["to"],
                version_id=data["version"], approval=data["approval"], allow_lookahead=data["allow_lookahead"],
                breaker=data["breaker"], engine=data["engine"], requested_by=request.user, via="api")
        except backtest.BacktestRefused as exc:
            return Response({"detail": str(exc)}, status=400)
        backtest.backtest_request(run=run)
        return Response(BacktestRunDetailOutputSerializer(run).data, status=201)


class BacktestDetailApi(APIView):
    @extend_schema(responses={200: BacktestRunDetailOutputSerializer,
                              404: OpenApiResponse(description="No backtest has that id.")},
                   summary="One backtest: status, progress and the full report")
    def get(self, request, run_id: int):
        try:
            run = BacktestRun.objects.select_related("instrument", "requested_by").get(pk=run_id)
        except BacktestRun.DoesNotExist:
            raise Http404(f"No backtest {run_id}.") from None
        return Response(BacktestRunDetailOutputSerializer(run).data)
