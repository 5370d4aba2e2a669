"""Money at the edges: major-unit decimals in, integer minor units inside, decimal strings out.

Every way in (the API, the payment page, the admin's forms and filters) parses amounts here and
nowhere else. The text is checked against a strict grammar before ``Decimal`` sees it, because
``Decimal`` alone takes far more than money: ``"1_000"``, digits of any script (``"٥٠٠"``,
``"５００"``), ``"NaN"``, and exponents that its default context then rounds to zero
(``"1e-1000000000"``) or overflows on (``"1e999999"``). Arithmetic runs in an explicit context
that traps every rounding, so a value the checks let through can never be silently changed.

Floats never hold money here. A JSON number keeps the text the merchant sent (``ExactFloat``,
see ``paycenter.deps.ExactJsonRoute``); a plain float, from code that parsed JSON itself, is
read through its shortest ``repr``.
"""

from __future__ import annotations

import re
from decimal import (
    Clamped,
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Subnormal,
    Underflow,
    localcontext,
)
from functools import lru_cache
from math import isfinite
from typing import Any

from iso4217 import Currency

# Whatever the configured maximum, an amount must fit a signed 64-bit column with room to sum.
ABSOLUTE_MAX_MINOR = 2**62

# An amount's text: ASCII digits only, an optional sign, at most one decimal point, an optional
# exponent; no spaces, underscores or other scripts' digits inside. The JSON number grammar,
# a little wider as the old PHP system was ("+5", "05", ".5", "5.").
AMOUNT_PATTERN = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"  # for OpenAPI
AMOUNT_MAX_LENGTH = 40
_AMOUNT = re.compile(r"[+-]?(?P<whole>[0-9]*)(?:\.(?P<fraction>[0-9]*))?(?:[eE](?P<exp>[+-]?[0-9]+))?\Z", re.ASCII)
_EDGE_SPACE = " \t\r\n"
# Beyond these magnitudes no currency's amount can be valid: refused before any arithmetic, so a
# huge exponent never reaches an operation that would overflow or round it to zero.
_MAX_ADJUSTED = 30
_MIN_ADJUSTED = -30

# Room for every amount the checks above let through (at most 40 digits, magnitudes within
# 10**±30, scaled by at most 10**4) with no rounding: should one ever round, overflow or
# underflow all the same, the trap raises instead of changing the amount.
MONEY_CONTEXT = Context(
    prec=60,
    Emax=99,
    Emin=-99,
    traps=[InvalidOperation, DivisionByZero, Overflow, Underflow, Subnormal, Inexact, Rounded, Clamped],
)


class MoneyError(ValueError):
    """An amount or currency the API cannot accept; the message is shown to the merchant."""


