"""Fields the apps' REST APIs share; their strings refuse control characters (minhos_site/text.py)."""
import re
from datetime import UTC

from django.utils import timezone
from rest_framework import serializers

from minhos_site.text import control_character_problem  # noqa: F401 (the API's edges import it from here too)


class PlainCharField(serializers.CharField):
    """A client's string with no control characters: a symbol, a name, a username. `text=True`: free text, which
    may hold tabs and line breaks (a reason, a note)."""

    def __init__(self, *, text: bool = False, **kwargs):
        self.text = text
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        problem = control_character_problem(value, text=self.text)
        if problem:
            raise serializers.ValidationError(problem)
        return value


# In a query string an unescaped "+" arrives as a space, so "...T14:30:00+00:00" reads "...T14:30:00 00:00".
# A space followed by an offset can only be that, so it is put back rather than refused.
_PLUS_DECODED_AS_SPACE = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d(?::?\d\d)?)$")


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time that must carry its UTC offset; it comes out in UTC."""

    default_error_messages = {
        "naive": "Give a UTC offset or Z (e.g. 2024-01-02T14:30:00Z); times without a zone are not guessed.",
        "invalid": "Use ISO 8601 with a UTC offset or Z, e.g. 2024-01-02T14:30:00Z or 2024-01-02T09:30:00-05:00.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("input_formats", ["iso-8601"])
        kwargs.setdefault("default_timezone", UTC)
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str):
            problem = control_character_problem(value)
            if problem:
                raise serializers.ValidationError(f"{problem} {self.error_messages['invalid']}")
            value = _PLUS_DECODED_AS_SPACE.sub(r"\1+\2", value.strip())
        return super().to_internal_value(value)

    def enforce_timezone(self, value):
        # DRF would attach the default zone to a naive time; a bar range in the wrong zone is silently wrong data.
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)
