"""Rate limits per API token and per address, shared through the database, on every backend."""

from __future__ import annotations

import pytest

from conftest import create_payment
from paycenter.ratelimit import RateLimiter, TooManyRequests


async def test_token_limit(client, ctx, merchant, clock):
    ctx.settings.rate_limit_token_per_minute = 3
    for _ in range(3):
        assert (await client.get("/api/transactions", headers=merchant.headers)).status_code == 200
    r = await client.get("/api/transactions", headers=merchant.headers)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    clock.advance(seconds=61)  # a new window
    assert (await client.get("/api/transactions", headers=merchant.headers)).status_code == 200


async def test_public_endpoints_are_limited_per_address(client, ctx, merchant):
    pid = (await create_payment(client, merchant))["transaction_id"]
    ctx.settings.rate_limit_ip_per_minute = 2
    assert (await client.get(f"/api/payment/{pid}/status")).status_code == 200
    assert (await client.get(f"/pay/{pid}")).status_code == 200
    assert (await client.get(f"/api/payment/{pid}")).status_code == 429


async def test_the_limit_holds_across_processes(db, clock):
    """Two limiters (two processes) on one database: together they stop at the limit."""
    a, b = RateLimiter(db, clock=clock), RateLimiter(db, clock=clock)
    for _ in range(3):
        a.hit("token:shared", 5)
    await a.sync()
    b.hit("token:shared", 5)
    b.hit("token:shared", 5)
    await b.sync()  # b learns: 3 (a) + 2 (b) = 5
    with pytest.raises(TooManyRequests):
        b.hit("token:shared", 5)
    await a.sync()
    with pytest.raises(TooManyRequests):
        a.hit("token:shared", 5)
    clock.advance(seconds=61)
    a.hit("token:shared", 5)  # a new window starts from zero
    await a.sync()
