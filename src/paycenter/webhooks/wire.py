"""Webhook body bytes exactly as the old PHP system produced them.

Merchants verify ``X-Webhook-Signature`` over the raw body, and some re-encode the parsed JSON with
PHP's ``json_encode(json_decode($raw, true))`` before verifying (issue 13). So the bytes are a
fixed point of that round trip in PHP 8 with its defaults (``serialize_precision = -1``, no
flags): whatever the body holds, PHP decodes and re-encodes it to the very same bytes (and so
with ``json_decode($raw)`` too, which reads objects as objects). Each rule
below was checked against php-cli (``tests/webhooks/test_php_roundtrip.py`` holds the encoder to
it, property-based):

- compact; ``/`` escaped as ``\\/``; non-ASCII as ``\\uXXXX`` in lowercase hex (astral characters
  as a surrogate pair); ``\\b \\f \\n \\r \\t`` short, other controls as ``\\u00XX``; DEL (0x7f) as
  the raw byte (Python's ``json`` escapes it, PHP does not);
- an integer within PHP's 64-bit range as it is; past that range PHP reads it as a float, so it
  is written as that float (``100000000000000000000`` → ``1.0e+20``, the same number). The API
  refuses integers the float would change (``payments.schemas``), so only rows stored before that
  rule can lose digits here, the way PHP itself would lose them;
- a float in PHP's notation: the shortest digits that read back to the same double (what both
  Python's ``repr`` and PHP's ``serialize_precision = -1`` find), with no ``.0`` when it is whole
  (``100.0`` → ``100``: PHP reads that back as the integer 100 and writes ``100``), an exponent
  only past 17 integer digits or before 4 leading zeros, written ``1.0e+20`` and ``1.0e-5``
  (where Python writes ``1e+20`` and ``1e-05``). The number is the same for every JSON reader;
  ``-0.0`` is written ``0`` (PHP writes ``-0`` and reads that back as the integer 0);
- an object whose keys are ``"0", "1", …, "n-1"`` in that order, ``{}`` included, is an array to
  PHP and written as one: ``{}`` → ``[]``, ``{"0":"a","1":"b"}`` → ``["a","b"]`` (at any depth; the
  old system sent them so, since it re-encoded metadata the same way). Nothing is lost: the keys
  are the positions. Any other object keeps its keys in their order.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

# PHP's int (zend_long on 64-bit builds): json_decode reads integers in this range as ints.
PHP_INT_MIN = -(2**63)
PHP_INT_MAX = 2**63 - 1
# php_gcvt with serialize_precision -1 (mode 0, precision 17): fixed notation while the decimal
# point is at most this many digits right of the first digit, and while at most 3 zeros follow it.
_PHP_FIXED_DIGITS = 17
_PHP_FIXED_ZEROS = 3
_DEL = "\x7f"


def php_int_as_float(number: int) -> float | None:
    """What PHP's json_decode reads an integer past its int range as: the nearest double, or None
    when that is infinite (PHP then reads INF, which json_encode refuses)."""
    try:
        return float(number)
    except OverflowError:
        return None


def php_float(number: float) -> str:
    """``json_encode($number)`` of a PHP float, for a finite ``number``."""
    if not math.isfinite(number):
        raise ValueError(f"Out of range float values are not JSON compliant: {number!r}")
    if number == 0:
        return "0"  # -0.0 too: PHP writes "-0", then reads that back as the integer 0
    # float.__repr__, not repr(): a float subclass (money.ExactFloat) keeps its own text elsewhere.
    sign, digit_tuple, exponent = Decimal(float.__repr__(number)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    point = len(digit_tuple) + exponent  # value = 0.<digits> × 10**point
    minus = "-" if sign else ""
    if point > _PHP_FIXED_DIGITS or point < -_PHP_FIXED_ZEROS:
        mantissa = digits[0] + "." + (digits[1:] or "0")
        power = point - 1
        return f"{minus}{mantissa}e{'-' if power < 0 else '+'}{abs(power)}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if len(digits) <= point:
        return minus + digits + "0" * (point - len(digits))
    return f"{minus}{digits[:point]}.{digits[point:]}"


def php_string(text: str) -> str:
    """``json_encode($text)``: Python's ASCII-only JSON string, with ``/`` escaped and DEL raw."""
    if _DEL in text:
        return '"' + _DEL.join(php_string(part)[1:-1] for part in text.split(_DEL)) + '"'
    # "/" can only occur inside the string's text, so escaping every one is exact.
    return json.dumps(text, ensure_ascii=True).replace("/", "\\/")


def _is_php_list(keys: list[str]) -> bool:
    # json_decode($raw, true) turns the key "7" into the integer 7 (only the canonical spelling:
    # not "07", "+7" or "7.0"), and json_encode writes an array whose keys are 0..n-1 in order as
    # a JSON array.
    return all(key == str(position) for position, key in enumerate(keys))


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"keys must be str or int, not {type(key).__name__}")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(php_string(value))
    elif isinstance(value, int):
        if PHP_INT_MIN <= value <= PHP_INT_MAX:
            out.append(str(int(value)))
        else:
            as_float = php_int_as_float(value)
            if as_float is None:
                raise ValueError("Out of range integer values cannot be read by PHP's json_decode")
            out.append(php_float(as_float))
    elif isinstance(value, float):
        out.append(php_float(value))
    elif isinstance(value, Decimal):
        # Webhook amounts: at most 3 decimals and under 16 significant digits, so the float's
        # shortest repr is exactly the decimal's text.
        if not value.is_finite():
            raise ValueError(f"Out of range decimal values are not JSON compliant: {value}")
        _encode(int(value) if value == value.to_integral_value() else float(value), out)
    elif isinstance(value, dict):
        keys = [_key(k) for k in value]
        if _is_php_list(keys):
            _encode(list(value.values()), out)
            return
        out.append("{")
        for i, (key, inner) in enumerate(zip(keys, value.values(), strict=True)):
            if i:
                out.append(",")
            out.append(php_string(key))
            out.append(":")
            _encode(inner, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, inner in enumerate(value):
            if i:
                out.append(",")
            _encode(inner, out)
        out.append("]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def php_json(value: Any) -> str:
    """``value`` as JSON text that PHP 8's ``json_encode(json_decode($text, true))`` leaves as it is.

    Recursion follows the value's nesting, which callers bound (metadata: ``storable.MAX_DEPTH``)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)
