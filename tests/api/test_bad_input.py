"""Every bad input of issue 2: the exact 4xx, a clear error envelope, and nothing written.

Each refusal is checked the same way (``refused``): status, ``success: false``, a human
``message``, the machine ``error.code``, the offending field in ``error.fields`` where there is
one, and the row count of every table unchanged. POSTs carry an ``Idempotency-Key`` so a refused
request storing its key would show up as a written row too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from kit.api import (
    INIT,
    SEED_BODY,
    create_payment,
    key_headers,
    make_merchant,
    post_json,
    refused,
    sandbox,
    seed,
    snapshot,
)
from kit.db import row_counts
from paycenter.db import utcnow
from paycenter.merchants import service as merchants

MAX_EXPIRES_IN = 30 * 24 * 3600


# --- POST /api/payment/init ------------------------------------------------------------------

LONG_URL = "https://example.com/" + "a" * (501 - len("https://example.com/"))
assert len(LONG_URL) == 501

INIT_CASES: list[Any] = [
    # amount <= 0
    pytest.param(seed(amount=0), 422, "validation_error", "amount", id="amount-zero"),
    pytest.param(seed(amount=-1), 422, "validation_error", "amount", id="amount-negative"),
    pytest.param(seed(amount=-0.01), 422, "validation_error", "amount", id="amount-negative-cent"),
    pytest.param(seed(amount="0.00"), 422, "validation_error", "amount", id="amount-zero-string"),
    # not a number
    pytest.param(seed(amount="abc"), 422, "validation_error", "amount", id="amount-abc"),
    pytest.param(seed(amount=True), 422, "validation_error", "amount", id="amount-true"),
    pytest.param(seed(amount=None), 422, "validation_error", "amount", id="amount-null"),
    pytest.param(seed(amount=[]), 422, "validation_error", "amount", id="amount-list"),
    pytest.param(seed(amount={}), 422, "validation_error", "amount", id="amount-object"),
    pytest.param(seed(amount="NaN"), 422, "validation_error", "amount", id="amount-nan-string"),
    pytest.param(seed(amount="Infinity"), 422, "validation_error", "amount", id="amount-inf-string"),
    pytest.param(
        {k: v for k, v in SEED_BODY.items() if k != "amount"}, 422, "validation_error", "amount", id="amount-missing"
    ),
    # NaN / Infinity as bare JSON tokens: Python's json module accepts them, we must not
    pytest.param(b'{"amount": NaN, "currency": "KZT"}', 422, "validation_error", "amount", id="amount-NaN-token"),
    pytest.param(b'{"amount": Infinity}', 422, "validation_error", "amount", id="amount-Infinity-token"),
    pytest.param(b'{"amount": -Infinity}', 422, "validation_error", "amount", id="amount-minus-Infinity-token"),
    pytest.param(b'{"amount": 1e400}', 422, "validation_error", "amount", id="amount-overflows-float"),
    # more decimals than the currency has
    pytest.param(seed(amount=500.001), 422, "validation_error", "amount", id="amount-3-decimals-KZT"),
    pytest.param(seed(amount="500.001"), 422, "validation_error", "amount", id="amount-3-decimals-KZT-string"),
    pytest.param(seed(amount=5.5, currency="JPY"), 422, "validation_error", "amount", id="amount-decimals-JPY"),
    pytest.param(seed(amount=1.2345, currency="KWD"), 422, "validation_error", "amount", id="amount-4-decimals-KWD"),
    # above the default maximum (100 000 000)
    pytest.param(seed(amount=100_000_000.01), 422, "validation_error", "amount", id="amount-above-max"),
    pytest.param(seed(amount=10**30), 422, "validation_error", "amount", id="amount-huge"),
    # unknown currency
    pytest.param(seed(currency="XYZ"), 422, "validation_error", "currency", id="currency-XYZ"),
    pytest.param(seed(currency="US"), 422, "validation_error", "currency", id="currency-US"),
    pytest.param(seed(currency=123), 422, "validation_error", "currency", id="currency-number"),
    pytest.param(seed(currency="XAU"), 422, "validation_error", "currency", id="currency-XAU-no-minor-unit"),
    pytest.param(seed(currency=""), 422, "validation_error", "currency", id="currency-empty"),
    # metadata not an object, or too big
    pytest.param(seed(metadata="order=1"), 422, "validation_error", "metadata", id="metadata-string"),
    pytest.param(seed(metadata=42), 422, "validation_error", "metadata", id="metadata-number"),
    pytest.param(seed(metadata=True), 422, "validation_error", "metadata", id="metadata-bool"),
    pytest.param(seed(metadata=["order", 1]), 422, "validation_error", "metadata", id="metadata-list"),
    pytest.param(
        seed(metadata={f"k{i}": i for i in range(51)}), 422, "validation_error", "metadata", id="metadata-51-keys"
    ),
    pytest.param(seed(metadata={"k" * 41: "v"}), 422, "validation_error", "metadata", id="metadata-key-41"),
    pytest.param(seed(metadata={"note": "x" * 501}), 422, "validation_error", "metadata", id="metadata-value-501"),
    # The same limits at every level, as the document states them (components Metadata*).
    pytest.param(
        seed(metadata={"note": {"inner": "x" * 501}}),
        422,
        "validation_error",
        "metadata",
        id="metadata-nested-text-501",
    ),
    pytest.param(
        seed(metadata={"note": {"k" * 41: 1}}), 422, "validation_error", "metadata", id="metadata-nested-key-41"
    ),
    # webhook_url not http(s), or too long
    pytest.param(seed(webhook_url="ftp://example.com/hook"), 422, "validation_error", "webhook_url", id="webhook-ftp"),
    pytest.param(
        seed(webhook_url="javascript:alert(1)"), 422, "validation_error", "webhook_url", id="webhook-javascript"
    ),
    pytest.param(seed(webhook_url="not a url"), 422, "validation_error", "webhook_url", id="webhook-not-a-url"),
    pytest.param(seed(webhook_url="example.com/hook"), 422, "validation_error", "webhook_url", id="webhook-no-scheme"),
    pytest.param(seed(webhook_url="http://"), 422, "validation_error", "webhook_url", id="webhook-no-host"),
    pytest.param(
        seed(webhook_url="https://:443/hook"), 422, "validation_error", "webhook_url", id="webhook-port-no-host"
    ),
    pytest.param(
        seed(webhook_url="https://example.com:99999/"), 422, "validation_error", "webhook_url", id="webhook-bad-port"
    ),
    pytest.param(seed(webhook_url=LONG_URL), 422, "validation_error", "webhook_url", id="webhook-501-chars"),
    pytest.param(seed(webhook_url=123), 422, "validation_error", "webhook_url", id="webhook-number"),
    # webhook_secret over 64
    pytest.param(seed(webhook_secret="s" * 65), 422, "validation_error", "webhook_secret", id="secret-65"),
    # expires_in out of range
    pytest.param(seed(expires_in=9), 422, "validation_error", "expires_in", id="expires-in-9"),
    pytest.param(seed(expires_in=0), 422, "validation_error", "expires_in", id="expires-in-0"),
    pytest.param(
        seed(expires_in=MAX_EXPIRES_IN + 1), 422, "validation_error", "expires_in", id="expires-in-30d-plus-1"
    ),
    pytest.param(seed(expires_in="soon"), 422, "validation_error", "expires_in", id="expires-in-text"),
    # unknown provider / language
    pytest.param(seed(provider="kaspi"), 422, "validation_error", "provider", id="provider-unknown"),
    pytest.param(seed(language="de"), 422, "validation_error", "language", id="language-unknown"),
    # not JSON, or JSON that is not an object
    pytest.param(b'{"amount": 500,', 400, "malformed_json", None, id="json-truncated"),
    pytest.param(b"{'amount': 500}", 400, "malformed_json", None, id="json-single-quotes"),
    pytest.param(b"amount=500", 400, "malformed_json", None, id="json-form-encoded"),
    pytest.param(b'[{"amount": 500}]', 422, "validation_error", "body", id="json-array"),
    pytest.param(b'"500"', 422, "validation_error", "body", id="json-string"),
    pytest.param(b"500", 422, "validation_error", "body", id="json-number"),
    pytest.param(b"null", 422, "validation_error", "body", id="json-null"),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), INIT_CASES)
async def test_init_refuses(client, db, merchant, body, status, code, field):
    await refused(db, post_json(client, merchant, INIT, body), status, code, field)


async def test_init_error_names_the_problem(client, db, merchant):
    """Messages say what is wrong, not just that something is."""
    body = await refused(
        db, post_json(client, merchant, INIT, seed(amount=5.5, currency="JPY")), 422, "validation_error", "amount"
    )
    assert "JPY" in body["message"]
    body = await refused(
        db, post_json(client, merchant, INIT, seed(currency="XYZ")), 422, "validation_error", "currency"
    )
    assert "XYZ" in body["message"]
    body = await refused(
        db, post_json(client, merchant, INIT, seed(webhook_secret="s" * 65)), 422, "validation_error", "webhook_secret"
    )
    assert "64" in body["message"]


async def test_init_limits_are_inclusive(client, db, merchant):
    """The edges of every limit are accepted, so the refusals above are exactly one step past them."""
    accepted = [
        seed(amount=0.01),
        seed(amount=100_000_000),
        seed(amount=5, currency="JPY"),
        seed(amount=1.234, currency="kwd"),
        seed(metadata={f"k{i}": i for i in range(50)}),
        seed(metadata={"k" * 40: "x" * 500}),
        seed(webhook_url="https://example.com/" + "a" * (500 - len("https://example.com/"))),
        seed(webhook_secret="s" * 64),
        seed(expires_in=10),
        seed(expires_in=MAX_EXPIRES_IN),
        seed(provider="sandbox", language="kk"),
    ]
    for body in accepted:
        data = await create_payment(client, merchant, **body)
        assert data["status"] == "pending"
    assert (await row_counts(db))["payments"] == len(accepted)


async def test_empty_metadata_list_is_accepted(client, db, merchant):
    """PHP's json_encode of an empty array sends [] for "no metadata": the old system took it."""
    data = await create_payment(client, merchant, metadata=[])
    detail = await snapshot(client, merchant, data["transaction_id"])
    assert detail["metadata"] == {}


