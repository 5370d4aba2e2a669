"""Each rule the OpenAPI document publishes is the rule the server applies (``paycenter.contract``).

Property-based: for generated inputs (values the published pattern produces, near misses, and
arbitrary text), a JSON Schema validator (jsonschema-rs, the one schemathesis judges with, with
ECMA-262 regexes) and the server's own parser agree, both ways. A rule written twice that drifts
apart fails here with the input that tells them apart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paycenter import contract, money, pagination
from paycenter.errors import Unprocessable
from paycenter.payments import queries

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(schema: dict[str, Any], value: Any) -> bool:
    return bool(jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(value))


def _takes(parse: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        parse(*args, **kwargs)
    except (ValueError, Unprocessable):  # MoneyError is a ValueError
        return False
    return True


# --- amounts ---------------------------------------------------------------------------------

NEAR_AMOUNTS = st.from_regex(r"\A[+-]?[0-9٥５]{0,12}(\.[0-9]{0,7})?([eE][+-]?[0-9]{1,3})?\Z")
MAXIMA = st.sampled_from([10**8, 12345, 1, 999])


@pytest.mark.slow  # hypothesis: hundreds of generated inputs
@PROPERTY
@given(exp=st.sampled_from([0, 2, 3, 4]), most=MAXIMA, data=st.data())
@example(exp=2, most=10**8, data=None)
def test_amount_strings_the_document_allows_are_exactly_those_the_server_takes(exp, most, data):
    schema = money.amount_schema(exp, most)
    pattern = money.amount_string_pattern(exp, most)
    texts = ["500", "500.50", "0.01", "0.001", "05", "1e3", " 5", "5.", ".5", str(most), f"{most}.01", "0"]
    if data is not None:
        texts += [
            data.draw(st.from_regex(pattern, fullmatch=True)),
            data.draw(NEAR_AMOUNTS),
            data.draw(st.text(max_size=12)),
        ]
    currency = {0: "JPY", 2: "KZT", 3: "KWD", 4: "CLF"}[exp]
    for text in texts:
        documented = _valid(schema, text)
        taken = _takes(money.api_minor, text, currency, max_major=Decimal(most))
        assert documented == taken, (text, exp, most, documented, taken)


@PROPERTY
@given(
    exp=st.sampled_from([0, 2, 3, 4]),
    most=MAXIMA,
    number=st.decimals(min_value=-10, max_value=10**9, places=6, allow_nan=False)
    | st.integers(-5, 10**9)
    | st.floats(allow_nan=False, allow_infinity=False),
)
@pytest.mark.slow  # hypothesis: hundreds of generated inputs
def test_amount_numbers_the_document_allows_are_exactly_those_the_server_takes(exp, most, number):
    # The number as a client's JSON encoder writes it, and as the server reads that text.
    text = json.dumps(float(number)) if isinstance(number, float) else str(number)
    value = json.loads(text, parse_float=money.ExactFloat)
    documented = _valid(money.amount_schema(exp, most), json.loads(text))
    currency = {0: "JPY", 2: "KZT", 3: "KWD", 4: "CLF"}[exp]
    taken = _takes(money.api_minor, value, currency, max_major=Decimal(most))
    assert documented == taken, (text, exp, most)


# --- date-times ------------------------------------------------------------------------------

DATE_TIME = {"type": "string", "format": "date-time"}
NEAR_DATETIMES = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2})?(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:?[0-9]{2})?\Z"
)


@pytest.mark.slow  # hypothesis: hundreds of generated inputs
@PROPERTY
@given(text=NEAR_DATETIMES | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=30))
@example(text="2016-12-31T23:59:60Z")
@example(text="0001-01-01T00:00:00+01:00")
@example(text="9999-12-31T23:59:59-01:00")
@example(text="2024-02-30T00:00:00Z")
@example(text="2024-01-01T00:00:00")
def test_datetimes_the_document_allows_are_exactly_those_the_server_takes(text):
    documented = _valid(DATE_TIME, text)
    assert documented == _takes(contract.parse_datetime, text), text
    if documented:
        assert contract.parse_datetime(text).tzinfo is UTC


def test_datetimes_beyond_pythons_range_are_clamped_not_refused():
    assert contract.parse_datetime("0001-01-01T00:00:00+01:00") == datetime.min.replace(tzinfo=UTC)
    assert contract.parse_datetime("9999-12-31T23:59:59-01:00") == datetime.max.replace(tzinfo=UTC)
    assert contract.parse_datetime("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


# --- URLs --------------------------------------------------------------------------------------

NEAR_URLS = st.from_regex(
    r"\A(https?|HTTP|ftp)://([a-z0-9.-]{0,20}|[0-9.]{1,15}|\[[0-9a-f:]{0,10}\]|１２７.０.０.１)"
    r"(:[0-9]{0,6})?([/?#][ -~]{0,10})?\Z"
)


@pytest.mark.slow  # hypothesis: hundreds of generated inputs
@PROPERTY
@given(ips=st.booleans(), text=NEAR_URLS | st.text(max_size=30), data=st.data())
def test_urls_the_document_allows_are_exactly_those_the_server_takes(ips, text, data):
    schema = contract.url_schema(max_length=60, ip_literals=True, description="")
    texts = [text, data.draw(st.from_regex(contract.url_pattern(ip_literals=ips), fullmatch=True))]
    for value in texts:
        documented = _valid(schema, value)
        assert documented == _takes(contract.check_url, value, field="url", max_length=60), value


# --- cursors, statuses, idempotency keys -------------------------------------------------------


@pytest.mark.slow  # hypothesis: hundreds of generated inputs
@PROPERTY
@given(cursor=st.from_regex(pagination.CURSOR_PATTERN, fullmatch=True))
def test_every_cursor_the_pattern_allows_is_a_position(cursor):
    created, row_id = pagination.decode_cursor(cursor)
    assert created.tzinfo is not None and row_id


def test_a_page_cursor_reads_back_as_its_row():
    when = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    cursor = pagination.encode_cursor(when, "0123456789ABCDEF0123456789ABCDEF")
    assert _valid({"type": "string", "pattern": pagination.CURSOR_PATTERN}, cursor)
    assert pagination.decode_cursor(cursor) == (when, "0123456789ABCDEF0123456789ABCDEF")


@pytest.mark.slow  # hypothesis: hundreds of generated inputs
@PROPERTY
@given(text=st.from_regex(r"\A[a-z_ ,]{0,40}\Z") | st.text(max_size=20))
@example(text="paid,pending")
@example(text="paid, pending")
@example(text="")
def test_status_filters_the_document_allows_are_exactly_those_the_server_takes(text):
    documented = _valid({"type": "string", "pattern": queries.STATUSES_PATTERN}, text)
    assert documented == _takes(queries.parse_statuses, text), text


@pytest.mark.slow  # hypothesis: hundreds of generated inputs
@PROPERTY
@given(key=st.text(st.characters(max_codepoint=0xFF), min_size=0, max_size=260))
@example(key=" padded ")
@example(key="a" * 255)
@example(key="a" * 256)
def test_idempotency_keys_the_document_allows_are_exactly_those_the_server_takes(key):
    from paycenter.idempotency.service import MAX_KEY_LENGTH, _check_key

    schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": contract.IDEMPOTENCY_KEY_PATTERN,
    }
    assert _valid(schema, key) == _takes(_check_key, key), key


@pytest.mark.parametrize("value", [True, "60", 60.5, None, [60]])
def test_integers_are_json_integers(value):
    assert not _takes(contract.json_int, value)
    assert contract.json_int(60.0) == 60 and contract.json_int(60) == 60


# --- through the API, on every backend: the served document predicts every answer ----------------

# The examples (issue 11, defect 7) and more of their classes: lax types, nulls, numbers
# in other notations and scripts, per-currency decimals, edges of every bound.
INIT_BODIES: list[Any] = [
    {"amount": 500, "description": None},
    {"amount": "1_000"},
    {"amount": "٥٠٠"},
    {"amount": "５００"},
    {"amount": "1e3"},
    {"amount": " 500"},
    {"amount": "+500"},
    {"amount": "0500"},
    {"amount": True},
    {"amount": "500.5", "currency": "JPY"},
    {"amount": 500.5, "currency": "jpy"},
    {"amount": "500.123", "currency": "KWD"},
    {"amount": "500.1234", "currency": "KWD"},
    {"amount": "500.50", "currency": "Kzt"},
    {"amount": 500, "currency": " KZT"},
    {"amount": 500, "currency": None},
    {"amount": 100000000},
    {"amount": 100000000.01},
    {"amount": "100000000.00"},
    {"amount": 0.01},
    {"amount": 0.001},
    {"amount": 500, "expires_in": "60"},
    {"amount": 500, "expires_in": 60.0},
    {"amount": 500, "expires_in": False},
    {"amount": 500, "expires_in": 9},
    {"amount": 500, "provider": ""},
    {"amount": 500, "provider": " sandbox"},
    {"amount": 500, "provider": "nope"},
    {"amount": 500, "webhook_url": ""},
    {"amount": 500, "webhook_url": "https://shop.example/hook"},
    {"amount": 500, "webhook_url": "https://shop.example/hook\n"},
    {"amount": 500, "webhook_url": "http://8.8.8.8/hook"},
    {"amount": 500, "webhook_url": "http://１２７.０.０.１/hook"},
    {"amount": 500, "success_url": "https://203.0.113.5:8443/ok"},
    {"amount": 500, "success_url": "https://shop.example:99999/"},
    {"amount": 500, "metadata": []},
    {"amount": 500, "metadata": [1]},
    {"amount": 500, "metadata": {"k" * 41: 1}},
    {"amount": 500, "metadata": {"a": {"b": "x" * 501}}},
    {"amount": 500, "metadata": {"a": "x\u0000"}},
    {"amount": 500, "language": "de"},
    {"amount": 500, "customer_name": "x" * 201},
    {"amount": 500, "unknown": {"deep": [None, "\u0000"]}},
]


@pytest.fixture
async def document(client) -> dict[str, Any]:
    return (await client.get("/openapi.json")).json()


def _body_valid(document: dict[str, Any], name: str, body: Any) -> bool:
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return _valid(root, body)


@pytest.mark.parametrize("body", INIT_BODIES, ids=[json.dumps(b, ensure_ascii=False)[:60] for b in INIT_BODIES])
async def test_init_answers_as_the_served_document_predicts(client, merchant, document, body):
    response = await client.post("/api/payment/init", json=body, headers=merchant.headers)
    assert response.status_code in (201, 422), response.text
    assert (response.status_code == 201) == _body_valid(document, "PaymentInit", body), response.text


@pytest.mark.parametrize(
    ("url", "name", "body"),
    [
        ("/api/webhook-secret/rotate", "RotateRequest", {"grace_period": False}),
        ("/api/webhook-secret/rotate", "RotateRequest", {"grace_period": "60"}),
        ("/api/webhook-secret/rotate", "RotateRequest", {"grace_period": 60.0}),
        ("/api/webhook-secret/rotate", "RotateRequest", {"grace_period": None}),
        ("/api/webhooks/recover", "RecoverRequest", {"since": 0}),
        ("/api/webhooks/recover", "RecoverRequest", {"since": "2024-01-01T00:00:00"}),
        ("/api/webhooks/recover", "RecoverRequest", {"since": "2024-01-01T00:00:00Z", "until": "0.5"}),
        ("/api/webhooks/recover", "RecoverRequest", {"since": "0001-01-01T00:00:00+01:00"}),
    ],
)
async def test_webhook_bodies_answer_as_the_served_document_predicts(client, merchant, document, url, name, body):
    response = await client.post(url, json=body, headers=merchant.headers)
    assert response.status_code in (200, 422), response.text
    assert (response.status_code == 200) == _body_valid(document, name, body), response.text
