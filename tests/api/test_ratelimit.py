"""Rate limits per API token and per address, shared through the database, on every backend."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kit.api import MerchantCreds, create_payment
from kit.clock import Clock
from paycenter.db import utcnow
from paycenter.merchants import service as merchants
from paycenter.ratelimit import WINDOW, RateCounter, RateLimiter, TooManyRequests


async def test_token_limit(client, ctx, merchant, clock):
    clock.freeze()  # windows start on the minute: a slow host must not cross one mid-test
    ctx.settings.rate_limit_token_per_minute = 3
    for _ in range(3):
        assert (await client.get("/api/transactions", headers=merchant.headers)).status_code == 200
    r = await client.get("/api/transactions", headers=merchant.headers)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    clock.advance(seconds=61)  # a new window
    assert (await client.get("/api/transactions", headers=merchant.headers)).status_code == 200


async def test_public_endpoints_are_limited_per_address(client, ctx, merchant, clock):
    # Frozen: windows start on the minute, and a loaded CI host once took the three requests across
    # a boundary (the third, in a new window, was let through).
    clock.freeze()
    pid = (await create_payment(client, merchant))["transaction_id"]
    ctx.settings.rate_limit_ip_per_minute = 2
    assert (await client.get(f"/api/payment/{pid}/status")).status_code == 200
    assert (await client.get(f"/pay/{pid}")).status_code == 200
    assert (await client.get(f"/api/payment/{pid}")).status_code == 429


async def test_the_limit_holds_across_processes(db, clock):
    """Two limiters (two processes) on one database: together they stop at the limit."""
    clock.freeze()  # windows start on the minute: a slow host must not cross one mid-test
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


# --- polling, as the old docs ask: every live payment's status every second ------------------------

LIVE = 200  # payments a merchant has live at once (issue 13: "at least 200")


async def _live_payments(client: httpx.AsyncClient, merchant: MerchantCreds, n: int = LIVE) -> list[str]:
    return [(await create_payment(client, merchant))["transaction_id"] for _ in range(n)]


def _start_of_a_window(clock: Clock) -> None:
    """Freeze the app's clock at the first second of a rate limit window: each test second is then
    exactly one second of the app's, and the windows fall where the test says."""
    clock.freeze()
    clock.advance(seconds=WINDOW - clock().timestamp() % WINDOW)


async def _poll_once(client: httpx.AsyncClient, ids: list[str], headers: dict[str, str]) -> Counter[int]:
    """One second of polling: every payment's status once, ten at a time, as a poller with a few
    connections asks (the app's clock stands still meanwhile). In-process, ten at a time is about a
    fifth faster than one by one, and than 50 or 200 at once, on every backend."""
    codes: Counter[int] = Counter()
    for i in range(0, len(ids), 10):
        batch = ids[i : i + 10]
        answers = await asyncio.gather(*(client.get(f"/api/payment/{p}/status", headers=headers) for p in batch))
        codes.update(r.status_code for r in answers)
    return codes


@pytest.mark.slow  # 200 payments polled for a minute of the app's clock
async def test_200_live_payments_polled_every_second_with_one_token(app, client, db, merchant, clock):
    """200 live payments, each one's status read every second for 70 s of the app's clock (past a
    window's end), all from one address with one token and the default limits: never a 429. The
    reads are the token's, not the address's (which allows 600 a minute).

    On SQLite only: 14,000 requests per backend, none of them backend-specific; the limiter's
    counting in each database is test_the_limit_holds_across_processes's, on every backend."""
    if db.backend != "sqlite":
        pytest.skip("the limiter's policy, the same on every backend (its database sync: another test)")
    _start_of_a_window(clock)
    clock.advance(seconds=-10)  # 10 s before a window ends: the 70 s cross into the next
    ids = await _live_payments(client, merchant)
    limiter: RateLimiter = app.state.rate_limiter
    for second in range(70):
        codes = await _poll_once(client, ids, merchant.headers)
        assert codes == {200: LIVE}, f"second {second}: {dict(codes)}"
        await limiter.sync()  # what every process does once a second (the app's lifespan runs it)
        clock.advance(seconds=1)
    async with db.reading() as session:
        counted = dict((await session.execute(select(RateCounter.key, RateCounter.count))).all())
    reads = {key: n for key, n in counted.items() if key.startswith("read:")}
    assert sorted(reads.values()) == [60 * LIVE]  # the last full window, counted for the token
    assert not [key for key in counted if key.startswith("ip:")]  # the address paid for none


@pytest.mark.slow  # polls up to the per-address limit
@pytest.mark.parametrize("token", ["none", "made-up", "revoked"])
async def test_polling_without_a_valid_token_is_limited_per_address(client, db, merchant, clock, token):
    """The same polling with no token, a made-up one or a revoked one is the address's: 600 reads
    a minute, then 429 until the window ends."""
    _start_of_a_window(clock)
    ids = await _live_payments(client, merchant)
    headers: dict[str, Any] = {}
    if token == "made-up":
        headers = {"X-API-Token": "f" * 64}
    elif token == "revoked":
        async with db.transaction() as session:
            await merchants.revoke_token(session, token_id=merchant.token_id, now=utcnow())
        headers = merchant.headers
    seconds = []
    for _ in range(4):
        seconds.append(await _poll_once(client, ids, headers))
        clock.advance(seconds=1)
    assert seconds == [{200: LIVE}] * 3 + [{429: LIVE}]
    clock.advance(seconds=WINDOW)
    assert await _poll_once(client, ids[:1], headers) == {200: 1}


async def test_token_reads_have_a_limit_of_their_own(client, ctx, merchant, clock):
    clock.freeze()  # windows start on the minute: a slow host must not cross one mid-test
    """Reads of one payment with a token (the public reads and /api/transaction/{id} alike) count
    against the token's read limit, and leave its other limit and the address's alone."""
    pid = (await create_payment(client, merchant))["transaction_id"]
    ctx.settings.rate_limit_token_reads_per_minute = 4
    ctx.settings.rate_limit_token_per_minute = 3
    ctx.settings.rate_limit_ip_per_minute = 1
    reads = [f"/api/payment/{pid}", f"/api/payment/{pid}/status", f"/api/transaction/{pid}"]
    codes = [(await client.get(path, headers=merchant.headers)).status_code for path in reads * 2]
    assert codes == [200] * 4 + [429] * 2
    assert (await client.get("/api/transactions", headers=merchant.headers)).status_code == 200
    assert (await client.get(f"/api/payment/{pid}/status")).status_code == 200  # the address's one


async def test_a_revoked_token_counts_as_none_a_second_later(client, db, ctx, merchant, clock):
    """Public reads take a token found valid in the last second at its word (one lookup a second
    for a poller): once revoked, its reads are the address's again from the next second on."""
    clock.freeze()
    pid = (await create_payment(client, merchant))["transaction_id"]
    ctx.settings.rate_limit_ip_per_minute = 1
    assert (await client.get(f"/api/payment/{pid}", headers=merchant.headers)).status_code == 200
    async with db.transaction() as session:
        await merchants.revoke_token(session, token_id=merchant.token_id, now=utcnow())
    assert (await client.get(f"/api/payment/{pid}", headers=merchant.headers)).status_code == 200  # the token's
    assert (await client.get("/api/transactions", headers=merchant.headers)).status_code == 401  # no cache here
    clock.advance(seconds=1)
    codes = [(await client.get(f"/api/payment/{pid}", headers=merchant.headers)).status_code for _ in range(2)]
    assert codes == [200, 429]  # the address's one a minute