class ExactFloat(float):
    """A JSON number as a float (what the rest of the JSON parser's consumers expect) that still
    knows the text it was parsed from, so an amount is read exactly as the merchant wrote it:
    ``500.000000000000000001`` is refused, not rounded by the float to 500."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> ExactFloat:
        number = super().__new__(cls, text)
        number.text = text
        return number


@lru_cache(maxsize=512)
def exponent(currency: str) -> int:
    """Minor-unit digits of an ISO 4217 currency (KZT 2, JPY 0, KWD 3)."""
    try:
        cur = Currency(currency)
    except ValueError:
        raise MoneyError(f"Unknown currency {currency!r}: use an ISO 4217 code such as KZT") from None
    if cur.exponent is None:  # funds, metals and test codes (XAU, XTS) have no minor unit
        raise MoneyError(f"Currency {currency!r} cannot be used for payments")
    return int(cur.exponent)


def normalize_currency(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MoneyError("currency must be a three-letter ISO 4217 code such as KZT")
    code = value.strip().upper()
    exponent(code)
    return code


def _text_of(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise MoneyError("amount must be a number")
    if isinstance(value, ExactFloat):
        return value.text
    if isinstance(value, float):
        if not isfinite(value):
            raise MoneyError("amount must be a finite number")
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 128:  # str() of a huge int is slow, and it is no amount anyway
            raise MoneyError("amount is too large")
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError("amount must be a finite number")
        return str(value)
    if isinstance(value, str):
        return value.strip(_EDGE_SPACE)
    raise MoneyError("amount must be a number")


def to_decimal(value: Any) -> Decimal:
    """A JSON number or numeric string as an exact Decimal; anything else is a MoneyError.

    Only sign, magnitude and grammar are checked here; ``to_minor`` applies the currency."""
    text = _text_of(value)
    if len(text) > AMOUNT_MAX_LENGTH:
        raise MoneyError(f"amount must be a number of at most {AMOUNT_MAX_LENGTH} characters")
    match = _AMOUNT.match(text)
    if match is None or not (match.group("whole") or match.group("fraction")):  # "٥٠٠", "1_000", "."
        if text.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
            raise MoneyError("amount must be a finite number")
        raise MoneyError("amount must be a number such as 500 or 500.50 (ASCII digits, a dot for decimals)")
    whole, fraction = match.group("whole"), match.group("fraction") or ""
    significant = (whole + fraction).lstrip("0")
    if not significant:
        return Decimal(0)  # "0e999999999" is zero, not an exponent for a later operation to trip on
    # The power of ten of the first significant digit, from the text: Decimal() itself raises
    # InvalidOperation on exponents past about 10**18, and its operations round or overflow.
    shift = int(match.group("exp") or 0)
    if whole.lstrip("0"):
        magnitude = shift + len(whole.lstrip("0")) - 1
    else:
        magnitude = shift - (len(fraction) - len(fraction.lstrip("0"))) - 1
    if magnitude > _MAX_ADJUSTED:
        raise MoneyError("amount is too large")
    if magnitude < _MIN_ADJUSTED:
        raise MoneyError("amount is too small: it has more decimal places than any currency")
    return Decimal(text)  # exact: the constructor never rounds, whatever the context


def to_minor(value: Any, currency: str, *, max_major: Decimal | None = None) -> int:
    """Parse a positive major-unit amount into minor units of ``currency``."""
    dec = to_decimal(value)
    exp = exponent(currency)
    if dec <= 0:
        raise MoneyError("amount must be greater than zero")
    if max_major is not None and dec > max_major:
        raise MoneyError(f"amount must not exceed {format_major(max_major, exp)} {currency}")
    try:
        with localcontext(MONEY_CONTEXT):
            scaled = dec.scaleb(exp)
            if scaled != scaled.to_integral_value():
                raise MoneyError(
                    f"amount has more decimal places than {currency} allows ({exp})"
                    if exp
                    else f"amount must be a whole number for {currency}"
                )
    except DecimalException:  # a trap fired: the value is outside what the checks expect
        raise MoneyError("amount is out of range") from None
    if scaled > ABSOLUTE_MAX_MINOR:
        raise MoneyError("amount is too large")
    return int(scaled)


def typed(text: str | None) -> Decimal | None:
    """An amount as a person types it into a form ("1 000,50"): spaces that group digits go, a
    decimal comma becomes a dot, then the same grammar as the API. Blank is None."""
    if text is None:
        return None
    cleaned = text.strip()
    for space in (" ", "\u00a0", "\u202f", "\u2009"):  # the pages group digits with these
        cleaned = cleaned.replace(space, "")
    if not cleaned:
        return None
    return to_decimal(cleaned.replace(",", "."))


def format_major(value: Decimal, exp: int) -> str:
    return f"{value:.{exp}f}"


def shown_exponent(currency: str) -> int:
    """The exponent to show a stored amount with. A row that names a currency no code knows (a
    hand edit, a bad import) is shown with ISO 4217's common two digits rather than breaking a
    read or a page for everyone; webhook bodies (``to_major_number``) stay strict, so its events
    are set aside by their loop instead of telling a merchant a guessed amount."""
    try:
        return exponent(currency)
    except MoneyError:
        return 2


def to_major_str(minor: int, currency: str) -> str:
    """Minor units as the decimal string the API returns: 50000 KZT -> "500.00"."""
    exp = shown_exponent(currency)
    return format_major(Decimal(minor).scaleb(-exp), exp)


def to_major_number(minor: int, currency: str) -> int | Decimal:
    """Minor units as a JSON number for webhook bodies: integral values without a fraction."""
    value = Decimal(minor).scaleb(-exponent(currency))
    if value == value.to_integral_value():
        return int(value)
    return value.normalize()


# --- the API's amounts, as the OpenAPI document states them --------------------------------
#
# The merchant API is stricter than the forms: a string amount is plain decimal notation
# ("500", "500.50"; no sign, exponent, spaces or leading zeros), and the document says per
# currency exactly which amounts are taken (``amount_schema``), so a client that validates
# against it never sends one we refuse, and we never take one it would call invalid.

_API_STRING = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?\Z", re.ASCII)
# ISO 4217's largest minor unit (CLF, UYW): no amount of any currency has more decimals.
MAX_EXPONENT = 4
FINEST_CURRENCY = "CLF"  # one with MAX_EXPONENT digits: an amount no currency can take is none of these


def _positive_upto(bound: str) -> str:
    """A regex (no anchors) for the decimal integers 1..bound, no leading zeros."""
    if bound == "0":
        return "(?!)"  # nothing
    n = len(bound)
    parts = []
    if n > 1:  # every number with fewer digits
        parts.append(f"[1-9][0-9]{{0,{n - 2}}}")
    for i, digit in enumerate(bound):
        low = "1" if i == 0 else "0"
        if digit > low:
            top = chr(ord(digit) - 1)
            parts.append(f"{bound[:i]}[{low}-{top}][0-9]{{{n - i - 1}}}")
    parts.append(bound)
    return "|".join(parts)


def amount_string_pattern(exp: int, max_major: int) -> str:
    """The strings ``api_minor`` takes for a currency with ``exp`` minor digits: plain decimal
    notation, greater than zero, at most ``max_major``, no more significant decimals than ``exp``
    (trailing zeros may follow)."""
    zeros = "(?:\\.0+)?"
    fraction = f"(?:\\.[0-9]{{1,{exp}}}0*)?" if exp else zeros
    branches = [f"(?:{_positive_upto(str(max_major - 1))}){fraction}", f"{max_major}{zeros}"]
    if exp:  # below one: "0.5", "0.05"
        small = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{exp - 1 - k}}}" for k in range(exp))
        branches.append(f"0\\.(?:{small})0*")
    return "^(?:" + "|".join(branches) + ")$"


def amount_schema(exp: int, max_major: int) -> dict[str, Any]:
    """JSON Schema of an amount in a currency with ``exp`` minor digits, as ``api_minor`` takes it."""
    return {
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "maximum": max_major, "multipleOf": _step(exp)},
            {"type": "string", "pattern": amount_string_pattern(exp, max_major), "maxLength": AMOUNT_MAX_LENGTH},
        ]
    }


def _step(exp: int) -> int | float:
    return 1 if exp == 0 else float(Decimal(1).scaleb(-exp))


@lru_cache(maxsize=1)
def currencies_by_exponent() -> dict[int, list[str]]:
    """Every ISO 4217 code that can take payments, by its number of minor digits."""
    groups: dict[int, list[str]] = {}
    for cur in Currency:
        if cur.exponent is not None and len(cur.code) == 3:
            groups.setdefault(int(cur.exponent), []).append(cur.code)
    return {exp: sorted(codes) for exp, codes in sorted(groups.items())}


def api_currency(value: Any) -> str:
    """A currency as the API takes it: an ISO 4217 code in capitals or in small letters
    (``null`` means KZT, as in the old system); the document lists them all."""
    if value is None:
        return "KZT"
    if not isinstance(value, str) or not (value.isupper() or value.islower()) or len(value) != 3:
        raise MoneyError("currency must be a three-letter ISO 4217 code such as KZT")
    code = value.upper()
    exponent(code)
    return code


def api_minor(value: Any, currency: str, *, max_major: Decimal | None = None) -> int:
    """An amount as the merchant API takes it: a JSON number, or a string of plain decimal
    notation; then ``to_minor``'s checks."""
    if isinstance(value, str) and not _API_STRING.match(value):
        raise MoneyError('amount must be a number or a string such as "500" or "500.50" (digits and one dot)')
    return to_minor(value, currency, max_major=max_major)


