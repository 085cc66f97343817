"""The API's paginators: bounded pages, and a bad page parameter or cursor is a 400 naming it, never a default or a 500.

DRF's own paginators replace a garbage `limit`, `offset` or `page_size` with the default, clamp nothing unless told,
and pass a forged cursor's position straight to the database; the limit then reached SQL unbounded (a `limit` of
2^63 is a 500 on PostgreSQL and SQLite alike) and a position that is not a timestamp raised in the ORM.
"""
from datetime import UTC, datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination, serializers
from rest_framework.exceptions import NotFound, ValidationError

MAX_LIMIT = 1000
# A row count no table here comes near; an offset past the end is an empty page, so the bound only keeps the
# parameter an ordinary integer for every database and client.
MAX_OFFSET = 2**31 - 1


def _query_int(request, name: str, *, default: int | None, min_value: int, max_value: int) -> int | None:
    """The query parameter `name` as an integer in [min_value, max_value]; absent gives `default`, anything else
    (empty, not an integer, out of range) is a 400 naming the parameter."""
    if name not in request.query_params:
        return default
    field = serializers.IntegerField(min_value=min_value, max_value=max_value)
    try:
        return field.run_validation(request.query_params[name])
    except serializers.ValidationError as exc:
        raise ValidationError({name: exc.detail}) from None


def _integer_parameter(name: str, description: str, *, default: int | None, min_value: int, max_value: int) -> dict:
    schema = {"type": "integer", "minimum": min_value, "maximum": max_value}
    if default is not None:
        schema["default"] = default
    return {"name": name, "required": False, "in": "query", "description": description, "schema": schema}


class BoundedLimitOffsetPagination(pagination.LimitOffsetPagination):
    """`limit` from 1 to MAX_LIMIT (default REST_FRAMEWORK's PAGE_SIZE) and `offset` from 0 to MAX_OFFSET; outside
    that, 400."""

    max_limit = MAX_LIMIT
    max_offset = MAX_OFFSET

    def get_limit(self, request):
        return _query_int(request, self.limit_query_param, default=self.default_limit, min_value=1,
                          max_value=self.max_limit)

    def get_offset(self, request):
        return _query_int(request, self.offset_query_param, default=0, min_value=0, max_value=self.max_offset)

    def get_schema_operation_parameters(self, view):
        return [
            _integer_parameter(self.limit_query_param, f"Rows per page, default {self.default_limit}, at most "
                               f"{self.max_limit}; any other value is refused (400).", default=self.default_limit,
                               min_value=1, max_value=self.max_limit),
            _integer_parameter(self.offset_query_param, "Rows to skip, from 0; past the last row the page is empty.",
                               default=0, min_value=0, max_value=self.max_offset),
        ]


class CheckedCursorPagination(pagination.CursorPagination):
    """Cursor pagination that refuses a cursor it did not make, and a bad `page_size`, with a 400.

    Subclasses set `ordering` (the first field must be the position, a timestamp here), `page_size` and
    `max_page_size`; `page_size` is then read from the query, 1 to `max_page_size`.
    """

    page_size_query_param = "page_size"
    invalid_cursor = "Invalid cursor; use the next/previous links as given."

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model  # decode_cursor checks the position against the ordering field's type
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request):
        return _query_int(request, self.page_size_query_param, default=self.page_size, min_value=1,
                          max_value=self.max_page_size)

    def get_schema_operation_parameters(self, view):
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query", "schema": {"type": "string"},
             "description": "The `next` or `previous` link's cursor, as given; any other value is refused (400)."},
            _integer_parameter(self.page_size_query_param, f"Rows per page, default {self.page_size}, at most "
                               f"{self.max_page_size}; any other value is refused (400).", default=self.page_size,
                               min_value=1, max_value=self.max_page_size),
        ]

    def decode_cursor(self, request):
        # DRF answers a mangled cursor with 404, which reads as "no such resource"; it is a bad query parameter.
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise self._invalid_cursor() from None
        if cursor is not None and cursor.position is not None and not self._valid_position(cursor.position):
            raise self._invalid_cursor()
        return cursor

    def _valid_position(self, position: str) -> bool:
        # A cursor is only base64 of "p=<position>": a forged one reaches the filter unless checked here.
        field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        try:
            value = field.to_python(position)
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    return False  # the cursors made here always carry the offset
                value.astimezone(UTC)  # a year-1 time with a positive offset has no UTC value
        except (DjangoValidationError, ValueError, OverflowError, TypeError):
            return False
        return value is not None

    def _invalid_cursor(self) -> ValidationError:
        return ValidationError({self.cursor_query_param: [self.invalid_cursor]})
