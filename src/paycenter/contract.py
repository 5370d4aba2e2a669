"""The merchant API's input contract: what ``/openapi.json`` says is what the server takes.

A client that validates its requests against the published document must never meet a 422 the
document did not predict, and a request the document calls invalid must never be taken. So each
rule here exists once, as text both sides read: a regular expression the server matches with
Python's ``re`` and the document publishes as a JSON Schema ``pattern`` (written with explicit
character classes only, which mean the same in Python and in ECMA-262), or a JSON type the
server checks as JSON defines it (``true`` is not an integer, ``"5"`` is not a number).

What only the state of a resource decides (a refund larger than what is left, an amount finer
than that payment's currency) is a 409, not a 422: the document cannot know it, and 409 says
"this request, on this resource, now" rather than "this request is malformed".

``tests/api/test_openapi_fuzz.py`` holds the server to the document with schemathesis's positive and
negative checks; ``tests/api/test_contract.py`` holds each pattern to its parser, property-based.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

# Free text: anything but NUL, which PostgreSQL cannot store (``paycenter.storable``).
TEXT_PATTERN = "^[^\\x00]*$"

# --- RFC 3339 date-times -----------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt](?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<f>[0-9]+))?(?P<z>[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))\Z",
    re.ASCII,
)
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


def parse_datetime(value: Any) -> datetime:
    """An RFC 3339 date-time (JSON Schema's ``date-time``: a zone is required) as an aware UTC
    datetime. Times a Python datetime cannot hold are clamped, not refused, since they are valid
    RFC 3339: a leap second (``23:59:60``) is the end of that minute, and an instant outside years
    1..9999 once in UTC (``0001-01-01T00:00:00+01:00``) is the earliest or latest there is."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string such as 2024-05-01T12:00:00Z")
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError("must be an RFC 3339 date-time with a zone, such as 2024-05-01T12:00:00Z")
    g = match.groupdict()
    offset = timedelta(0)
    if g["sign"]:
        hours, minutes = int(g["oh"]), int(g["om"])
        if hours > 23 or minutes > 59:
            raise ValueError("has a zone offset out of range")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if g["sign"] == "-" else 1)
    second = int(g["s"])
    leap = second == 60
    fraction = int((g["f"] or "0")[:6].ljust(6, "0"))
    try:
        if int(g["y"]) == 0:  # valid RFC 3339, before anything Python can hold
            datetime(4, int(g["mo"]), int(g["d"]), int(g["h"]), int(g["mi"]), 59 if leap else second)
            return _MIN
        local = datetime(
            int(g["y"]),
            int(g["mo"]),
            int(g["d"]),
            int(g["h"]),
            int(g["mi"]),
            59 if leap else second,
            999999 if leap else fraction,
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise ValueError("is not a date and time that exists") from None
    try:
        return local.astimezone(UTC)
    except OverflowError:
        return _MIN if offset > timedelta(0) else _MAX


def _datetime(value: Any) -> datetime:
    return parse_datetime(value)


DateTime = Annotated[datetime, BeforeValidator(_datetime), WithJsonSchema({"type": "string", "format": "date-time"})]

# --- integers as JSON has them ----------------------------------------------------------------


def json_int(value: Any) -> int:
    """JSON Schema's integer: any number with no fraction (60 and 60.0), never a string or a bool.
    Use as ``Annotated[int, Field(ge=..., le=...), BeforeValidator(json_int)]``: bounds before
    the validator, so that they reach the document."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


# --- URLs ---------------------------------------------------------------------------------------

_SCHEME = "[Hh][Tt][Tt][Pp][Ss]?://"
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A host name: ASCII labels (an IDN in its xn-- form), the last starting with a letter, so that
# no name is also an IPv4 address in one of the notations HTTP clients read ("0x7f.1", "2130706433").
HOST_NAME = f"(?:{_LABEL}\\.)*[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
IPV6 = "\\[[0-9A-Fa-f:.]{2,45}\\]"
_PORT = "(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
# Path, query and fragment: anything but ASCII controls and spaces.
_REST = "(?:[/?#][^\\x00-\\x20\\x7f]*)?"


def url_pattern(*, ip_literals: bool) -> str:
    hosts = f"{HOST_NAME}|{IPV4}|{IPV6}" if ip_literals else HOST_NAME
    return f"^{_SCHEME}(?:{hosts}){_PORT}{_REST}$"


_URL_WITH_IPS = re.compile(url_pattern(ip_literals=True))


def check_url(value: str | None, *, field: str, max_length: int) -> str | None:
    """An http(s) URL a merchant gives (return pages, webhooks); ``""`` means none."""
    if value is None or value == "":
        return None
    if len(value) > max_length:
        raise ValueError(f"{field} must be at most {max_length} characters")
    if not _URL_WITH_IPS.fullmatch(value):  # fullmatch: "$" alone would let a final "\n" through
        raise ValueError(
            f"{field} must be an http:// or https:// URL with a host name in ASCII (an IDN in its xn-- form) "
            "or an IP address, an optional port, and no spaces"
        )
    return value


def url_schema(*, max_length: int, ip_literals: bool, description: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "maxLength": max_length, "pattern": url_pattern(ip_literals=ip_literals)},
            {"type": "string", "maxLength": 0},
            {"type": "null"},
        ],
        "description": description,
    }


# --- headers --------------------------------------------------------------------------------

# Visible ASCII with inner spaces: what survives an HTTP header unchanged (edge spaces are not
# part of a header's value, and other bytes are not text every client sends the same way).
IDEMPOTENCY_KEY_PATTERN = "^[\\x21-\\x7e](?:[\\x20-\\x7e]{0,253}[\\x21-\\x7e])?$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
