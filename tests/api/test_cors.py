"""CORS: the public endpoints answer any origin, as the old API did; token endpoints only the
origins in PAYCENTER_CORS_ORIGINS (none by default); never with credentials."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from kit.api import MerchantCreds, create_payment
from paycenter.app import create_app
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.cors import is_public

SHOP = "https://shop.example.kz"
ELSEWHERE = "https://evil.example.com"


def preflight(origin: str, method: str, headers: str = "x-api-token") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


def assert_no_cors(response: httpx.Response) -> None:
    assert not [h for h in response.headers if h.lower().startswith("access-control-allow-")], response.headers


@pytest.fixture
async def shop_client(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose operator lets one merchant site call the token endpoints."""
    ctx.settings.cors_origins = f"{SHOP}, http://localhost:8080"
    transport = httpx.ASGITransport(app=create_app(ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://pay.test") as c:
        yield c


async def test_public_reads_answer_any_origin(client, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    for path in (f"/api/payment/{pid}", f"/api/payment/{pid}/status", f"/api/payment/{pid}/status/"):
        r = await client.options(path, headers=preflight(ELSEWHERE, "GET", "x-api-token, content-type"))
        assert r.status_code == 200, (path, r.status_code, r.text)
        assert r.headers["access-control-allow-origin"] == "*"
        assert "GET" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"] == "x-api-token, content-type"
        assert "access-control-allow-credentials" not in r.headers
    r = await client.get(f"/api/payment/{pid}/status", headers={"Origin": ELSEWHERE, **merchant.headers})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "Retry-After" in r.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in r.headers
    # Errors too, so the page can read them: an unknown payment, a rate limited address.
    r = await client.get("/api/payment/" + "0" * 32, headers={"Origin": ELSEWHERE})
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "*"


async def test_a_rate_limited_public_read_is_readable_cross_origin(client, ctx, merchant, clock):
    clock.freeze()  # windows start on the minute: a slow host must not cross one mid-test
    pid = (await create_payment(client, merchant))["transaction_id"]
    ctx.settings.rate_limit_ip_per_minute = 1
    await client.get(f"/api/payment/{pid}", headers={"Origin": ELSEWHERE})
    r = await client.get(f"/api/payment/{pid}", headers={"Origin": ELSEWHERE})
    assert r.status_code == 429 and r.headers["access-control-allow-origin"] == "*"


async def test_the_old_pages_public_posts_answer_any_origin(client):
    """POST …/kaspi and …/track-visit were public (the payer's page called them): their preflight
    is answered for any origin, whether or not the endpoint exists yet."""
    for action in ("kaspi", "track-visit"):
        path = f"/api/payment/{'A' * 32}/{action}"
        r = await client.options(path, headers=preflight(ELSEWHERE, "POST", "content-type"))
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*", action


async def test_token_endpoints_answer_no_cors_by_default(client, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    token_endpoints = [
        ("GET", "/api/transactions"),
        ("POST", "/api/payment/init"),
        ("POST", f"/api/payment/{pid}/cancel"),
    ]
    for method, path in token_endpoints:
        r = await client.options(path, headers=preflight(SHOP, method))
        assert r.status_code >= 400, (method, path, r.status_code)
        assert_no_cors(r)
    r = await client.get("/api/transactions", headers={"Origin": SHOP, **merchant.headers})
    assert r.status_code == 200
    assert_no_cors(r)
    # GET on a payment's own sub-resource that needs the token is not the public read.
    r = await client.options(f"/api/payment/{pid}/webhooks", headers=preflight(SHOP, "GET"))
    assert_no_cors(r)


async def test_token_endpoints_answer_the_listed_origins_only(shop_client, merchant: MerchantCreds):
    client = shop_client
    r = await client.options("/api/payment/init", headers=preflight(SHOP, "POST", "x-api-token, content-type"))
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in r.headers["vary"]
    assert "access-control-allow-credentials" not in r.headers
    r = await client.post("/api/payment/init", json={"amount": 500}, headers={"Origin": SHOP, **merchant.headers})
    assert r.status_code == 201 and r.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in r.headers["vary"] and "access-control-allow-credentials" not in r.headers
    r = await client.get("/api/transactions", headers={"Origin": "http://localhost:8080", **merchant.headers})
    assert r.headers["access-control-allow-origin"] == "http://localhost:8080"

    r = await client.options("/api/payment/init", headers=preflight(ELSEWHERE, "POST"))
    assert r.status_code == 400  # Starlette's answer: "Disallowed CORS origin", no Allow-Origin
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/api/transactions", headers={"Origin": ELSEWHERE, **merchant.headers})
    assert r.status_code == 200  # the browser withholds it from the page: no Allow-Origin
    assert_no_cors(r)
    assert "Origin" in r.headers["vary"]  # a shared cache must not hand SHOP's answer to others

    # The public endpoints still answer everyone.
    r = await client.options(f"/api/payment/{'A' * 32}/status", headers=preflight(ELSEWHERE, "GET"))
    assert r.headers["access-control-allow-origin"] == "*"


async def test_any_origin_for_token_endpoints_is_still_without_credentials(ctx, merchant):
    ctx.settings.cors_origins = "*"
    transport = httpx.ASGITransport(app=create_app(ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://pay.test") as client:
        r = await client.options("/api/transactions", headers=preflight(ELSEWHERE, "GET"))
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        r = await client.get("/api/transactions", headers={"Origin": ELSEWHERE, "Cookie": "a=b", **merchant.headers})
        assert r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers


async def test_pages_outside_the_api_answer_no_cors(client, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    r = await client.get(f"/pay/{pid}", headers={"Origin": ELSEWHERE})
    assert r.status_code == 200
    assert_no_cors(r)
    assert_no_cors(await client.options("/admin/login", headers=preflight(ELSEWHERE, "POST")))


@pytest.mark.parametrize("value", ["https://shop.kz/", "https://shop.kz/pay", "shop.kz", "https://Shop.kz", "ftp://a"])
def test_origins_must_be_origins(value: str) -> None:
    with pytest.raises(ValidationError, match="not an origin"):
        Settings(cors_origins=f"https://ok.kz,{value}", _env_file=None)  # type: ignore[call-arg]


def test_origins_are_a_comma_separated_list() -> None:
    settings = Settings(cors_origins=" https://a.kz, http://127.0.0.1:8080 ,,http://[::1]:3000", _env_file=None)  # type: ignore[call-arg]
    assert settings.cors_origin_list == ["https://a.kz", "http://127.0.0.1:8080", "http://[::1]:3000"]
    assert Settings(_env_file=None).cors_origin_list == []  # type: ignore[call-arg]


def test_the_public_table_agrees_with_the_api_document(app: Any) -> None:
    """Every operation of /api/ without a token (no security in /openapi.json) answers any origin,
    and no operation that takes the token does: a new public endpoint that is missing from
    paycenter.cors, or a public one made to take the token, fails here."""
    seen = 0
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/api/"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "0123456789ABCDEF0123456789ABCDEF", path)
        for method, operation in operations.items():
            public = not operation.get("security")
            assert is_public(method.upper(), concrete) == public, f"{method.upper()} {path}: public={public}"
            seen += 1
    assert seen >= 10