async def test_max_amount_is_configurable(client, db, merchant, settings):
    settings.max_amount = Decimal("1000")
    await refused(db, post_json(client, merchant, INIT, seed(amount=1000.01)), 422, "validation_error", "amount")
    body = await refused(db, post_json(client, merchant, INIT, seed(amount=5000)), 422, "validation_error", "amount")
    assert "1000" in body["message"]
    assert (await create_payment(client, merchant, amount=1000))["amount"] == "1000.00"

    settings.max_amount = Decimal("200000000")
    assert (await create_payment(client, merchant, amount=150_000_000))["amount"] == "150000000.00"


# --- body size ----------------------------------------------------------------------------


def big_body(size: int) -> bytes:
    """A valid init body padded with JSON whitespace to exactly ``size`` bytes."""
    raw = json.dumps(SEED_BODY).encode()
    assert len(raw) < size
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


async def test_body_over_64k_with_content_length(client, db, merchant, settings):
    content = big_body(settings.max_body_bytes + 1)
    headers = key_headers(merchant, **{"Content-Type": "application/json"})

    async def send() -> httpx.Response:
        response = await client.post(INIT, content=content, headers=headers)
        assert response.request.headers["content-length"] == str(len(content))
        return response

    await refused(db, send, 413, "body_too_large")


