"""The merchant API answers exactly as recorded: a fixed list of requests (init, the public and the
authenticated reads, cancel, refund, the payer's calls, the event feed; both API versions; the
refusals) is sent through the app, and every answer (status, all headers, the body's bytes) must be
what ``recorded/responses.json`` holds, on every backend: one recording for all of them, so an
answer that depends on the database fails too.

Random values (payment ids, prefixed ids, generated request ids) are replaced by placeholders,
and nothing else (``kit.recorded`` says how); the app's clock is frozen at ``START`` and moved by
``STEP`` before each request, so times are recorded as they are.

An intended change of an answer is re-recorded, and the diff of the recording reviewed:

    PAYCENTER_RECORD=1 .venv/bin/pytest tests/api/test_recorded_responses.py -p no:cacheprovider

(the first backend writes the file; the others, in the same run, are compared with it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from kit.api import SEED_BODY, MerchantCreds, make_merchant
from kit.clock import Clock
from kit.recorded import Call, Normaliser, differences, dumps, key, send
from paycenter import versions
from paycenter.app import create_app
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants
from paycenter.merchants.models import Merchant
from paycenter.providers.registry import Providers
from paycenter.ratelimit import WINDOW

RECORDING = Path(__file__).parent / "recorded" / "responses.json"
RECORD = os.environ.get("PAYCENTER_RECORD") == "1"
START = datetime(2026, 12, 1, 8, 59, 30, 250000, tzinfo=UTC)  # 13:59:30 in Almaty
STEP = timedelta(seconds=1, microseconds=1000)
ORIGIN = "https://shop.example"  # the one origin PAYCENTER_CORS_ORIGINS lists
EVIL = "https://evil.example"
UNKNOWN_ID = "0123456789ABCDEF0123456789ABCDEF"  # well formed, never created
_recorded_in_this_run: list[dict[str, Any]] = []


@dataclass
class Do:
    """A change between requests (a token revoked, a limit lowered), recorded by its name."""

    name: str
    act: Callable[[Run], Awaitable[None]]


@dataclass
class Run:
    db: Database
    ctx: AppContext
    clock: Clock
    creds: dict[str, MerchantCreds]


def body(value: Any, **changes: Any) -> str:
    return json.dumps({**value, **changes} if isinstance(value, dict) else value, ensure_ascii=False)


SEED = body(SEED_BODY)
SHOP = {"X-API-Token": "<token:shop>"}
OLD = {"X-API-Token": "<token:old_shop>"}
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CURRENT = {**SHOP, **JSON}
LEGACY = {**OLD, **JSON}
INIT = "/api/payment/init"
AS_LEGACY = {versions.HEADER: versions.LEGACY}
FULL = body(
    SEED_BODY,
    amount="1250.50",
    description='Заказ №7 "подарок" <b>&</b> \\ / ✓',
    metadata={"order_id": "ORD-7", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}], "note": None, "ok": True},
    customer_phone="+77011234567",
    customer_email="buyer@example.com",
    customer_name="Айгуль",
    expires_in=900,
    success_url="https://shop.example/ok?order=7",
    fail_url="https://shop.example/fail?order=7",
    language="kk",
    provider="sandbox",
)
GOLD = body({"payment_method": "kaspi_gold"})
BITCOIN = body({"payment_method": "bitcoin"})
# As PHP's json_encode writes it: every non-ASCII character and slash escaped.
PHP_SEED = json.dumps(SEED_BODY).replace("/", "\\/")


async def _revoke(run: Run) -> None:
    async with run.db.transaction() as session:
        await merchants.revoke_token(session, token_id=run.creds["revoked"].token_id, now=utcnow())


async def _deactivate(run: Run) -> None:
    async with run.db.transaction() as session:
        await session.execute(
            update(Merchant).where(Merchant.id == run.creds["inactive"].merchant_id).values(is_active=False)
        )


async def _low_limits(run: Run) -> None:
    now = run.clock()
    run.clock.frozen, run.clock.offset = now.replace(second=0, microsecond=0) + timedelta(seconds=WINDOW), timedelta()
    run.ctx.settings.rate_limit_ip_per_minute = 1
    run.ctx.settings.rate_limit_token_per_minute = 1


def _init(name: str, content: str | bytes | None, headers: dict[str, str] = CURRENT, **kw: Any) -> Call:
    return Call(f"init: {name}", "POST", INIT, headers, content, **kw)


def get(name: str, path: str, headers: dict[str, str] | None = None) -> Call:
    return Call(name, "GET", path, headers or {})


def post(name: str, path: str, headers: dict[str, str] | None = None, content: str | None = None) -> Call:
    return Call(name, "POST", path, headers or {}, content)


def _bad_init(name: str, **changes: Any) -> list[Call]:
    """A refused init body, for a current and a legacy merchant (422 and 400)."""
    content = body(SEED_BODY, **changes)
    return [_init(f"{name} (current)", content), _init(f"{name} (legacy)", content, LEGACY)]


# <payment:N> is the N-th payment id that answers showed, in order (kit.recorded.Normaliser): 1-9
# are the shop's (9 answered in the legacy version, by the header), 10-13 the old shop's.
SCENARIO: list[Call | Do] = [
    # --- init, current version ------------------------------------------------------------------
    _init("seed body, no Idempotency-Key", SEED),
    _init("with Idempotency-Key", SEED, {**CURRENT, "Idempotency-Key": "order-1001"}),
    _init("replay of the same key and body", SEED, {**CURRENT, "Idempotency-Key": "order-1001"}),
    _init("same key, another body: 409", body(SEED_BODY, amount=600), {**CURRENT, "Idempotency-Key": "order-1001"}),
    _init("every optional field", FULL),
    _init("PHP's json_encode escaping, form-urlencoded type", PHP_SEED, {**CURRENT, **FORM}),
    _init("no Content-Type", SEED, SHOP),
    _init("no Content-Type, legacy", SEED, OLD),
    _init(
        "charset in Content-Type, own X-Request-ID",
        SEED,
        {**CURRENT, "Content-Type": "application/json; charset=utf-8", "X-Request-ID": "merchant-req-42"},
    ),
    _init("amount as a decimal string, only the amount", body({"amount": "99.90"})),
    _init("token with spaces around it", body({"amount": 1}), {**CURRENT, "X-API-Token": "  <token:shop>  "}),
    post("init: trailing slash", INIT + "/", CURRENT, SEED),
    post("init: Paycenter-Version legacy on a current merchant", INIT, {**CURRENT, **AS_LEGACY}, SEED),
    # --- init, legacy version ---------------------------------------------------------------------
    _init("legacy merchant", SEED, LEGACY),
    _init("legacy merchant, PHP's curl (form type, escaped JSON)", PHP_SEED, {**LEGACY, **FORM}),
    _init("legacy merchant with Idempotency-Key", SEED, {**LEGACY, "Idempotency-Key": "old-1"}),
    _init("legacy replay", SEED, {**LEGACY, "Idempotency-Key": "old-1"}),
    _init("legacy same key, another body", body(SEED_BODY, amount=1), {**LEGACY, "Idempotency-Key": "old-1"}),
    _init("legacy merchant asking for the current version", SEED, {**LEGACY, "Paycenter-Version": versions.CURRENT}),
    # --- refused bodies ---------------------------------------------------------------------------
    *_bad_init("amount 0", amount=0),
    *_bad_init("negative amount", amount=-5),
    *_bad_init("amount not a number", amount="abc"),
    *_bad_init("three decimals", amount=1.234),
    *_bad_init("amount over the maximum", amount=100000001),
    *_bad_init("amount true", amount=True),
    *_bad_init("amount with an exponent string", amount="1e3"),
    *_bad_init("amount null", amount=None),
    _init("amount missing", body({"currency": "KZT"})),
    *_bad_init("unknown currency", currency="XXX"),
    *_bad_init("metadata a string", metadata="x"),
    *_bad_init("webhook_url a number", webhook_url=5),
    *_bad_init("webhook_url on localhost", webhook_url="http://localhost/hook"),
    *_bad_init("expires_in too short", expires_in=1),
    *_bad_init("unknown language", language="fr"),
    *_bad_init("unknown provider", provider="paypal"),
    *_bad_init("description too long", description="x" * 1001),
    _init("unknown fields only", body({"amount": 10, "colour": "red", "nested": {"a": 1}})),
    _init("amount as an exponent number", '{"amount": 1e3}'),
    _init("amount 1e400", '{"amount": 1e400}'),
    _init("amount NaN", '{"amount": NaN}'),
    _init("amount Infinity", '{"amount": Infinity}'),
    _init("duplicate key", '{"amount": 5, "amount": 7}'),
    _init("lone surrogate in description", '{"amount": 5, "description": "a\\ud800b"}'),
    _init("NUL in description", '{"amount": 5, "description": "a\\u0000b"}'),
    _init("not JSON", "amount=500&currency=KZT"),
    _init("not JSON, legacy", "amount=500&currency=KZT", LEGACY),
    _init("truncated JSON", '{"amount": 5'),
    _init("empty body", ""),
    _init("empty body, legacy", "", LEGACY),
    _init("JSON null", "null"),
    _init("JSON array", "[]"),
    _init("JSON number", "5"),
    _init("JSON string", '"x"'),
    _init("invalid UTF-8", b'{"amount": 5, "description": "\xff\xfe"}'),
    _init("UTF-8 BOM", "\ufeff" + SEED),
    _init("nested 5000 deep", '{"amount": 5, "metadata": ' + "[" * 5000 + "]" * 5000 + "}"),
    _init("form body declared as a form", "amount=500", {**CURRENT, **FORM}),
    _init("multipart type, JSON body", SEED, {**CURRENT, "Content-Type": "multipart/form-data"}),
    _init("Idempotency-Key too long", SEED, {**CURRENT, "Idempotency-Key": "k" * 256}),
    _init("Idempotency-Key empty", SEED, {**CURRENT, "Idempotency-Key": ""}),
    _init("X-Request-ID the app refuses", SEED, {**CURRENT, "X-Request-ID": "not a sane id; " + "x" * 200}),
    _init("unknown Paycenter-Version", SEED, {**CURRENT, "Paycenter-Version": "2019-01-01"}),
    # --- size --------------------------------------------------------------------------------------
    _init("body over the limit, declared", body(SEED_BODY, description="x" * 70000)),
    _init("body over the limit, streamed", body(SEED_BODY, description="x" * 70000), chunked=True),
    _init("streamed body under the limit", SEED, chunked=True),
    # --- authentication ------------------------------------------------------------------------------
    _init("no token", SEED, JSON),
    _init("empty token", SEED, {**CURRENT, "X-API-Token": ""}),
    _init("unknown token", SEED, {**CURRENT, "X-API-Token": "pc_live_unknown"}),
    _init("token over 200 characters", SEED, {**CURRENT, "X-API-Token": "t" * 201}),
    Do("revoke the token of 'revoked'", _revoke),
    _init("revoked token", SEED, {**CURRENT, "X-API-Token": "<token:revoked>"}),
    Do("deactivate merchant 'inactive'", _deactivate),
    _init("deactivated merchant", SEED, {**CURRENT, "X-API-Token": "<token:inactive>"}),
    get("legacy transactions, no token", "/api/transactions", AS_LEGACY),
    # --- methods and paths -------------------------------------------------------------------------
    get("GET on init (a payment named 'init')", INIT, SHOP),
    get("unknown API path", "/api/nothing-here", SHOP),
    Call(
        "CORS preflight",
        "OPTIONS",
        INIT,
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-token, content-type, idempotency-key",
        },
    ),
    Call(
        "CORS preflight, other origin",
        "OPTIONS",
        INIT,
        {"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    ),
    get("CORS read", "/api/payment/<payment:1>", {"Origin": ORIGIN}),
    # --- public reads ------------------------------------------------------------------------------
    get("public read", "/api/payment/<payment:1>"),
    get("public status", "/api/payment/<payment:1>/status"),
    get("public read of the full payment", "/api/payment/<payment:3>"),
    get("public read with its merchant's token", "/api/payment/<payment:1>", SHOP),
    get(
        "public status with another merchant's token",
        "/api/payment/<payment:1>/status",
        {"X-API-Token": "<token:other>"},
    ),
    get("public read with a bad token", "/api/payment/<payment:1>", {"X-API-Token": "nope"}),
    get("public read, lower-case id", "/api/payment/<payment:1:lower>"),
    get("public status, lower-case id", "/api/payment/<payment:1:lower>/status"),
    get("public read, id with spaces", "/api/payment/%20<payment:1>%20"),
    get("public read, trailing slash", "/api/payment/<payment:1>/"),
    get("public read, unknown id", f"/api/payment/{UNKNOWN_ID}"),
    get("public status, unknown id", f"/api/payment/{UNKNOWN_ID}/status"),
    get("public read, unknown id, legacy header", f"/api/payment/{UNKNOWN_ID}", AS_LEGACY),
    get("public read, malformed id", "/api/payment/not-an-id"),
    get("public read, id too long", "/api/payment/" + "A" * 300),
    get("public read, non-ASCII id", "/api/payment/%D0%B6"),
    get("public read of a legacy payment", "/api/payment/<payment:11>"),
    get("public status of a legacy payment", "/api/payment/<payment:11>/status"),
    get(
        "public read of a legacy payment, current header",
        "/api/payment/<payment:11>",
        {"Paycenter-Version": versions.CURRENT},
    ),
    get("public read, unknown version header", "/api/payment/<payment:1>", {"Paycenter-Version": "nope"}),
    # --- the payer's calls --------------------------------------------------------------------------
    get("payment methods, no token (legacy rendering)", "/api/payment-methods"),
    get("active payment methods, current token", "/api/payment-methods/active", SHOP),
    post("track visit", "/api/payment/<payment:1>/track-visit"),
    post("track visit, legacy payment", "/api/payment/<payment:11>/track-visit"),
    post("track visit, unknown id", f"/api/payment/{UNKNOWN_ID}/track-visit"),
    post("kaspi start on a sandbox payment", "/api/payment/<payment:2>/kaspi", JSON, GOLD),
    post("kaspi start, legacy payment", "/api/payment/<payment:12>/kaspi", JSON, "{}"),
    post("kaspi start, unknown method", "/api/payment/<payment:2>/kaspi", JSON, BITCOIN),
    post("kaspi start, unknown method, legacy", "/api/payment/<payment:12>/kaspi", JSON, BITCOIN),
    # --- paying in the sandbox (the payer's page) ----------------------------------------------------
    post("sandbox: pay payment 4 in full", "/pay/<payment:4>/sandbox", FORM, "action=pay"),
    post("sandbox: pay legacy payment 13 in full", "/pay/<payment:13>/sandbox", FORM, "action=pay"),
    get("public read of a paid payment", "/api/payment/<payment:4>"),
    get("public read of a paid legacy payment", "/api/payment/<payment:13>"),
    # --- authenticated reads --------------------------------------------------------------------------
    get("transactions", "/api/transactions", SHOP),
    get("transactions, first page of 3", "/api/transactions?limit=3", SHOP),
    get("transactions, next page", "/api/transactions?limit=3&cursor=1796115644324000.<payment:22>", SHOP),
    get("transactions, filtered", "/api/transactions?status=paid,pending&order_id=ORD-7&amount_from=1000", SHOP),
    get("transactions, by Almaty day", "/api/transactions?date_from=2026-12-01&date_to=2026-12-01&limit=1", SHOP),
    get("transactions, unknown parameter", "/api/transactions?colour=red", SHOP),
    get("transactions, bad status", "/api/transactions?status=lost", SHOP),
    get("transactions, limit 0", "/api/transactions?limit=0", SHOP),
    get("transactions, bad cursor", "/api/transactions?cursor=xyz", SHOP),
    get("transactions, bad date", "/api/transactions?date_from=2026-02-30", SHOP),
    get("transactions, no token", "/api/transactions"),
    get("transactions, trailing slash", "/api/transactions/?limit=1", SHOP),
    get("transactions from the listed origin (CORS)", "/api/transactions?limit=1", {**SHOP, "Origin": ORIGIN}),
    get("transactions from another origin (CORS)", "/api/transactions?limit=1", {**SHOP, "Origin": EVIL}),
    get("transaction, legacy header on a current merchant", "/api/transaction/<payment:3>", {**SHOP, **AS_LEGACY}),
    Call("HEAD of a public read", "HEAD", "/api/payment/<payment:1>"),
    Call(
        "CORS preflight of a public read, any origin",
        "OPTIONS",
        "/api/payment/<payment:1>/status",
        {"Origin": EVIL, "Access-Control-Request-Method": "GET"},
    ),
    get("legacy transactions", "/api/transactions", OLD),
    get(
        "legacy transactions, old filters",
        "/api/transactions?status=paid&limit=5&offset=0&amount_from=100&date_from=2026-12-01",
        OLD,
    ),
    get("legacy transactions, empty filters, offset 1", "/api/transactions?status=&date_from=0&limit=2&offset=1", OLD),
    get("legacy transactions, bad limit", "/api/transactions?limit=abc", OLD),
    get("transaction", "/api/transaction/<payment:3>", SHOP),
    get("transaction, paid", "/api/transaction/<payment:4>", SHOP),
    get("transaction, lower-case id", "/api/transaction/<payment:1:lower>", SHOP),
    get("transaction of another merchant", "/api/transaction/<payment:1>", {"X-API-Token": "<token:other>"}),
    get("transaction, unknown id", f"/api/transaction/{UNKNOWN_ID}", SHOP),
    get("transaction, malformed id", "/api/transaction/zzz", SHOP),
    get("transaction, no token", "/api/transaction/<payment:1>"),
    get("transaction, revoked token", "/api/transaction/<payment:1>", {"X-API-Token": "<token:revoked>"}),
    get("legacy transaction", "/api/transaction/<payment:11>", OLD),
    get("legacy transaction, paid", "/api/transaction/<payment:13>", OLD),
    get("legacy transaction, unknown id", f"/api/transaction/{UNKNOWN_ID}", OLD),
    get("statistics", "/api/statistics", SHOP),
    get("statistics, bad date", "/api/statistics?created_from=yesterday", SHOP),
    get("legacy statistics", "/api/statistics", OLD),
    get("webhook log", "/api/payment/<payment:4>/webhooks", SHOP),
    get("events", "/api/events", SHOP),
    get("events, legacy merchant", "/api/events?limit=5", OLD),
    # --- cancel --------------------------------------------------------------------------------------
    post("cancel", "/api/payment/<payment:5>/cancel", CURRENT, body({"reason": "customer asked"})),
    post("cancel again: 409", "/api/payment/<payment:5>/cancel", CURRENT, "{}"),
    post(
        "cancel with a key, no body",
        "/api/payment/<payment:6>/cancel",
        {"X-API-Token": "<token:shop>", "Idempotency-Key": "cancel-6"},
    ),
    post(
        "cancel replay",
        "/api/payment/<payment:6>/cancel",
        {"X-API-Token": "<token:shop>", "Idempotency-Key": "cancel-6"},
    ),
    post("cancel a paid payment: 409", "/api/payment/<payment:4>/cancel", CURRENT, "{}"),
    post("cancel, unknown id", f"/api/payment/{UNKNOWN_ID}/cancel", CURRENT, "{}"),
    post(
        "cancel another merchant's payment",
        "/api/payment/<payment:7>/cancel",
        {**CURRENT, "X-API-Token": "<token:other>"},
        "{}",
    ),
    post("cancel, unknown field", "/api/payment/<payment:7>/cancel", CURRENT, body({"why": "x"})),
    post("cancel, reason not text", "/api/payment/<payment:7>/cancel", CURRENT, body({"reason": 5})),
    post("cancel, no token", "/api/payment/<payment:7>/cancel", JSON, "{}"),
    post("legacy cancel, PHP's [] as a form", "/api/payment/<payment:11>/cancel", {**LEGACY, **FORM}, "[]"),
    post("legacy cancel again", "/api/payment/<payment:11>/cancel", LEGACY, "[]"),
    post("legacy cancel of a paid payment", "/api/payment/<payment:13>/cancel", LEGACY, "{}"),
    post("legacy cancel, unknown id", f"/api/payment/{UNKNOWN_ID}/cancel", LEGACY, "{}"),
    get("public read of a cancelled payment", "/api/payment/<payment:5>/status"),
    get("public read of a cancelled legacy payment", "/api/payment/<payment:11>"),
    get("transaction, cancelled", "/api/transaction/<payment:5>", SHOP),
    # --- refund --------------------------------------------------------------------------------------
    post(
        "refund part",
        "/api/payment/<payment:4>/refund",
        {**CURRENT, "Idempotency-Key": "refund-4a"},
        body({"amount": 100, "reason": "one item back"}),
    ),
    post(
        "refund part, replay",
        "/api/payment/<payment:4>/refund",
        {**CURRENT, "Idempotency-Key": "refund-4a"},
        body({"amount": 100, "reason": "one item back"}),
    ),
    post("refund too much", "/api/payment/<payment:4>/refund", CURRENT, body({"amount": 1000})),
    post("refund, bad amount", "/api/payment/<payment:4>/refund", CURRENT, body({"amount": -1})),
    post("refund of an unpaid payment", "/api/payment/<payment:1>/refund", CURRENT, "{}"),
    post("refund the rest", "/api/payment/<payment:4>/refund", CURRENT, "{}"),
    get("transaction, refunded", "/api/transaction/<payment:4>", SHOP),
    post("legacy refund", "/api/payment/<payment:13>/refund", LEGACY, body({"amount": 100.5})),
    get("legacy transaction, refunded", "/api/transaction/<payment:13>", OLD),
    get("statistics after all that", "/api/statistics", SHOP),
    get("legacy statistics after all that", "/api/statistics?date_from=2026-11-01&date_to=2026-12-31", OLD),
    # --- rate limits ----------------------------------------------------------------------------------
    Do("rate limits to 1 a minute, from the start of the next minute", _low_limits),
    get("public read, first of the minute", "/api/payment/<payment:1>/status"),
    get("public read, limited", "/api/payment/<payment:1>/status"),
    _init("init, first of the minute", SEED),
    _init("init, limited", SEED),
]


@pytest.fixture
async def run(database_url: str, db: Database) -> Run:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, public_url="http://pay.test", run_worker=False, cors_origins=ORIGIN
    )
    clock = Clock()
    clock.frozen = START
    ctx = AppContext(settings=settings, db=db, providers=Providers(settings, clock), clock=clock)
    names = {"shop": {}, "old_shop": {"api_version": versions.LEGACY}, "other": {}, "revoked": {}, "inactive": {}}
    creds = {name: await make_merchant(db, name=name, **kw) for name, kw in names.items()}
    return Run(db, ctx, clock, creds)


async def test_the_api_answers_as_recorded(run: Run, backend: str) -> None:
    norm = Normaliser({name: c.token for name, c in run.creds.items()}, literal={UNKNOWN_ID})
    app = create_app(ctx=run.ctx)
    entries: list[dict[str, Any]] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pay.test") as client:
        for step in SCENARIO:
            if isinstance(step, Do):
                await step.act(run)
                entries.append({"do": step.name})
                continue
            run.clock.offset += STEP
            entries.append(await send(client, norm, step))
    if RECORD and not _recorded_in_this_run:
        RECORDING.parent.mkdir(exist_ok=True)
        RECORDING.write_text(dumps(entries), encoding="utf-8")
        _recorded_in_this_run.extend(entries)
        return
    names = [key(e) for e in entries]
    assert len(set(names)) == len(names), "two steps of the scenario share a name"
    recorded = json.loads(RECORDING.read_text(encoding="utf-8"))
    replayed = json.loads(dumps(entries))  # as the file holds them (lists, not tuples)
    if replayed != recorded:
        pytest.fail(
            f"on {backend}, answers differ from {RECORDING.name}:\n{differences(recorded, replayed)}", pytrace=False
        )
