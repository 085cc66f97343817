"""Request body parsers of every API view: JSON, form and multipart bodies that answer 400, never 500, and that say
each value once.

- JSON nested deeper than MAX_JSON_DEPTH is refused before it is parsed: Python's decoder recurses per level, and a
  body 1,000 deep raised RecursionError (a 500) on every endpoint, the anonymous token endpoint included.
- A key sent twice (`{"engaged": true, "engaged": false}`, or `engaged=true&engaged=false` in a form) is refused
  naming the key: the last value used to win silently, so a form could release the kill switch it seemed to engage.
  No body of this API takes a list as repeated form fields.
"""
import codecs
import re
from functools import wraps

import numpy as np
from django.http import HttpResponseBadRequest
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

# No body of this API nests more than a few levels (a trading configuration is one object of numbers).
MAX_JSON_DEPTH = 32

# A JSON string, escapes included (the unrolled form: linear, no backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class RepeatedField(ParseError):
    """A body that sends one field several times: a 400 naming each such field."""

    def __init__(self, names: dict[str, int]):
        super().__init__({str(name)[:80]: [f"Sent {count} times; send it once (which one was meant is not guessed)."]
                          for name, count in names.items()})


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings do not count)."""
    brackets = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    steps = np.zeros(len(brackets), dtype=np.int64)
    steps[(brackets == ord("[")) | (brackets == ord("{"))] = 1
    steps[(brackets == ord("]")) | (brackets == ord("}"))] = -1
    return int(np.cumsum(steps).max()) if len(steps) else 0


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        counts: dict[str, int] = {}
        for key, _ in pairs:
            counts[key] = counts.get(key, 0) + 1
        raise RepeatedField({key: count for key, count in counts.items() if count > 1})
    return data


def json_loads_checked(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """JSON text to Python, refusing (ParseError) what the parser refuses: too deep, a key repeated, NaN or
    Infinity, invalid JSON. Also for what is not a request body (a websocket message)."""
    encoded = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw
    depth = json_depth(encoded)
    if depth > max_depth:
        raise ParseError(f"JSON parse error - nested {depth} levels deep; at most {max_depth} are accepted.")
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys)
    except RecursionError:  # a backstop: the depth check comes first
        raise ParseError(f"JSON parse error - nested too deeply; at most {max_depth} levels are accepted.") from None
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.decode(stream.read(), encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding} text ({exc})") from None
        return json_loads_checked(text)


def _refuse_repeated(data) -> None:
    repeated = {key: len(values) for key, values in data.lists() if len(values) > 1}
    if repeated:
        raise RepeatedField(repeated)


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _refuse_repeated(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _refuse_repeated(parsed.data)
        _refuse_repeated(parsed.files)
        return parsed


PARSER_CLASSES = [JSONParser, FormParser, MultiPartParser]


def single_valued_post(view):
    """A page's action (a Django view) whose form sends each field once: a field sent twice is a 400 naming it, as
    the API's parsers answer. Put under login_required, so a stranger is sent to log in first."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method == "POST":
            repeated = {key: len(values) for key, values in request.POST.lists() if len(values) > 1}
            if repeated:
                return HttpResponseBadRequest(
                    "; ".join(f"{str(key)[:80]}: sent {count} times; send it once." for key, count in repeated.items()),
                    content_type="text/plain; charset=utf-8")
        return view(request, *args, **kwargs)

    return wrapped
