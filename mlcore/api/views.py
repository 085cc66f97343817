"""ML endpoints: model versions (list, detail, promote, roll back) and predictions."""
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from minhos_site.client_address import client_address
from trading import selectors as trading_selectors
from trading import services as trading_services

from .. import registry, selectors
from ..models import ModelVersion
from .serializers import (
    ModelVersionFilterSerializer,
    ModelVersionOutputSerializer,
    PredictionFilterSerializer,
    PredictionOutputSerializer,
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


class ModelVersionPromoteApi(APIView):
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


class ModelVersionRollbackApi(APIView):
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
