"""ML endpoints: model versions (list, detail, promote, roll back) and predictions."""
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from trading import selectors as trading_selectors

from .. import registry, selectors
from ..models import ModelVersion
from .serializers import (
    ModelVersionFilterSerializer,
    ModelVersionOutputSerializer,
    PredictionFilterSerializer,
    PredictionOutputSerializer,
    RollbackInputSerializer,
)

PROMOTE_PERMISSION = "mlcore.promote_modelversion"


def _require_promote_permission(request):
    if not request.user.has_perm(PROMOTE_PERMISSION):
        raise PermissionDenied("Promoting or rolling back model versions needs the permission " + PROMOTE_PERMISSION)


class ModelVersionListApi(ListAPIView):
    serializer_class = ModelVersionOutputSerializer

    @extend_schema(parameters=[ModelVersionFilterSerializer], summary="Model versions, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = ModelVersionFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.model_version_list(**query.validated_data)


class ModelVersionDetailApi(APIView):
    @extend_schema(responses=ModelVersionOutputSerializer, summary="One model version with its report")
    def get(self, request, version_id: int):
        try:
            version = ModelVersion.objects.select_related("instrument").get(pk=version_id)
        except ModelVersion.DoesNotExist:
            raise Http404(f"No model version {version_id}.") from None
        return Response(ModelVersionOutputSerializer(version).data)


class ModelVersionPromoteApi(APIView):
    @extend_schema(request=None, responses={200: ModelVersionOutputSerializer,
                                            409: OpenApiResponse(description="Artifacts missing or corrupted.")},
                   summary="Make this version the active one of its market")
    def post(self, request, version_id: int):
        _require_promote_permission(request)
        try:
            version = registry.model_version_promote(version_id=version_id)
        except ModelVersion.DoesNotExist:
            raise Http404(f"No model version {version_id}.") from None
        except registry.RegistryError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(ModelVersionOutputSerializer(version).data)


class ModelVersionRollbackApi(APIView):
    @extend_schema(request=RollbackInputSerializer, responses={200: ModelVersionOutputSerializer,
                                                               409: OpenApiResponse(description="Nothing to roll back.")},
                   summary="Re-activate the version that was active before the current one")
    def post(self, request):
        _require_promote_permission(request)
        data = RollbackInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            instrument = trading_selectors.instrument_get(symbol=data.validated_data["symbol"])
        except trading_selectors.UnknownInstrument as exc:
            raise ValidationError({"symbol": [str(exc)]}) from None
        try:
            version = registry.model_version_rollback(instrument=instrument,
                                                      timeframe=data.validated_data["timeframe"])
        except registry.RegistryError as exc:
            return Response({"detail": str(exc)}, status=409)
        return Response(ModelVersionOutputSerializer(version).data)


class PredictionListApi(ListAPIView):
    serializer_class = PredictionOutputSerializer

    @extend_schema(parameters=[PredictionFilterSerializer], summary="Predictions, newest bar first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = PredictionFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.prediction_list(**query.validated_data)
