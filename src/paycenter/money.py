"""Money at the edges: major-unit decimals in, integer minor units inside, decimal strings out.

Floats never hold money here. A JSON number arrives as a Python float only because the JSON
parser made it one; ``repr`` gives back the shortest text that round-trips, which is what the
merchant wrote, and we parse that text as a Decimal.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from iso4217 import Currency

# Whatever the configured maximum, an amount must fit a signed 64-bit column with room to sum.
ABSOLUTE_MAX_MINOR = 2**62


class MoneyError(ValueError):
    """An amount or currency the API cannot accept; the message is shown to the merchant."""


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


def to_decimal(value: Any) -> Decimal:
    """A JSON number or numeric string as an exact Decimal; anything else is refused."""
    if isinstance(value, bool) or value is None:
        raise MoneyError("amount must be a number")
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int | Decimal):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise MoneyError("amount must be a number")
    if len(text) > 40:
        raise MoneyError("amount must be a number")
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise MoneyError("amount must be a number") from None
    if not dec.is_finite():
        raise MoneyError("amount must be a finite number")
    return dec


def to_minor(value: Any, currency: str, *, max_major: Decimal | None = None) -> int:
    """Parse a positive major-unit amount into minor units of ``currency``."""
    dec = to_decimal(value)
    exp = exponent(currency)
    if dec <= 0:
        raise MoneyError("amount must be greater than zero")
    if max_major is not None and dec > max_major:
        raise MoneyError(f"amount must not exceed {format_major(max_major, exp)} {currency}")
    scaled = dec.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"amount has more decimal places than {currency} allows ({exp})"
            if exp
            else f"amount must be a whole number for {currency}"
        )
    if scaled > ABSOLUTE_MAX_MINOR:
        raise MoneyError("amount is too large")
    return int(scaled)


def format_major(value: Decimal, exp: int) -> str:
    return f"{value:.{exp}f}"


def to_major_str(minor: int, currency: str) -> str:
    """Minor units as the decimal string the API returns: 50000 KZT -> "500.00"."""
    exp = exponent(currency)
    return format_major(Decimal(minor).scaleb(-exp), exp)


def to_major_number(minor: int, currency: str) -> int | Decimal:
    """Minor units as a JSON number for webhook bodies: integral values without a fraction."""
    value = Decimal(minor).scaleb(-exponent(currency))
    if value == value.to_integral_value():
        return int(value)
    return value.normalize()
