"""Money and wire-format rules that merchants depend on, checked without a database."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from decimal import Context, Decimal, Inexact, Rounded, localcontext

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from paycenter.money import (
    AMOUNT_MAX_LENGTH,
    AMOUNT_PATTERN,
    ExactFloat,
    MoneyError,
    exponent,
    normalize_currency,
    reported_minor,
    to_decimal,
    to_major_number,
    to_major_str,
    to_minor,
    typed,
)
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


# --- the parser every way in uses (issue 11) --------------------------------------------------
# Whatever it is given, to_minor answers a positive integer that is exactly the amount written, or
# a MoneyError: never zero, never a rounded value, never another exception (decimal.Overflow was
# a 500 at four edges).

EDGE_SPACE = " \t\r\n"
OTHER_DIGITS = st.characters(categories=["Nd", "Nl", "No"]).filter(lambda c: not c.isascii())
CURRENCIES = st.sampled_from(["KZT", "JPY", "KWD", "CLF"])


def exactly(text: str, currency: str) -> Decimal:
    """The amount ``text`` says, in minor units, computed without any rounding."""
    with localcontext(Context(prec=200, Emax=10**6, Emin=-(10**6), traps=[Inexact, Rounded])):
        return Decimal(text).scaleb(exponent(currency))


@given(st.one_of(st.text(max_size=45), st.from_regex(AMOUNT_PATTERN, fullmatch=True)), CURRENCIES)
def test_any_text_is_an_exact_amount_or_a_money_error(text, currency):
    try:
        minor = to_minor(text, currency)
    except MoneyError:
        return
    cleaned = text.strip(EDGE_SPACE)
    assert minor > 0
    assert re.fullmatch(AMOUNT_PATTERN, cleaned, re.ASCII) and len(cleaned) <= AMOUNT_MAX_LENGTH
    assert exactly(cleaned, currency) == minor


@given(
    st.integers(min_value=0, max_value=10**25),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from(["e", "E", "e+", "E-"]),
    CURRENCIES,
)
def test_huge_and_tiny_exponents_never_round_overflow_or_reach_zero(mantissa, shift, mark, currency):
    text = f"{mantissa}{mark}{shift}"
    try:
        minor = to_minor(text, currency)
    except MoneyError:
        return
    assert minor > 0
    assert abs(shift) < 100  # anything accepted has a sane magnitude, so computing it exactly is cheap
    assert exactly(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e-1000000000", "too small"),
        ("1e999999", "too large"),
        ("1e99999999999999999999999999999999999", "too large"),  # beyond what Decimal() itself takes
        ("0e999999999999999999999", "greater than zero"),
        ("0.000000000000000000000000000001", "decimal places"),
        ("1_000", "ASCII digits"),
        ("sNaN", "finite"),
    ],
)
def test_exponents_and_grammar_have_clear_messages(text, message):
    with pytest.raises(MoneyError, match=message):
        to_minor(text, "KZT")


@given(
    st.from_regex(r"[0-9]{0,5}(\.[0-9]{0,2})?", fullmatch=True),
    st.text(OTHER_DIGITS, min_size=1, max_size=4),
    st.from_regex(r"[0-9]{0,3}", fullmatch=True),
)
def test_digits_of_other_scripts_are_refused(before, digits, after):
    """Decimal() takes any Unicode decimal digit ("٥٠٠", "５００"), str.isdigit() even more."""
    for text in (before + digits + after, digits, " " + digits + " "):
        with pytest.raises(MoneyError):
            to_decimal(text)


@given(st.floats(), CURRENCIES)
def test_floats_are_read_through_their_shortest_repr(value, currency):
    try:
        minor = to_minor(value, currency)
    except MoneyError:
        return
    assert exactly(repr(value), currency) == minor


def outcome(value: object, currency: str) -> int | str:
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        return str(exc)


@given(st.decimals(places=6, min_value="-1e9", max_value="1e9").map(str), CURRENCIES)
def test_json_numbers_keep_their_text(text, currency):
    """A JSON number as the API's parser hands it over (an ExactFloat) means what its text says."""
    number = json.loads(text, parse_float=ExactFloat)
    assert isinstance(number, ExactFloat) and number.text == text
    assert outcome(number, currency) == outcome(text, currency)


def test_exact_float_refuses_what_the_float_rounded():
    assert to_minor(500.000000000000000001, "KZT") == 50000  # a plain float already lost the digits
    with pytest.raises(MoneyError, match="decimal places"):
        to_minor(ExactFloat("500.000000000000000001"), "KZT")
    with pytest.raises(MoneyError, match="too large"):
        to_minor(ExactFloat("1e999999"), "KZT")  # float("1e999999") is inf


@given(st.decimals(min_value="0.01", max_value="99999999", places=2))
def test_forms_take_what_people_type(value):
    plain = f"{value:.2f}"
    whole, fraction = plain.split(".")
    grouped = f"{int(whole):,}".replace(",", "\u202f") + "," + fraction
    assert typed(grouped) == typed(plain) == typed(f" {plain} ") == value
    assert typed("") is None and typed("  ") is None


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_decimals_given_in_code_follow_the_same_rules(value):
    try:
        minor = to_minor(value, "KWD")
    except MoneyError:
        return
    assert value.is_finite() and minor == exactly(str(value), "KWD")


# --- amounts providers report (money.reported_minor) -----------------------------------------

GROUP = st.sampled_from(["", " ", "\u00a0", "\u202f"])
MARK = st.sampled_from(["", " ₸", "₸", " KZT", " тг"])


@settings(max_examples=300, deadline=None)
@given(minor=st.integers(0, 10**13), group=GROUP, mark=MARK, comma=st.booleans(), negative=st.booleans())
def test_reported_amounts_are_read_exactly_in_every_shape_a_cheque_prints(minor, group, mark, comma, negative):
    whole, cents = divmod(minor, 100)
    digits = f"{whole:,}".replace(",", group)
    text = digits + ((("," if comma else ".") + f"{cents:02d}") if cents or comma else "") + mark
    if negative:
        text = "- " + text
    assert reported_minor(text) == (-minor if negative else minor), text
    assert reported_minor(Decimal(minor).scaleb(-2)) == minor
    assert reported_minor(json.loads(json.dumps(minor / 100 if cents else whole), parse_float=ExactFloat)) == minor


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=20) | st.floats() | st.none() | st.booleans() | st.lists(st.integers(), max_size=2))
@example(value="1500.555 ₸")
@example(value="٥٠٠ ₸")
@example(value="NaN")
@example(value="1e999999")
def test_a_reported_amount_is_read_exactly_or_not_at_all(value):
    """Never an exception, never a rounded or guessed amount: an int of minor units or None."""
    got = reported_minor(value)
    assert got is None or isinstance(got, int)
    if isinstance(value, str) and got is not None:
        assert any(ch.isdigit() for ch in value)
