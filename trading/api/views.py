"""Read-only REST endpoints for instruments and bars: parse the query, call one selector, serialize the result."""
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from minhos_site.pagination import CheckedCursorPagination
from trading import selectors

from .serializers import (
    BAR_MAX_PAGE_SIZE,
    BAR_PAGE_SIZE,
    BarListInputSerializer,
    BarOutputSerializer,
    InstrumentOutputSerializer,
)

BAD_QUERY = OpenApiResponse(description='Invalid query; the body names each bad parameter, e.g. {"start": ["..."]}.')


class BarCursorPagination(CheckedCursorPagination):
    # A cursor on the timestamp stays stable while new bars arrive and never needs OFFSET on a big table;
    # timestamps are unique per instrument and timeframe, so no page repeats or skips a bar.
    ordering = "timestamp"
    page_size = BAR_PAGE_SIZE
    max_page_size = BAR_MAX_PAGE_SIZE


class InstrumentListApi(APIView):
    @extend_schema(responses=InstrumentOutputSerializer(many=True), summary="All instruments, by symbol")
    def get(self, request):
        instruments = selectors.instrument_list()
        return Response(InstrumentOutputSerializer(instruments, many=True).data)


class InstrumentDetailApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("symbol", str, OpenApiParameter.PATH, description="Instrument symbol, e.g. NQ.")],
        responses={200: InstrumentOutputSerializer, 404: OpenApiResponse(description="No instrument has that symbol.")},
        summary="One instrument by symbol",
    )
    def get(self, request, symbol: str):
        try:
            instrument = selectors.instrument_get(symbol=symbol)
        except selectors.BacktestMarket as exc:
            raise Http404(str(exc)) from None
        except selectors.UnknownInstrument:
            raise Http404(f"Unknown instrument symbol {symbol!r}.") from None
        return Response(InstrumentOutputSerializer(instrument).data)


class BarListApi(APIView):
    pagination_class = BarCursorPagination

    @extend_schema(
        parameters=[BarListInputSerializer],
        responses={200: BarOutputSerializer(many=True), 400: BAD_QUERY},
        summary="Bars of one instrument and timeframe, oldest first",
        description="Bars with start <= timestamp < end, paginated by cursor: follow `next` until it is null.",
    )
    def get(self, request):
        query = BarListInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        try:
            instrument = selectors.instrument_get(symbol=filters["symbol"])
        except selectors.BacktestMarket as exc:
            raise ValidationError({"symbol": [str(exc)]}) from None
        except selectors.UnknownInstrument:
            raise ValidationError({"symbol": [f"Unknown instrument symbol {filters['symbol']!r}."]}) from None
        bars = selectors.bars_in_range(
            instrument=instrument, timeframe=filters["timeframe"], start=filters.get("start"), end=filters.get("end")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(bars, request, view=self)
        return paginator.get_paginated_response(BarOutputSerializer(page, many=True).data)