async def test_body_over_64k_streamed_without_length(client, db, merchant, settings):
    content = big_body(settings.max_body_bytes + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 4096):
            yield content[start : start + 4096]

    headers = key_headers(merchant, **{"Content-Type": "application/json"})

    async def send() -> httpx.Response:
        response = await client.post(INIT, content=chunks(), headers=headers)
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        return response

    await refused(db, send, 413, "body_too_large")


async def test_body_of_exactly_64k_is_accepted(client, db, merchant, settings):
    content = big_body(settings.max_body_bytes)
    response = await client.post(
        INIT, content=content, headers={**merchant.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


async def test_refund_body_over_64k(client, db, merchant, settings):
    payment = await create_payment(client, merchant)
    await sandbox(client, payment["transaction_id"])
    before = await snapshot(client, merchant, payment["transaction_id"])
    content = b'{"reason": "' + b"x" * settings.max_body_bytes + b'"}'
    await refused(
        db,
        post_json(client, merchant, f"/api/payment/{payment['transaction_id']}/refund", content),
        413,
        "body_too_large",
    )
    assert await snapshot(client, merchant, payment["transaction_id"]) == before


# --- authentication -------------------------------------------------------------------------


def protected_calls(payment_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("POST", INIT, SEED_BODY),
        ("POST", f"/api/payment/{payment_id}/cancel", {}),
        ("POST", f"/api/payment/{payment_id}/refund", {}),
        ("GET", f"/api/transaction/{payment_id}", None),
        ("GET", "/api/transactions", None),
        ("GET", "/api/statistics", None),
    ]


async def _call(client: httpx.AsyncClient, method: str, url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    if method == "POST":
        return await client.post(url, json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    return await client.get(url, headers=headers)


@pytest.mark.parametrize("variant", ["missing", "empty", "unknown", "revoked", "too-long"])
async def test_bad_token_is_401(client, db, merchant, variant):
    payment = await create_payment(client, merchant)
    await sandbox(client, payment["transaction_id"])  # paid: refund/cancel would do something if let through
    headers: dict[str, str]
    if variant == "missing":
        headers = {}
    elif variant == "empty":
        headers = {"X-API-Token": ""}
    elif variant == "unknown":
        headers = {"X-API-Token": "pct_" + "A" * 43}
    elif variant == "too-long":
        headers = {"X-API-Token": merchant.token + "x" * 300}
    else:
        victim = await make_merchant(db, name="Revoked shop")
        ok = await client.get("/api/transactions", headers=victim.headers)
        assert ok.status_code == 200, ok.text
        async with db.transaction() as session:
            await merchants.revoke_token(session, token_id=victim.token_id, now=utcnow())
        headers = victim.headers
    before = await snapshot(client, merchant, payment["transaction_id"])
    for method, url, body in protected_calls(payment["transaction_id"]):
        await refused(db, lambda: _call(client, method, url, body, headers), 401, "unauthorized")  # noqa: B023
    assert await snapshot(client, merchant, payment["transaction_id"]) == before


async def test_revoking_one_token_keeps_the_others(client, db, merchant):
    async with db.transaction() as session:
        second = await merchants.issue_token(session, merchant_id=merchant.merchant_id, now=utcnow())
        await merchants.revoke_token(session, token_id=merchant.token_id, now=utcnow())
    await refused(db, lambda: client.get("/api/transactions", headers=merchant.headers), 401, "unauthorized")
    response = await client.get("/api/transactions", headers={"X-API-Token": second.secret})
    assert response.status_code == 200, response.text


# --- another merchant's payment, or none ------------------------------------------------------


@pytest.mark.parametrize("action", ["get", "cancel", "refund", "refund-partial"])
async def test_other_merchants_payment_is_404(client, db, merchant, other_merchant, action):
    payment = await create_payment(client, merchant)
    pid = payment["transaction_id"]
    if action.startswith("refund"):
        await sandbox(client, pid)
    before = await snapshot(client, merchant, pid)
    call = {
        "get": ("GET", f"/api/transaction/{pid}", None),
        "cancel": ("POST", f"/api/payment/{pid}/cancel", {"reason": "mine now"}),
        "refund": ("POST", f"/api/payment/{pid}/refund", {}),
        "refund-partial": ("POST", f"/api/payment/{pid}/refund", {"amount": 1}),
    }[action]
    await refused(db, lambda: _call(client, *call, other_merchant.headers), 404, "not_found")
    assert await snapshot(client, merchant, pid) == before


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/transaction/{pid}"),
        ("GET", "/api/payment/{pid}"),
        ("GET", "/api/payment/{pid}/status"),
        ("POST", "/api/payment/{pid}/cancel"),
        ("POST", "/api/payment/{pid}/refund"),
    ],
)
async def test_unknown_payment_is_404(client, db, merchant, method, url):
    pid = "0" * 32
    await refused(db, lambda: _call(client, method, url.format(pid=pid), {}, merchant.headers), 404, "not_found")


# --- state: cancel and refund ------------------------------------------------------------------


async def test_cancel_of_paid_payment_is_409(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid)
    before = await snapshot(client, merchant, pid)
    assert before["status"] == "paid"
    url = f"/api/payment/{pid}/cancel"
    await refused(db, post_json(client, merchant, url, {"reason": "too late"}), 409, "invalid_state")
    assert await snapshot(client, merchant, pid) == before


async def test_cancel_twice_is_409(client, db, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    url = f"/api/payment/{pid}/cancel"
    response = await client.post(url, json={}, headers=merchant.headers)
    assert response.status_code == 200, response.text
    before = await snapshot(client, merchant, pid)
    await refused(db, post_json(client, merchant, url, {}), 409, "invalid_state")
    assert await snapshot(client, merchant, pid) == before


@pytest.mark.parametrize("state", ["pending", "cancelled", "partially_paid-then-refunded"])
async def test_refund_without_refundable_money_is_409(client, db, merchant, state):
    pid = (await create_payment(client, merchant))["transaction_id"]
    if state == "cancelled":
        assert (await client.post(f"/api/payment/{pid}/cancel", headers=merchant.headers)).status_code == 200
    elif state.startswith("partially_paid"):
        await sandbox(client, pid, amount="100")
        first = await client.post(f"/api/payment/{pid}/refund", json={}, headers=merchant.headers)
        assert first.status_code == 200, first.text
        assert first.json()["data"]["refund"]["amount"] == "100.00"
    before = await snapshot(client, merchant, pid)
    url = f"/api/payment/{pid}/refund"
    await refused(db, post_json(client, merchant, url, {}), 409, "invalid_state")
    await refused(db, post_json(client, merchant, url, {"amount": 1}), 409, "invalid_state")
    assert await snapshot(client, merchant, pid) == before


async def test_refund_above_refundable_is_409(client, db, merchant):
    """What is left to refund is the payment's state, which the request's schema cannot know: a
    conflict with the payment (409), not a malformed request (422)."""
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid)
    url = f"/api/payment/{pid}/refund"
    body = await refused(
        db, post_json(client, merchant, url, {"amount": 500.01}), 409, "amount_exceeds_refundable", "amount"
    )
    assert "500.00" in body["message"]

    first = await client.post(url, json={"amount": 200}, headers=merchant.headers)
    assert first.status_code == 200, first.text
    before = await snapshot(client, merchant, pid)
    assert before["refundable_amount"] == "300.00"
    body = await refused(
        db, post_json(client, merchant, url, {"amount": 300.01}), 409, "amount_exceeds_refundable", "amount"
    )
    assert "300.00" in body["message"]
    assert await snapshot(client, merchant, pid) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"amount": -1}, id="negative"),
        pytest.param({"amount": 0}, id="zero"),
        pytest.param({"amount": 1.00001}, id="5-decimals: no currency has them"),
        pytest.param({"amount": "1.00001"}, id="5-decimals-string"),
        pytest.param({"amount": "1e2"}, id="exponent-string"),
        pytest.param({"amount": 100000001}, id="above-the-maximum"),
        pytest.param({"amount": "abc"}, id="abc"),
        pytest.param({"amount": True}, id="bool"),
        pytest.param({"amount": []}, id="list"),
        pytest.param(b'{"amount": NaN}', id="NaN-token"),
        pytest.param(b'{"amount": Infinity}', id="Infinity-token"),
        pytest.param({"amount": 1, "reason": "r" * 501}, id="reason-501"),
    ],
)
async def test_refund_bad_amount_is_422(client, db, merchant, body):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid)
    before = await snapshot(client, merchant, pid)
    field = "reason" if isinstance(body, dict) and "reason" in body else "amount"
    await refused(db, post_json(client, merchant, f"/api/payment/{pid}/refund", body), 422, "validation_error", field)
    assert await snapshot(client, merchant, pid) == before


