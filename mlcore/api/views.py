"""ML endpoints: model versions (list, detail, promote, roll back), predictions, retrainings (list, detail, start,
approve, reject)."""
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from minhos_site.client_address import client_address
from minhos_site.controls import AuditedControls
from trading import selectors as trading_selectors
from trading import services as trading_services

from .. import registry, retraining, selectors
from ..models import ModelVersion, Retraining
from .serializers import (
    ModelVersionFilterSerializer,
    ModelVersionOutputSerializer,
    PredictionFilterSerializer,
    PredictionOutputSerializer,
    RetrainingFilterSerializer,
    RetrainingOutputSerializer,
    RetrainingRejectSerializer,
    RetrainingStartSerializer,
    RollbackInputSerializer,
)

FORBIDDEN = OpenApiResponse(description="The user lacks mlcore.promote_modelversion; the detail names it.")
BAD_QUERY = OpenApiResponse(description="Invalid query (a filter, limit or offset); the body names each bad parameter.")


def _rollback_body_refused(request, errors: dict, *, timeframe: str = "") -> ValidationError:
    """A roll-back refused for its body is a refused attempt too: audited like the registry's refusals, then 400."""
    reason = "; ".join(f"{name}: {' '.join(str(m) for m in messages)}" for name, messages in errors.items())
    trading_services.model_version_audit_record(
        change="rollback", user=request.user, symbol="", timeframe=timeframe, version_before=None,
        version_after=None, via="api", client_address=client_address(request), refused=reason)
    return ValidationError(errors)


class ModelVersionListApi(ListAPIView):
    serializer_class = ModelVersionOutputSerializer

    @extend_schema(parameters=[ModelVersionFilterSerializer], summary="Model versions, newest first",
                   responses={200: ModelVersionOutputSerializer(many=True), 400: BAD_QUERY})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = ModelVersionFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.model_version_list(**query.validated_data)


class ModelVersionDetailApi(APIView):
    @extend_schema(responses={200: ModelVersionOutputSerializer,
                              404: OpenApiResponse(description="No model version has that id.")},
                   summary="One model version with its report")
    def get(self, request, version_id: int):
        try:
            version = ModelVersion.objects.select_related("instrument").get(pk=version_id)
        except ModelVersion.DoesNotExist:
            raise Http404(f"No model version {version_id}.") from None
        return Response(ModelVersionOutputSerializer(version).data)


class ModelVersionPromoteApi(AuditedControls, APIView):
    controls = {"POST": "model_promote"}

    @extend_schema(request=None, responses={200: ModelVersionOutputSerializer, 403: FORBIDDEN,
                                            404: OpenApiResponse(description="No model version has that id."),
                                            409: OpenApiResponse(description="Artifacts missing or corrupted.")},
                   summary="Make this version the active one of its market",
                   description="Needs mlcore.promote_modelversion; audited, and so is a refused attempt.")
    def post(self, request, version_id: int):
        try:
            version = registry.model_version_promote(version_id=version_id, user=request.user,
                                                     client_address=client_address(request), via="api")
        except trading_services.PermissionRefused as exc:
            raise PermissionDenied(str(exc)) from None
        except ModelVersion.DoesNotExist:
            raise Http404(f"No model version {version_id}.") from None
        except registry.RegistryError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(ModelVersionOutputSerializer(version).data)


class ModelVersionRollbackApi(AuditedControls, APIView):
    controls = {"POST": "model_rollback"}

    @extend_schema(request=RollbackInputSerializer,
                   responses={200: ModelVersionOutputSerializer, 400: OpenApiResponse(description="Invalid body."),
                              403: FORBIDDEN, 409: OpenApiResponse(description="Nothing to roll back.")},
                   summary="Re-activate the version that was active before the current one",
                   description="Needs mlcore.promote_modelversion; audited, and so is a refused attempt.")
    def post(self, request):
        data = RollbackInputSerializer(data=request.data)
        if not data.is_valid():
            raise _rollback_body_refused(request, data.errors)
        symbol, timeframe = data.validated_data["symbol"], data.validated_data["timeframe"]
        try:
            instrument = trading_selectors.instrument_get(symbol=symbol)
        except trading_selectors.UnknownInstrument as exc:
            raise _rollback_body_refused(request, {"symbol": [str(exc)]}, timeframe=timeframe) from None
        try:
            version = registry.model_version_rollback(instrument=instrument, timeframe=timeframe, user=request.user,
                                                      client_address=client_address(request), via="api")
        except trading_services.PermissionRefused as exc:
            raise PermissionDenied(str(exc)) from None
        except registry.RegistryError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(ModelVersionOutputSerializer(version).data)


