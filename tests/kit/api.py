"""A merchant and its payments through the merchant API and the sandbox page; refusals checked
the same way everywhere (status, envelope, nothing written)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kit.db import row_counts
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants


@dataclass
class MerchantCreds:
    merchant_id: str
    token: str
    token_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Token": self.token}


async def make_merchant(db: Database, name: str = "Test shop", **kwargs: Any) -> MerchantCreds:
    async with db.transaction() as session:
        merchant = await merchants.create_merchant(session, name=name, now=utcnow(), **kwargs)
        issued = await merchants.issue_token(session, merchant_id=merchant.id, now=utcnow())
    return MerchantCreds(merchant.id, issued.secret, issued.token.id)


SEED_BODY: dict[str, Any] = {
    "amount": 500,
    "currency": "KZT",
    "description": "Тестовый платеж",
    "webhook_url": "https://webhook.site/YOUR-ID",
    "webhook_secret": "test_secret_key",
    "metadata": {"user_id": "12345", "order_id": "TEST-001"},
}


async def create_payment(client: httpx.AsyncClient, creds: MerchantCreds, **overrides: Any) -> dict[str, Any]:
    body = {**SEED_BODY, **overrides}
    response = await client.post("/api/payment/init", json=body, headers=creds.headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def sandbox(client: httpx.AsyncClient, payment_id: str, action: str = "pay", **form: str) -> httpx.Response:
    response = await client.post(f"/pay/{payment_id}/sandbox", data={"action": action, **form})
    assert response.status_code == 303, response.text
    return response


INIT = "/api/payment/init"


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["message"], str) and len(body["message"].strip()) > 5, body
    assert not body["message"].startswith(("Value error", "Request failed")), body
    assert body.get("data") is None
    assert body["error"]["code"] == code, body
    if field is not None:
        fields = body["error"].get("fields") or []
        assert field in [f["field"] for f in fields], body
        assert all(isinstance(f["message"], str) and f["message"] for f in fields), body
    return body


async def refused(
    db: Database,
    send: Callable[[], Awaitable[httpx.Response]],
    status: int,
    code: str,
    field: str | None = None,
) -> dict[str, Any]:
    """Send a request that must be refused, and prove it wrote nothing."""
    before = await row_counts(db)
    response = await send()
    body = assert_error(response, status, code, field)
    assert await row_counts(db) == before, f"a refused request wrote rows: {response.text}"
    return body


def key_headers(creds: MerchantCreds, **extra: str) -> dict[str, str]:
    return {**creds.headers, "Idempotency-Key": uuid.uuid4().hex, **extra}


def post_json(
    client: httpx.AsyncClient, creds: MerchantCreds, url: str, body: Any
) -> Callable[[], Awaitable[httpx.Response]]:
    """A POST of ``body``: raw bytes as they are, anything else JSON-encoded."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = key_headers(creds, **{"Content-Type": "application/json"})
    return lambda: client.post(url, content=content, headers=headers)


def seed(**changes: Any) -> dict[str, Any]:
    return {**SEED_BODY, **changes}


async def snapshot(client: httpx.AsyncClient, creds: MerchantCreds, payment_id: str) -> dict[str, Any]:
    """The owner's full view of a payment (status, amounts, updated_at, history)."""
    response = await client.get(f"/api/transaction/{payment_id}", headers=creds.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]