async def test_refund_decimals_follow_the_currency(client, db, merchant):
    """Finer than the payment's currency: a conflict with that payment (409), since the schema
    takes any currency's decimals; finer than every currency is a 422 (above)."""
    pid = (await create_payment(client, merchant, amount=1000, currency="JPY"))["transaction_id"]
    await sandbox(client, pid)
    url = f"/api/payment/{pid}/refund"
    for amount in (0.5, "0.5"):
        body = await refused(
            db, post_json(client, merchant, url, {"amount": amount}), 409, "amount_not_in_currency", "amount"
        )
        assert "JPY" in body["message"]
    kzt = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, kzt)
    await refused(
        db,
        post_json(client, merchant, f"/api/payment/{kzt}/refund", {"amount": "1.001"}),
        409,
        "amount_not_in_currency",
        "amount",
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"reason": ', id="malformed"),
        pytest.param(b'["x"]', id="array"),
    ],
)
async def test_cancel_and_refund_bad_json(client, db, merchant, body):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await sandbox(client, pid, amount="100")
    before = await snapshot(client, merchant, pid)
    status, code, field = (400, "malformed_json", None) if body.startswith(b"{") else (422, "validation_error", "body")
    for url in (f"/api/payment/{pid}/cancel", f"/api/payment/{pid}/refund"):
        await refused(db, post_json(client, merchant, url, body), status, code, field)
    assert await snapshot(client, merchant, pid) == before