class PredictionListApi(ListAPIView):
    serializer_class = PredictionOutputSerializer

    @extend_schema(parameters=[PredictionFilterSerializer], summary="Predictions, newest bar first",
                   responses={200: PredictionOutputSerializer(many=True), 400: BAD_QUERY})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = PredictionFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.prediction_list(**query.validated_data)


class RetrainingListApi(AuditedControls, ListAPIView):
    controls = {"POST": "retraining_start"}
    serializer_class = RetrainingOutputSerializer

    @extend_schema(parameters=[RetrainingFilterSerializer], summary="Retrainings and their decisions, newest first",
                   responses={200: RetrainingOutputSerializer(many=True), 400: BAD_QUERY})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = RetrainingFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        records = Retraining.objects.select_related("instrument")
        if query.validated_data.get("symbol"):
            records = records.filter(instrument__symbol=query.validated_data["symbol"])
        for field in ("timeframe", "status"):
            if query.validated_data.get(field):
                records = records.filter(**{field: query.validated_data[field]})
        return records

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([retraining.retraining_payload(r) for r in page])

    @extend_schema(request=RetrainingStartSerializer,
                   responses={201: RetrainingOutputSerializer, 400: OpenApiResponse(description="Invalid body."),
                              403: FORBIDDEN},
                   summary="Start a retraining of a market by hand",
                   description="Needs mlcore.promote_modelversion. The answer is the recorded retraining: queued, or "
                               "skipped with the reason (one in flight, too few new bars since the last training).")
    def post(self, request):
        if not request.user.has_perm(registry.PROMOTE_PERMISSION):
            raise PermissionDenied(f"Starting a retraining needs the permission {registry.PROMOTE_PERMISSION}.")
        data = RetrainingStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            record = retraining.retraining_request(
                symbol=data.validated_data["symbol"], timeframe=data.validated_data["timeframe"], trigger="manual",
                requested_by=request.user.get_username(), reason=data.validated_data["reason"] or "started over the API")
        except trading_selectors.UnknownInstrument as exc:
            raise ValidationError({"symbol": [str(exc)]}) from None
        return Response(retraining.retraining_payload(record), status=201)


def _retraining_get(retraining_id: int) -> Retraining:
    try:
        return Retraining.objects.select_related("instrument").get(pk=retraining_id)
    except Retraining.DoesNotExist:
        raise Http404(f"No retraining {retraining_id}.") from None


class RetrainingDetailApi(APIView):
    @extend_schema(responses={200: RetrainingOutputSerializer, 404: OpenApiResponse(description="No such retraining.")},
                   summary="One retraining with both models' figures and the decision")
    def get(self, request, retraining_id: int):
        return Response(retraining.retraining_payload(_retraining_get(retraining_id)))


class RetrainingApproveApi(AuditedControls, APIView):
    controls = {"POST": "retraining_approve"}

    @extend_schema(request=None, responses={200: RetrainingOutputSerializer, 403: FORBIDDEN,
                                            404: OpenApiResponse(description="No such retraining."),
                                            409: OpenApiResponse(description="Not proposed, or stale (the champion "
                                                                             "changed), or the promotion was refused "
                                                                             "(an artifact failed its hash check).")},
                   summary="Approve a proposed promotion",
                   description="Needs mlcore.promote_modelversion; the promotion is audited.")
    def post(self, request, retraining_id: int):
        _retraining_get(retraining_id)
        try:
            record = retraining.retraining_approve(retraining_id=retraining_id, user=request.user, via="api",
                                                   client_address=client_address(request))
        except trading_services.PermissionRefused as exc:
            raise PermissionDenied(str(exc)) from None
        except retraining.RetrainingRefused as exc:
            return Response({"detail": str(exc)}, status=409)
        payload = retraining.retraining_payload(Retraining.objects.select_related("instrument").get(pk=record.pk))
        return Response(payload, status=200 if record.status == Retraining.Status.PROMOTED else 409)


class RetrainingRejectApi(AuditedControls, APIView):
    controls = {"POST": "retraining_reject"}

    @extend_schema(request=RetrainingRejectSerializer,
                   responses={200: RetrainingOutputSerializer, 403: FORBIDDEN,
                              404: OpenApiResponse(description="No such retraining."),
                              409: OpenApiResponse(description="Nothing to reject.")},
                   summary="Reject a proposed promotion (or stop a shadow run)")
    def post(self, request, retraining_id: int):
        _retraining_get(retraining_id)
        data = RetrainingRejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            record = retraining.retraining_reject(retraining_id=retraining_id, user=request.user,
                                                  client_address=client_address(request),
                                                  note=data.validated_data["note"])
        except trading_services.PermissionRefused as exc:
            raise PermissionDenied(str(exc)) from None
        except retraining.RetrainingRefused as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(retraining.retraining_payload(Retraining.objects.select_related("instrument")
                                                      .get(pk=record.pk)))