# --- amounts a provider reports ------------------------------------------------------------
#
# What a bank or terminal says it took comes in its own shapes: a JSON number, a numeric string,
# or a cheque's text such as "1500 ₸", "1 500,50 ₸" or "- 500 ₸" (Kaspi Smart POS puts the amount
# only there: shared/reference/kaspi.md §B). Read exactly, or not at all: None means "could not
# be read", and the caller decides what an unread amount means; it is never guessed.

_CURRENCY_MARKS = ("₸", "〒", "тенге", "тг.", "тг", "KZT", "kzt")
_GROUP_SPACES = (" ", "\u00a0", "\u202f", "\u2009", "\u2007")
_MINUS = ("-", "−", "–")


def reported_minor(value: Any, currency: str = "KZT") -> int | None:
    """A provider's reported amount (major units) in minor units, signed; None if unreadable."""
    try:
        if isinstance(value, str):
            text = value.strip()
            for mark in (*_CURRENCY_MARKS, *_GROUP_SPACES):
                text = text.replace(mark, "")
            if "," in text and "." in text:  # "1,500.50": the last mark is the decimal one
                text = text.replace("," if text.rfind(",") < text.rfind(".") else ".", "")
            text = text.replace(",", ".")
        else:
            text = _text_of(value)  # the same reading of numbers as every other way in
        negative = text[:1] in _MINUS
        magnitude = text[1:] if negative else text
        if to_decimal(magnitude) == 0:  # the grammar and bounds of every amount
            return 0
        minor = to_minor(magnitude, currency)
    except MoneyError:
        return None
    return -minor if negative else minor