# --- GET /api/transactions and /api/statistics query parameters ------------------------------


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/transactions?status=bogus", "status"),
        ("/api/transactions?status=paid,bogus", "status"),
        ("/api/transactions?limit=0", "limit"),
        ("/api/transactions?limit=101", "limit"),
        ("/api/transactions?limit=-5", "limit"),
        ("/api/transactions?limit=ten", "limit"),
        ("/api/transactions?cursor=zzz", "cursor"),
        ("/api/transactions?cursor=bm90IGpzb24", "cursor"),  # base64 of "not json"
        ("/api/transactions?cursor=WzEsMl0", "cursor"),  # base64 of [1,2]
        ("/api/transactions?cursor=" + "a" * 501, "cursor"),
        ("/api/transactions?created_from=notadate", "created_from"),
        ("/api/transactions?created_to=2024-13-01", "created_to"),
        ("/api/transactions?order_id=" + "o" * 501, "order_id"),
        ("/api/statistics?created_from=yesterday", "created_from"),
        ("/api/statistics?created_to=2024-02-30T00:00:00Z", "created_to"),
    ],
)
async def test_bad_query_params_are_422(client, db, merchant, url, field):
    await create_payment(client, merchant)
    await refused(db, lambda: client.get(url, headers=merchant.headers), 422, "validation_error", field)
