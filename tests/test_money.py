"""Money and wire-format rules that merchants depend on, checked without a database."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paycenter.money import MoneyError, normalize_currency, to_major_number, to_major_str, to_minor
from paycenter.webhooks.wire import php_json


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        (500, "KZT", 50000),
        (500.5, "KZT", 50050),
        ("500.50", "KZT", 50050),
        (0.01, "KZT", 1),
        (0.1 + 0.2, "KZT", None),  # float noise is more decimals than KZT has
        (1000, "JPY", 1000),
        ("1.234", "KWD", 1234),
        (19.99, "USD", 1999),
    ],
)
def test_to_minor(value, currency, minor):
    if minor is None:
        with pytest.raises(MoneyError):
            to_minor(value, currency)
    else:
        assert to_minor(value, currency) == minor


@pytest.mark.parametrize("bad", [0, -1, "abc", True, None, float("nan"), float("inf"), "1e400", [], {}])
def test_to_minor_refuses(bad):
    with pytest.raises(MoneyError):
        to_minor(bad, "KZT")


def test_max_amount():
    assert to_minor(100, "KZT", max_major=Decimal(100)) == 10000
    with pytest.raises(MoneyError, match="must not exceed"):
        to_minor("100.01", "KZT", max_major=Decimal(100))


@pytest.mark.parametrize("code", ["XYZ", "US", "", "XAU", "XTS", 123])
def test_unknown_currency(code):
    with pytest.raises(MoneyError):
        normalize_currency(code)


def test_currency_is_normalised():
    assert normalize_currency(" kzt ") == "KZT"


@given(st.integers(min_value=1, max_value=10**13))
def test_minor_round_trips_through_the_api_string(minor):
    assert to_minor(to_major_str(minor, "KZT"), "KZT") == minor


def test_major_numbers_for_webhooks():
    assert to_major_number(50000, "KZT") == 500
    assert isinstance(to_major_number(50000, "KZT"), int)
    assert to_major_number(50050, "KZT") == Decimal("500.5")
    assert to_major_str(5, "KZT") == "0.05"
    assert to_major_str(1000, "JPY") == "1000"


def test_php_json_matches_php_json_encode():
    body = {
        "event": "paid",
        "amount": to_major_number(50000, "KZT"),
        "paid_amount": to_major_number(50050, "KZT"),
        "description": "Тестовый платеж",
        "url": "https://example.com/a/b",
        "metadata": [],
    }
    # What PHP's json_encode($body) prints for the same array.
    expected = (
        '{"event":"paid","amount":500,"paid_amount":500.5,'
        '"description":"\\u0422\\u0435\\u0441\\u0442\\u043e\\u0432\\u044b\\u0439 '
        '\\u043f\\u043b\\u0430\\u0442\\u0435\\u0436",'
        '"url":"https:\\/\\/example.com\\/a\\/b","metadata":[]}'
    )
    assert php_json(body) == expected
    # A merchant that parses and re-encodes with PHP gets the same bytes, so the HMAC verifies.
    assert php_json(json.loads(expected, parse_float=Decimal)) == expected
    sig = hmac.new(b"test_secret_key", expected.encode(), hashlib.sha256).hexdigest()
    assert len(sig) == 64


def test_php_json_refuses_nan():
    with pytest.raises(ValueError):
        php_json({"a": float("nan")})
