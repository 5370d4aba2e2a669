"""The admin panel over HTTP: login, sessions, CSRF, roles, every action and its audit record,
the transaction list (filters, pages, CSV) and the dashboard's figures, on every backend."""

from __future__ import annotations

import csv
import html
import io
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update

from kit.admin import CSRF, Operator, act, by_testid, csrf_of, flash, login, new_user, redirected_to, signed_in, text_of
from kit.api import MerchantCreds, create_payment, make_merchant, sandbox
from kit.clock import Clock
from kit.db import BACKENDS, SERVER_URLS, _drop_server_database, _fresh_server_database
from paycenter import versions
from paycenter.db import Base, Database, new_id, new_payment_id
from paycenter.merchants.models import ApiToken, Merchant
from paycenter.operators import service as admins
from paycenter.operators.models import AdminSession, AdminUser, AuditEntry, LoginThrottle, Role
from paycenter.payments.models import Payment, PaymentStatus, Refund
from paycenter.providers import terminals
from paycenter.providers.models import Terminal
from paycenter.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus

ALMATY = ZoneInfo("Asia/Almaty")
ROW_LINK = re.compile(r'href="/admin/transactions/([0-9A-F]{32})"')


# --- kit -----------------------------------------------------------------------------------------


@pytest.fixture
async def viewer(db: Database, clock: Clock) -> Operator:
    return await new_user(db, clock, "auditor", Role.VIEWER)


Browsers = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def browsers(app: Any) -> AsyncIterator[Browsers]:
    """More cookie jars on the same app: other people, other sessions, other addresses."""
    made: list[httpx.AsyncClient] = []

    async def make(ip: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 5555))
        c = httpx.AsyncClient(transport=transport, base_url="http://pay.test")
        made.append(c)
        return c

    yield make
    for c in made:
        await c.aclose()


async def audit_rows(db: Database, action: str | None = None) -> list[AuditEntry]:
    async with db.reading() as session:
        stmt = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        return list(await session.scalars(stmt))


async def snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of every table: equal before and after proves a request changed nothing.
    (Less a session's last_seen_at, which any page view may touch.)"""
    out = {}
    async with db.reading() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.c if (table.name, c.name) != ("admin_sessions", "last_seen_at")]
            rows = (await session.execute(select(*columns))).all()
            out[table.name] = sorted(repr(tuple(row)) for row in rows)
    return out


async def get_payment(db: Database, pid: str) -> Payment:
    async with db.reading() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        return payment


async def get_row(db: Database, model: Any, key: str) -> Any:
    async with db.reading() as session:
        return await session.get(model, key)


def listed(page: str) -> list[str]:
    return list(dict.fromkeys(ROW_LINK.findall(page)))


async def paid_payment(client: httpx.AsyncClient, creds: MerchantCreds, *, amount: float = 500, **kw: Any) -> str:
    pid = (await create_payment(client, creds, amount=amount, **kw))["transaction_id"]
    await sandbox(client, pid, checkout_id=new_id("co"))
    return pid


@dataclass
class World:
    merchant: MerchantCreds
    paid: str
    pending: str
    delivery: str
    terminal: str


@pytest.fixture
async def world(db: Database, client: httpx.AsyncClient, merchant: MerchantCreds, clock: Clock) -> World:
    """Something for every action to act on: a paid and a pending payment, a failed webhook
    delivery, a merchant with a token, a terminal."""
    paid = await paid_payment(client, merchant, webhook_url="https://shop.example/hooks")
    pending = (await create_payment(client, merchant))["transaction_id"]
    async with db.transaction() as session:
        delivery = await session.scalar(select(Delivery).where(Delivery.payment_id == paid))
        assert delivery is not None
        delivery.status, delivery.attempt_count, delivery.next_attempt_at = DeliveryStatus.FAILED, 4, None
        terminal = await terminals.add(
            session, name="till-1", base_url="https://127.0.0.1:9", access_token="t", camera_url=None, now=clock()
        )
    return World(merchant, paid, pending, delivery.id, terminal.id)


def actions(w: World) -> list[tuple[str, dict[str, str]]]:
    """Every change the panel can make, with a form that would make it."""
    m = w.merchant.merchant_id
    return [
        (f"/admin/transactions/{w.paid}/refund", {"amount": "100"}),
        (f"/admin/transactions/{w.paid}/refund", {}),
        (
            f"/admin/transactions/{w.paid}/manual-refund",
            {"amount": "100", "note": "forged", "submission_id": "forged-submission-0123456789"},
        ),
        (f"/admin/transactions/{w.pending}/cancel", {}),
        (f"/admin/deliveries/{w.delivery}/resend", {"next": f"/admin/transactions/{w.paid}"}),
        ("/admin/webhooks/resend-failed", {"since": "2000-01-01T00:00"}),
        ("/admin/merchants", {"name": "Forged shop", "webhook_url": "https://evil.example/h"}),
        (f"/admin/merchants/{m}/webhook-url", {"webhook_url": "https://evil.example/h"}),
        (f"/admin/merchants/{m}/rotate-secret", {}),
        (f"/admin/merchants/{m}/api-version", {"api_version": "legacy"}),
        (f"/admin/merchants/{m}/tolerance", {"underpayment_tolerance": "999"}),
        (f"/admin/merchants/{m}/tokens", {"name": "forged"}),
        (f"/admin/tokens/{w.merchant.token_id}/revoke", {}),
        ("/admin/terminals", {"name": "till-2", "base_url": "https://10.0.0.2:8080", "access_token": "x"}),
        (f"/admin/terminals/{w.terminal}/disable", {}),
        (f"/admin/terminals/{w.terminal}/check", {}),
        ("/admin/quarantine/retry", {"loop": "expirer", "row_id": w.pending}),
        ("/admin/quarantine/retry", {"all": "1"}),
    ]


PAGES = [
    "/admin",
    "/admin/transactions",
    "/admin/transactions.csv",
    "/admin/webhooks",
    "/admin/webhooks?status=failed",
    "/admin/merchants",
    "/admin/terminals",
    "/admin/audit",
    "/admin/quarantine",
    "/admin/settings",
]


# --- login, cookie, redirects ----------------------------------------------------------------


async def test_login_sets_a_strict_http_only_cookie_for_the_panel_only(client, db, admin, clock):
    r = await login(client, admin, password="not it")
    assert r.status_code == 401
    assert not [c for c in r.headers.get_list("set-cookie") if c.startswith("pc_admin=")]  # no session
    assert "Неверный логин или пароль." in by_testid(r.text, "login-error")
    r = await login(client, Operator("nobody", "x"))
    assert r.status_code == 401

    r = await login(client, admin, next="/admin/merchants")
    assert redirected_to(r) == "/admin/merchants"
    (cookie,) = [c for c in r.headers.get_list("set-cookie") if c.startswith("pc_admin=")]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes, cookie
    assert attributes["samesite"].lower() == "samesite=strict", cookie
    assert attributes["path"] == "Path=/admin", cookie
    assert "secure" not in attributes  # plain http here; https sets it
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 40

    page = await client.get("/admin")
    assert page.status_code == 200
    assert by_testid(page.text, "me") == "boss · администратор"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    # The cookie is not sent outside /admin, and the database keeps only its hash.
    async with db.reading() as session:
        (stored,) = list(await session.scalars(select(AdminSession)))
    assert stored.id != token and token not in stored.id
    assert [(a.actor, a.action) for a in await audit_rows(db)] == [
        ("boss", "login_failed"),
        ("nobody", "login_failed"),
        ("boss", "login"),
    ]


async def test_pages_redirect_to_login_and_back(client, world, admin):
    pages = [*PAGES, f"/admin/transactions/{world.paid}"]
    for path in pages:
        r = await client.get(path)
        location = redirected_to(r)
        assert location.startswith("/admin/login?next="), (path, location)
        assert parse_qs(urlsplit(location).query)["next"] == [path], (path, location)

    # A deep link with several parameters survives the detour through the login page whole.
    deep = f"/admin/transactions?status=paid&merchant={world.merchant.merchant_id}&q=a b"
    r = await client.get(deep)
    next_url = parse_qs(urlsplit(redirected_to(r)).query)["next"][0]
    page = await client.get("/admin/login", params={"next": next_url})
    hidden = re.search(r'name="next" value="([^"]*)"', page.text)
    assert hidden and html.unescape(hidden.group(1)) == next_url
    r = await login(client, admin, next=html.unescape(hidden.group(1)))
    assert redirected_to(r) == next_url
    listing = await client.get(next_url)
    assert listing.status_code == 200
    assert 'value="a b"' in listing.text
    assert re.search(r'<option selected>paid</option>|<option selected="?selected"?>paid', listing.text)


async def test_unauthenticated_actions_change_nothing(client, db, world):
    before = await snapshot(db)
    for path, data in [*actions(world), ("/admin/logout", {})]:
        r = await client.post(path, data={**data, "csrf_token": "x"})
        assert redirected_to(r).startswith("/admin/login"), path
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "evil",
    [
        "https://evil.example/admin",
        "//evil.example/admin",
        "/\\evil.example",
        "javascript:alert(1)",
        "http:/admin",
        "/pay/x",
        "",
    ],
)
async def test_login_never_redirects_off_the_panel(client, admin, evil):
    page = await client.get("/admin/login", params={"next": evil})
    assert 'name="next" value="/admin"' in page.text
    r = await login(client, admin, next=evil)
    assert redirected_to(r) == "/admin"


# --- CSRF and roles ------------------------------------------------------------------------------


async def test_every_action_needs_this_sessions_csrf_token(client, db, world, admin, browsers):
    await signed_in(client, admin)
    other = await signed_in(await browsers(), admin)
    other_token = await csrf_of(other)
    assert other_token != await csrf_of(client)
    before = await snapshot(db)
    for path, data in [*actions(world), ("/admin/logout", {})]:
        for token in (None, "", other_token, (await csrf_of(client))[:-1]):
            form = dict(data) if token is None else {**data, "csrf_token": token}
            r = await client.post(path, data=form)
            assert r.status_code == 403, (path, token, r.status_code, r.text[:300])
            assert "CSRF" in by_testid(r.text, "forbidden")
    assert await snapshot(db) == before
    # Both sessions are still alive: a refused logout ended nothing.
    assert (await client.get("/admin")).status_code == 200
    assert (await other.get("/admin")).status_code == 200


async def test_a_viewer_reads_everything_and_changes_nothing(client, db, world, viewer):
    await signed_in(client, viewer)
    for path in [*PAGES, f"/admin/transactions/{world.paid}"]:
        r = await client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        if "html" in r.headers["content-type"]:
            # The only form a viewer gets that posts is the logout.
            posts = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', r.text)
            assert posts == ["/admin/logout"], (path, posts)
            assert by_testid(r.text, "me") == "auditor · наблюдатель"
    detail = (await client.get(f"/admin/transactions/{world.paid}")).text
    assert 'data-testid="refund"' not in detail and 'data-testid="resend"' not in detail
    assert "Режим только для чтения." in detail

    token = await csrf_of(client)
    before = await snapshot(db)
    for path, data in actions(world):
        r = await client.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 403, (path, r.status_code, r.text[:300])
        assert by_testid(r.text, "forbidden") == "У вашей роли нет прав на это действие."
    assert await snapshot(db) == before
    # Still signed in, and may sign out.
    r = await client.post("/admin/logout", data={"csrf_token": token})
    assert redirected_to(r) == "/admin/login"


# --- throttling, idle timeout, logout -------------------------------------------------------------


async def test_five_wrong_passwords_lock_the_login(client, db, admin, clock, browsers):
    for _ in range(5):
        r = await login(client, admin, password="guess")
        assert r.status_code == 401
    r = await login(client, admin)  # the right password, too late
    assert r.status_code == 429
    assert not [c for c in r.headers.get_list("set-cookie") if c.startswith("pc_admin=")]  # no session
    assert by_testid(r.text, "login-error") == "Слишком много неудачных попыток входа. Попробуйте снова через 15 мин."
    # Locked for the username from anywhere, and for the address whatever the username.
    elsewhere = await browsers("10.9.8.7")
    assert (await login(elsewhere, admin)).status_code == 429
    other = await new_user(db, clock, "other", Role.ADMIN)
    assert (await login(client, other)).status_code == 429
    assert (await login(await browsers("10.9.8.6"), other)).status_code == 303

    clock.advance(minutes=14)
    r = await login(client, admin)
    assert r.status_code == 429
    assert by_testid(r.text, "login-error") == "Слишком много неудачных попыток входа. Попробуйте снова через 1 мин."
    clock.advance(minutes=1, seconds=1)
    r = await login(client, admin)
    assert redirected_to(r) == "/admin"
    assert (await client.get("/admin")).status_code == 200
    async with db.reading() as session:
        rows = {row.key: (row.failures, row.locked_until) for row in await session.scalars(select(LoginThrottle))}
    # A good login clears the count of its username and address (not of others).
    assert rows["user:boss"] == rows["ip:127.0.0.1"] == (0, None)
    assert rows["user:other"][0] == 0
    assert len(await audit_rows(db, "login_failed")) == 5


async def test_an_operator_locked_out_on_purpose_is_let_back_in(client, db, admin, browsers):
    """Anyone can lock a username with five guesses; `paycenter admin unlock` lifts it at once
    (and `reset-password` does too), for the username and, if asked, the address."""
    from paycenter.operators import service as admins

    attacker = await browsers("10.9.8.7")
    for _ in range(5):
        assert (await login(attacker, admin, password="guess")).status_code == 401
    assert (await login(client, admin)).status_code == 429
    async with db.transaction() as session:
        assert await admins.unlock(session, username="boss") == 1
    assert redirected_to(await login(client, admin)) == "/admin"
    assert (await login(attacker, admin)).status_code == 429  # the attacker's address stays locked
    async with db.transaction() as session:
        assert await admins.unlock(session, username="nobody", ip="10.9.8.7") == 1
    assert redirected_to(await login(attacker, admin)) == "/admin"


async def test_a_burst_of_parallel_guesses_gets_five_tries_only(client, db, admin):
    # Guesses sent all at once, as a script would: still five, then the lock.
    import asyncio

    answers = await asyncio.gather(*(login(client, admin, password=f"guess-{i}") for i in range(12)))
    assert sorted(r.status_code for r in answers) == [401] * 5 + [429] * 7
    assert (await login(client, admin)).status_code == 429
    assert len(await audit_rows(db, "login_failed")) == 5


async def test_failures_spread_over_time_do_not_lock(client, admin, clock):
    for _ in range(4):
        assert (await login(client, admin, password="guess")).status_code == 401
    clock.advance(minutes=16)  # the window has passed: counting starts again
    for _ in range(4):
        assert (await login(client, admin, password="guess")).status_code == 401
    assert (await login(client, admin)).status_code == 303


async def test_idle_sessions_end(client, db, admin, clock):
    await signed_in(client, admin)
    for _ in range(3):  # each visit within the timeout keeps the session alive
        clock.advance(minutes=29)
        assert (await client.get("/admin")).status_code == 200
    clock.advance(minutes=31)
    r = await client.get("/admin/transactions")
    assert redirected_to(r) == "/admin/login?next=/admin/transactions"


async def test_sessions_end_after_twelve_hours_however_busy(client, admin, clock):
    await signed_in(client, admin)
    for _ in range(28):  # 11 h 40 min of steady use
        clock.advance(minutes=25)
        assert (await client.get("/admin")).status_code == 200
    clock.advance(minutes=25)
    assert redirected_to(await client.get("/admin")).startswith("/admin/login")


async def test_logout_kills_the_session(client, db, admin, browsers):
    r = await login(client, admin)
    token = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    r = await act(client, "/admin/logout")
    assert redirected_to(r) == "/admin/login"
    assert 'pc_admin=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    async with db.reading() as session:
        assert list(await session.scalars(select(AdminSession))) == []
    # The old cookie, replayed, opens nothing.
    thief = await browsers()
    thief.cookies.set("pc_admin", token, domain="pay.test", path="/admin")
    assert (await client.get("/admin")).status_code == 303
    replay = await thief.get("/admin")
    assert redirected_to(replay).startswith("/admin/login")
    assert [a.action for a in await audit_rows(db)] == ["login", "logout"]


# --- actions and the audit log -------------------------------------------------------------------


async def test_refund_in_part_then_in_full(client, db, merchant, admin):
    pid = await paid_payment(client, merchant, amount=500)
    await signed_in(client, admin)
    url = f"/admin/transactions/{pid}"

    r = await act(client, f"{url}/refund", {"amount": "120,50", "reason": "damaged box"})
    assert redirected_to(r).startswith(f"{url}?notice=done&sig=")
    p = await get_payment(db, pid)
    assert (p.status, p.paid_amount, p.refunded_amount) == (PaymentStatus.PAID, 50000, 12050)

    r = await act(client, f"{url}/refund", {"amount": "400"})  # more than is left
    assert "exceeds" in flash(r)["error"][0]
    r = await act(client, f"{url}/refund", {"amount": ""})  # the rest
    assert redirected_to(r).startswith(f"{url}?notice=done&sig=")
    p = await get_payment(db, pid)
    assert (p.status, p.refunded_amount) == (PaymentStatus.REFUNDED, 50000)
    r = await act(client, f"{url}/refund", {})
    assert "already been refunded" in flash(r)["error"][0]

    async with db.reading() as session:
        made = list(await session.scalars(select(Refund).order_by(Refund.created_at, Refund.amount.desc())))
    assert sorted((x.amount, x.status, x.reason) for x in made) == [
        (12050, "succeeded", "damaged box"),
        (37950, "succeeded", "refund by boss"),
    ]
    log = await audit_rows(db, "refund")
    assert sorted((a.actor, a.target, a.details["amount"], a.details["refund_id"]) for a in log) == sorted(
        ("boss", pid, x.amount, x.id) for x in made
    )
    page = (await client.get(url)).text
    refunds_table = text_of(page.split('data-testid="refunds"')[1].split("</table>")[0])
    assert "120.50 KZT" in refunds_table and "379.50 KZT" in refunds_table
    assert by_testid(page, "refunded") == "500.00 KZT"
    assert by_testid(page, "status") == "refunded"


async def test_a_payment_without_money_cannot_be_refunded(client, db, merchant, admin):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await signed_in(client, admin)
    r = await act(client, f"/admin/transactions/{pid}/refund", {"amount": "1"})
    assert "no money" in flash(r)["error"][0]
    assert await audit_rows(db, "refund") == []


def _words(page: str, testid: str) -> tuple[str, str]:
    """An element's text, and the same without its codes (``translate="no"``): the words."""
    match = re.search(rf'<(\w+)[^>]*data-testid="{testid}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no data-testid={testid!r} in the page"
    inner = match[2]
    return text_of(inner), text_of(re.sub(r'<code translate="no">.*?</code>', " ", inner))


async def test_a_services_refusal_is_said_in_the_panels_language(client, merchant, admin):
    """The refusal comes back in the service's words (the API's English) and each page says it in
    its language: Russian and Kazakh with the data as code, English as the service wrote it."""
    pid = (await create_payment(client, merchant))["transaction_id"]
    await signed_in(client, admin)
    r = await act(client, f"/admin/transactions/{pid}/refund", {"amount": "1"})
    landing = redirected_to(r)
    ru = (await client.get(landing)).text
    assert _words(ru, "error") == (
        "Платёж в статусе pending : денег, которые можно вернуть, не поступало",
        "Платёж в статусе : денег, которые можно вернуть, не поступало",
    )
    kk = (await client.get(landing + "&lang=kk")).text
    assert _words(kk, "error")[1] == "Төлем күйінде: қайтаратын ақша түспеген"
    en = (await client.get(landing + "&lang=en")).text
    assert by_testid(en, "error") == "Payment is pending and has received no money to refund"
    # An amount the money check refuses: the field and the check's own words, both said.
    r = await act(client, f"/admin/transactions/{pid}/refund?lang=ru", {"amount": "-5"})
    shown = (await client.get(redirected_to(r) + "&lang=ru")).text
    said, words = _words(shown, "error")
    assert re.search("[а-я]", words) and not re.search("[A-Za-z]", words), said
    # A form's refusal shown on the page itself (a payment link the link service refuses).
    form = {"merchant_id": merchant.merchant_id, "kind": "one_off", "amount": "0", "description": "x"}
    r = await act(client, "/admin/links?lang=kk", form)
    assert r.status_code == 422
    said, words = _words(r.text, "form-error")
    assert re.search("[әғқңөұүһі]", words) and not re.search("[A-Za-z]", words), said


async def test_cancel(client, db, merchant, admin):
    pid = (await create_payment(client, merchant))["transaction_id"]
    await signed_in(client, admin)
    r = await act(client, f"/admin/transactions/{pid}/cancel")
    assert redirected_to(r).startswith(f"/admin/transactions/{pid}?notice=done&sig=")
    assert (await get_payment(db, pid)).status == PaymentStatus.CANCELLED
    r = await act(client, f"/admin/transactions/{pid}/cancel")
    assert "can no longer be cancelled" in flash(r)["error"][0]
    (entry,) = await audit_rows(db, "cancel")
    assert (entry.actor, entry.target, entry.ip) == ("boss", pid, "127.0.0.1")
    page = (await client.get(f"/admin/transactions/{pid}")).text
    assert 'data-testid="cancel"' not in page  # nothing left to cancel


async def test_a_payers_cancelled_try_leaves_the_payment_payable_on_the_page(client, db, merchant, admin):
    """Issue 13: the try is cancelled, the payment is not. The attempts table says so, the event
    timeline has `attempt_cancelled` marked as sent to no one, and nothing is in the webhook log."""
    pid = (await create_payment(client, merchant, webhook_url="https://shop.example/hooks"))["transaction_id"]
    await sandbox(client, pid, "cancel", checkout_id="a")
    await signed_in(client, admin)

    def attempts(page: str) -> list[str]:
        return re.findall(r'data-testid="attempt" data-status="(\w+)"', page)

    page = (await client.get(f"/admin/transactions/{pid}?lang=en")).text
    assert by_testid(page, "status") == "pending"
    assert attempts(page) == ["cancelled"]
    event = re.search(r'data-testid="event" data-type="attempt_cancelled">(.*?)</li>', page, re.S)
    assert event and "pending → pending · not sent as a webhook" in text_of(event.group(1))
    assert 'data-testid="delivery"' not in page
    assert 'data-testid="cancel"' in page  # the payment itself can still be cancelled

    await sandbox(client, pid, checkout_id="b")
    page = (await client.get(f"/admin/transactions/{pid}?lang=en")).text
    assert by_testid(page, "status") == "paid"
    assert attempts(page) == ["cancelled", "succeeded"]
    assert re.findall(r'data-testid="event" data-type="(\w+)"', page) == ["attempt_cancelled", "paid"]
    assert "not sent as a webhook" not in text_of(page.split('data-type="paid"')[1].split("</li>")[0])
    delivered = re.findall(r'data-testid="delivery" data-status="\w+">\s*<header>\s*<strong[^>]*>(\w+)</strong>', page)
    assert delivered == ["paid"]


async def failed_deliveries(client: httpx.AsyncClient, db: Database, creds: MerchantCreds, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        pid = await paid_payment(client, creds, webhook_url="https://shop.example/hooks")
        async with db.transaction() as session:
            d = await session.scalar(select(Delivery).where(Delivery.payment_id == pid))
            assert d is not None
            d.status, d.attempt_count, d.max_attempts, d.next_attempt_at = DeliveryStatus.FAILED, 4, None, None
            ids.append(d.id)
    return ids


async def test_resend_one_delivery(client, db, merchant, admin, clock):
    (did,) = await failed_deliveries(client, db, merchant, 1)
    await signed_in(client, admin)
    d = await get_row(db, Delivery, did)
    r = await act(client, f"/admin/deliveries/{did}/resend", {"next": f"/admin/transactions/{d.payment_id}"})
    assert redirected_to(r).startswith(f"/admin/transactions/{d.payment_id}?notice=done&sig=")
    d = await get_row(db, Delivery, did)
    # A new round: the four tries made, one more now and the configured retries after it.
    assert (d.status, d.attempt_count, d.max_attempts) == ("pending", 4, 4 + 1 + 3)
    assert d.next_attempt_at <= clock()
    (entry,) = await audit_rows(db, "webhook_resend")
    assert (entry.actor, entry.target, entry.details) == ("boss", did, {"payment_id": d.payment_id})
    r = await act(client, "/admin/deliveries/whd_nope/resend", {"next": "https://evil.example"})
    assert redirected_to(r).startswith("/admin?error=")
    assert len(await audit_rows(db, "webhook_resend")) == 1


async def test_resend_every_failed_delivery_since(client, db, merchant, admin, clock):
    old, new1, new2 = await failed_deliveries(client, db, merchant, 3)
    (ok,) = [d for d in await failed_deliveries(client, db, merchant, 1)]
    now = clock()
    async with db.transaction() as session:
        await session.execute(update(Delivery).where(Delivery.id == old).values(created_at=now - timedelta(days=2)))
        await session.execute(update(Delivery).where(Delivery.id == ok).values(status=DeliveryStatus.SUCCEEDED))
    await signed_in(client, admin)
    since = (now - timedelta(days=1)).astimezone(ALMATY).strftime("%Y-%m-%dT%H:%M")
    r = await act(client, "/admin/webhooks/resend-failed", {"since": since})
    assert redirected_to(r).startswith("/admin/webhooks?status=failed&notice=")
    assert "2" in flash(r)["notice"][0]
    states = {d: (await get_row(db, Delivery, d)).status for d in (old, new1, new2, ok)}
    assert states == {old: "failed", new1: "pending", new2: "pending", ok: "succeeded"}
    (entry,) = await audit_rows(db, "webhook_resend_failed")
    assert entry.details["count"] == 2
    assert datetime.fromisoformat(entry.details["since"]) == datetime.fromisoformat(since).replace(tzinfo=ALMATY)
    r = await act(client, "/admin/webhooks/resend-failed", {"since": "yesterday"})
    assert "error" in flash(r)
    assert len(await audit_rows(db, "webhook_resend_failed")) == 1

    listing = (await client.get("/admin/webhooks?status=failed")).text
    assert listing.count('class="badge d-failed"') == 1


async def test_merchant_create_shows_the_token_once(client, db, admin):
    await signed_in(client, admin)
    r = await act(client, "/admin/merchants", {"name": "Магазин «Ромашка»", "webhook_url": "https://romashka.kz/h"})
    assert redirected_to(r) == "/admin/merchants"
    assert "pct_" not in r.headers["location"]
    page = await client.get("/admin/merchants")
    shown = by_testid(page.text, "shown-once")
    token = re.search(r"pct_[A-Za-z0-9_-]+", shown)
    assert token, shown
    assert "Магазин «Ромашка»" in shown
    again = await client.get("/admin/merchants")  # a reload: gone
    assert 'data-testid="shown-once"' not in again.text and token.group(0) not in again.text

    async with db.reading() as session:
        (m,) = list(await session.scalars(select(Merchant).where(Merchant.name == "Магазин «Ромашка»")))
        (tk,) = list(await session.scalars(select(ApiToken).where(ApiToken.merchant_id == m.id)))
    assert m.webhook_url == "https://romashka.kz/h"
    (entry,) = await audit_rows(db, "merchant_create")
    assert (entry.actor, entry.target, entry.details) == ("boss", m.id, {"token_id": tk.id})
    # The token shown is the merchant's, and works.
    api = await client.post(
        "/api/payment/init", json={"amount": 100, "currency": "KZT"}, headers={"X-API-Token": token.group(0)}
    )
    assert api.status_code == 201, api.text

    for bad in (
        {"name": ""},
        {"name": "x", "webhook_url": "ftp://x"},
        {"name": "x", "webhook_url": "http://𝟏𝟐𝟕.0.0.1/"},
    ):
        r = await act(client, "/admin/merchants", bad)
        assert "error" in flash(r)
    assert len(await audit_rows(db, "merchant_create")) == 1


async def test_tokens_created_and_revoked(client, db, merchant, admin):
    await signed_in(client, admin)
    r = await act(client, f"/admin/merchants/{merchant.merchant_id}/tokens", {"name": "backup"})
    assert redirected_to(r) == "/admin/merchants"
    page = (await client.get("/admin/merchants")).text
    token = re.search(r"pct_[A-Za-z0-9_-]+", by_testid(page, "shown-once"))
    assert token
    headers = {"X-API-Token": token.group(0)}
    assert (await client.post("/api/payment/init", json={"amount": 1}, headers=headers)).status_code == 201
    async with db.reading() as session:
        new = await session.scalar(select(ApiToken).where(ApiToken.name == "backup"))
    assert new is not None and new.merchant_id == merchant.merchant_id

    r = await act(client, f"/admin/tokens/{new.id}/revoke")
    assert redirected_to(r).startswith("/admin/merchants?notice=done&sig=")
    assert (await client.post("/api/payment/init", json={"amount": 1}, headers=headers)).status_code == 401
    # The merchant's other token is untouched.
    assert (await client.post("/api/payment/init", json={"amount": 1}, headers=merchant.headers)).status_code == 201
    r = await act(client, "/admin/tokens/tok_missing/revoke")
    assert "error" in flash(r)
    log = [(a.action, a.target, a.details) for a in await audit_rows(db) if a.action.startswith("token")]
    assert log == [
        ("token_create", merchant.merchant_id, {"token_id": new.id}),
        ("token_revoke", merchant.merchant_id, {"token_id": new.id}),
    ]


async def test_rotate_the_signing_secret(client, db, merchant, admin, ctx):
    old = (await get_row(db, Merchant, merchant.merchant_id)).signing_secret
    await signed_in(client, admin)
    r = await act(client, f"/admin/merchants/{merchant.merchant_id}/rotate-secret")
    assert redirected_to(r) == "/admin/merchants"
    m = await get_row(db, Merchant, merchant.merchant_id)
    assert m.signing_secret != old and m.previous_signing_secret == old
    assert m.previous_secret_expires_at > ctx.now() + timedelta(hours=23)
    page = (await client.get("/admin/merchants")).text
    assert m.signing_secret in by_testid(page, "shown-once")  # the whole secret, exactly, once
    assert m.signing_secret not in (await client.get("/admin/merchants")).text
    (entry,) = await audit_rows(db, "signing_secret_rotate")
    assert (entry.actor, entry.target) == ("boss", merchant.merchant_id)
    assert old not in repr(entry.details) and m.signing_secret not in repr(entry.details)


async def test_set_the_webhook_url(client, db, merchant, admin):
    await signed_in(client, admin)
    path = f"/admin/merchants/{merchant.merchant_id}/webhook-url"
    r = await act(client, path, {"webhook_url": " https://shop.example/new "})
    assert redirected_to(r).startswith("/admin/merchants?notice=done&sig=")
    assert (await get_row(db, Merchant, merchant.merchant_id)).webhook_url == "https://shop.example/new"
    # Refused like the payment API refuses it: a private address once read as the HTTP client reads it.
    for bad in (
        "javascript:alert(1)",
        "http://１２７.０.０.１/internal",
        "http://[::１]/",
        "http://１６９.２５４.１６９.２５４/",
    ):
        r = await act(client, path, {"webhook_url": bad})
        assert "error" in flash(r), bad
    assert (await get_row(db, Merchant, merchant.merchant_id)).webhook_url == "https://shop.example/new"
    r = await act(client, path, {"webhook_url": ""})
    assert (await get_row(db, Merchant, merchant.merchant_id)).webhook_url is None
    log = [(a.target, a.details["webhook_url"]) for a in await audit_rows(db, "merchant_webhook_url")]
    assert log == [(merchant.merchant_id, "https://shop.example/new"), (merchant.merchant_id, None)]


async def test_set_the_api_version_and_the_underpayment_tolerance(client, db, merchant, admin):
    """The pins `paycenter merchant api-version` and `merchant tolerance` set, from the merchant page."""
    await signed_in(client, admin)
    m = merchant.merchant_id
    page = (await client.get("/admin/merchants")).text
    assert f'<option value="{versions.CURRENT}" selected>' in page
    assert 'name="underpayment_tolerance" value="0.00"' in page
    r = await act(client, f"/admin/merchants/{m}/api-version", {"api_version": "legacy"})
    assert redirected_to(r).startswith("/admin/merchants?notice=done")
    r = await act(client, f"/admin/merchants/{m}/tolerance", {"underpayment_tolerance": " 10,50 "})
    assert redirected_to(r).startswith("/admin/merchants?notice=done")
    row = await get_row(db, Merchant, m)
    assert (row.api_version, row.underpayment_tolerance) == ("legacy", 1050)
    page = (await client.get("/admin/merchants")).text
    assert '<option value="legacy" selected>' in page and 'name="underpayment_tolerance" value="10.50"' in page
    for path, form in (
        ("api-version", {"api_version": "2001-01-01"}),
        ("tolerance", {"underpayment_tolerance": "-1"}),
        ("tolerance", {"underpayment_tolerance": "1000.01"}),
        ("tolerance", {"underpayment_tolerance": "ten"}),
    ):
        r = await act(client, f"/admin/merchants/{m}/{path}", form)
        assert "error" in flash(r), form
    row = await get_row(db, Merchant, m)
    assert (row.api_version, row.underpayment_tolerance) == ("legacy", 1050)
    log = [(a.action, a.target, a.details) for a in await audit_rows(db) if a.action.startswith("merchant_")]
    assert log == [
        ("merchant_api_version", m, {"before": versions.CURRENT, "after": "legacy"}),
        ("merchant_tolerance", m, {"before": 0, "after": 1050}),
    ]


async def test_terminals_added_disabled_enabled(client, db, admin):
    await signed_in(client, admin)
    form = {"name": "till-7", "base_url": "https://192.168.1.50:8080/", "access_token": "secret-token"}
    r = await act(client, "/admin/terminals", form)
    assert redirected_to(r).startswith("/admin/terminals?notice=done&sig=")
    async with db.reading() as session:
        (t,) = list(await session.scalars(select(Terminal)))
    assert (t.name, t.base_url, t.access_token, t.is_active) == (
        "till-7",
        "https://192.168.1.50:8080",
        "secret-token",
        True,
    )
    r = await act(client, "/admin/terminals", form)  # the same name again
    assert "exists" in flash(r)["error"][0]
    r = await act(client, "/admin/terminals", {**form, "name": "x", "base_url": "file:///etc/passwd"})
    assert "error" in flash(r)

    r = await act(client, f"/admin/terminals/{t.id}/disable")
    assert redirected_to(r).startswith("/admin/terminals?notice=done&sig=")
    assert (await get_row(db, Terminal, t.id)).is_active is False
    page = (await client.get("/admin/terminals")).text
    assert "secret-token" not in page
    assert f'action="/admin/terminals/{t.id}/enable"' in page
    r = await act(client, f"/admin/terminals/{t.id}/enable")
    assert (await get_row(db, Terminal, t.id)).is_active is True
    r = await act(client, f"/admin/terminals/{t.id}/explode")
    assert "error" in flash(r)
    log = [(a.action, a.target) for a in await audit_rows(db) if a.action.startswith("terminal")]
    assert log == [("terminal_add", t.id), ("terminal_disable", t.id), ("terminal_enable", t.id)]
    assert (await audit_rows(db, "terminal_add"))[0].details == {"name": "till-7"}


async def test_audit_page_lists_the_actions(client, db, merchant, admin):
    await signed_in(client, admin)
    await act(client, f"/admin/merchants/{merchant.merchant_id}/rotate-secret")
    page = (await client.get("/admin/audit")).text
    table = text_of(page.split('data-testid="audit"')[1])
    assert "signing_secret_rotate" in table and merchant.merchant_id in table and "login" in table


# --- the transaction page --------------------------------------------------------------------------


async def test_transaction_details_show_metadata_and_the_webhook_log(client, db, merchant, admin, clock):
    metadata = {"order_id": "A-1", "user_id": "u-9", "cart": {"items": [{"sku": "X1", "qty": 2}], "gift": False}}
    pid = await paid_payment(client, merchant, metadata=metadata, webhook_url="https://shop.example/hooks")
    now = clock()
    async with db.transaction() as session:
        d = await session.scalar(select(Delivery).where(Delivery.payment_id == pid))
        assert d is not None
        d.status, d.attempt_count, d.next_attempt_at = DeliveryStatus.PENDING, 2, now + timedelta(minutes=5)
        for number, status, error in ((1, None, "Cannot connect to host"), (2, 503, None)):
            session.add(
                DeliveryAttempt(
                    delivery_id=d.id,
                    number=number,
                    started_at=now,
                    duration_ms=41 + number,
                    request_headers='{"webhook-id": "evt_1", "Content-Type": "application/json"}',
                    request_body='{"event": "paid", "note": "\\u043f\\u0440\\u0438\\u0432\\u0435\\u0442"}',
                    response_status=status,
                    response_headers='{"Retry-After": "30"}' if status else None,
                    response_body="maintenance <b>window</b>" if status else None,
                    error_class="connect" if error else "http_status",
                    error=error,
                    next_attempt_at=now + timedelta(minutes=number),
                )
            )
    await signed_in(client, admin)
    r = await client.get(f"/admin/transactions/{pid.lower()}")
    assert r.status_code == 200
    page = r.text
    tree = text_of(page.split('data-testid="metadata"')[1].split("</div>")[0])
    for piece in ("order_id : A-1", "user_id : u-9", "sku : X1", "qty : 2", "gift : false"):
        assert piece in tree, tree
    log = page.split('data-testid="webhook-log"')[1]
    log_text = text_of(log)
    for piece in (
        "webhook-id: evt_1",
        "привет",
        "Cannot connect to host",
        "Retry-After: 30",
        "maintenance <b>window</b>",  # escaped, not markup
        "42 мс",
        "503",
    ):
        assert piece in log_text, piece
    assert "<b>window</b>" not in log
    assert by_testid(page, "delivery-status") == "pending"
    assert by_testid(page, "amount") == "500.00 KZT" and by_testid(page, "paid") == "500.00 KZT"
    assert by_testid(page, "remaining") == "0.00 KZT"
    # Times in Almaty, as the panel's days, date filters and "resend failed since" are.
    created = (await get_payment(db, pid)).created_at.astimezone(ALMATY)
    assert created.strftime("%Y-%m-%d %H:%M:%S %Z") in text_of(page)
    # English on request.
    en = (await client.get(f"/admin/transactions/{pid}?lang=en")).text
    assert "Webhook log" in en and '<html lang="en">' in en
    assert (await client.get(f"/admin/transactions/{pid}")).text.count("Webhook log") == 1  # the choice sticks
    assert (await client.get("/admin/transactions/0123456789ABCDEF0123456789ABCDEF")).status_code == 404
    assert (await client.get("/admin/transactions/nope")).status_code == 404
    r = await client.get(f"/admin/deliveries/{d.id}")
    assert redirected_to(r) == f"/admin/transactions/{pid}#{d.id}"


# --- the transaction list ---------------------------------------------------------------------------


@dataclass
class Shop:
    alpha: MerchantCreds
    beta: MerchantCreds
    ids: dict[str, str]


@pytest.fixture
async def shop(client: httpx.AsyncClient, db: Database, clock: Clock) -> Shop:
    alpha = await make_merchant(db, "Alpha")
    beta = await make_merchant(db, "Beta")
    spec = {
        # name: (merchant, amount, description, order_id, user_id, days ago, paid)
        "p1": (alpha, 1000, "Coffee beans", "ORD-1", "u-1", 0, "all"),
        "p2": (alpha, 250.5, "Tea", "ORD-2", "u-2", 10, None),
        "p3": (alpha, 5000, "Sale 100% off", "ORD-3", "u-3", 0, "part"),
        "p4": (beta, 750, "Coffee mug", "ORD-1", "u-1", 2, "all"),
        "p5": (beta, 3000, "Cake / Торт «Наполеон»", "ORD-5", "12345", 0, None),
    }
    ids = {}
    for name, (creds, amount, description, order_id, user_id, _, pay) in spec.items():
        data = await create_payment(
            client, creds, amount=amount, description=description, metadata={"order_id": order_id, "user_id": user_id}
        )
        ids[name] = data["transaction_id"]
        if pay == "all":
            await sandbox(client, ids[name], checkout_id=new_id("co"))
        elif pay == "part":
            await sandbox(client, ids[name], checkout_id=new_id("co"), amount="100")
    async with db.transaction() as session:
        for name, spec_row in spec.items():
            if spec_row[5]:
                await session.execute(
                    update(Payment)
                    .where(Payment.id == ids[name])
                    .values(created_at=clock() - timedelta(days=spec_row[5]))
                )
        await session.execute(update(Payment).where(Payment.id == ids["p5"]).values(provider="kaspi_qr"))
    return Shop(alpha, beta, ids)


async def test_transaction_filters(client, shop, admin, clock):
    await signed_in(client, admin)
    ids = shop.ids
    today = clock().astimezone(ALMATY).date()

    async def found(**params: str) -> set[str]:
        r = await client.get("/admin/transactions", params=params)
        assert r.status_code == 200, r.text
        assert 'class="flash bad"' not in r.text, (params, text_of(r.text)[:300])
        names = {v: k for k, v in ids.items()}
        return {names[i] for i in listed(r.text)}

    assert await found() == {"p1", "p2", "p3", "p4", "p5"}
    assert await found(status="paid") == {"p1", "p4"}
    assert await found(status="partially_paid") == {"p3"}
    assert await found(merchant=shop.beta.merchant_id) == {"p4", "p5"}
    assert await found(status="paid", merchant=shop.alpha.merchant_id) == {"p1"}
    assert await found(provider="kaspi_qr") == {"p5"}
    assert await found(provider="sandbox") == {"p1", "p2", "p3", "p4"}
    assert await found(date_from=(today - timedelta(days=3)).isoformat()) == {"p1", "p3", "p4", "p5"}
    assert await found(date_to=(today - timedelta(days=5)).isoformat()) == {"p2"}
    day = (today - timedelta(days=2)).isoformat()
    assert await found(date_from=day, date_to=day) == {"p4"}
    assert await found(min_amount="500", max_amount="1000") == {"p1", "p4"}
    assert await found(min_amount="250.50", max_amount="250,50") == {"p2"}
    assert await found(min_amount="3000.01") == {"p3"}
    assert await found(q="Coffee") == {"p1", "p4"}
    assert await found(q="coffee") == {"p1", "p4"}  # any case, on every backend
    assert await found(q="торт") == {"p5"}  # in Cyrillic too (SQLite's own lower() is ASCII only)
    assert await found(q="НАПОЛЕОН") == {"p5"}
    assert await found(q="ORD-1") == {"p1", "p4"}
    assert await found(q="u-2") == {"p2"}
    assert await found(q="12345") == {"p5"}
    assert await found(q=ids["p3"].lower()) == {"p3"}
    assert await found(q=f"  {ids['p3']} ") == {"p3"}
    assert await found(q="100%") == {"p3"}
    assert await found(q="%") == {"p3"}  # a literal percent sign, not a wildcard
    assert await found(q="_") == set()
    assert await found(q="ORD-1", merchant=shop.alpha.merchant_id) == {"p1"}

    for bad in ({"date_from": "yesterday"}, {"min_amount": "lots"}, {"cursor": "garbage"}):
        r = await client.get("/admin/transactions", params=bad)
        assert r.status_code == 200 and 'class="flash bad"' in r.text, bad
        assert listed(r.text) == []


async def test_cursor_pagination(client, db, merchant, admin, clock):
    now = clock()
    rows = []
    async with db.transaction() as session:
        for i in range(125):
            # Some share a timestamp: the id breaks ties, so none is skipped or repeated.
            created = now - timedelta(minutes=i // 5)
            p = Payment(
                id=new_payment_id(),
                merchant_id=merchant.merchant_id,
                amount=100 * (i + 1),
                currency="KZT",
                description=f"bulk {i}",
                metadata_={},
                provider="sandbox",
                status=PaymentStatus.PAID if i % 2 else PaymentStatus.PENDING,
                paid_amount=100 * (i + 1) if i % 2 else 0,
                expires_at=now + timedelta(hours=1),
                created_at=created,
                updated_at=created,
            )
            session.add(p)
            rows.append(p)
    expected = [p.id for p in sorted(rows, key=lambda p: (p.created_at, p.id), reverse=True)]
    await signed_in(client, admin)

    async def walk(url: str) -> list[list[str]]:
        pages = []
        while url:
            r = await client.get(url)
            assert r.status_code == 200
            pages.append(listed(r.text))
            link = re.search(r'href="([^"]+)" data-testid="next"', r.text)
            url = html.unescape(link.group(1)) if link else ""
        return pages

    pages = await walk("/admin/transactions")
    assert [len(p) for p in pages] == [50, 50, 25]
    assert [i for p in pages for i in p] == expected
    paid = await walk("/admin/transactions?status=paid&q=bulk")
    assert [len(p) for p in paid] == [50, 12]
    assert [i for p in paid for i in p] == [
        p.id for p in sorted(rows, key=lambda p: (p.created_at, p.id), reverse=True) if p.status == "paid"
    ]


async def test_csv_export(client, db, shop, admin):
    async with db.transaction() as session:
        await session.execute(
            update(Payment).where(Payment.id == shop.ids["p2"]).values(description='=HYPERLINK("http://x","y"), "q"')
        )
    await signed_in(client, admin)
    r = await client.get("/admin/transactions.csv", params={"merchant": shop.alpha.merchant_id})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["transaction_id"] for row in table] == [shop.ids["p3"], shop.ids["p1"], shop.ids["p2"]] or [
        row["transaction_id"] for row in table
    ] == [shop.ids["p1"], shop.ids["p3"], shop.ids["p2"]]
    by_id = {row["transaction_id"]: row for row in table}
    p1, p2, p3 = (by_id[shop.ids[n]] for n in ("p1", "p2", "p3"))
    assert (p1["merchant_id"], p1["status"], p1["provider"], p1["currency"]) == (
        shop.alpha.merchant_id,
        "paid",
        "sandbox",
        "KZT",
    )
    # Amounts in major units, as the API gives them.
    assert (p1["amount"], p1["paid_amount"], p1["refunded_amount"]) == ("1000.00", "1000.00", "0.00")
    assert (p2["amount"], p3["paid_amount"]) == ("250.50", "100.00")
    assert (p1["description"], p1["order_id"], p1["user_id"]) == ("Coffee beans", "ORD-1", "u-1")
    # A cell a spreadsheet would run as a formula is defused.
    assert p2["description"] == '\'=HYPERLINK("http://x","y"), "q"'
    created = datetime.fromisoformat(p1["created_at"].replace("Z", "+00:00"))
    assert abs(created - (await get_payment(db, shop.ids["p1"])).created_at) < timedelta(seconds=1)
    # Filters apply to the export as to the list.
    r = await client.get("/admin/transactions.csv", params={"q": "coffee"})
    assert sorted(row["transaction_id"] for row in csv.DictReader(io.StringIO(r.text))) == sorted(
        [shop.ids["p1"], shop.ids["p4"]]
    )
    # The list links to the export with its filters.
    page = (await client.get("/admin/transactions", params={"status": "paid", "q": "Coffee"})).text
    link = html.unescape(re.search(r'href="([^"]+)" data-testid="csv"', page).group(1))
    assert parse_qs(urlsplit(link).query) == {"status": ["paid"], "q": ["Coffee"]}


async def test_csv_export_of_many_pages(client, db, merchant, admin, clock):
    now = clock()
    async with db.transaction() as session:
        for i in range(230):
            session.add(
                Payment(
                    id=new_payment_id(),
                    merchant_id=merchant.merchant_id,
                    amount=100,
                    currency="KZT",
                    description="many",
                    metadata_={},
                    provider="sandbox",
                    status=PaymentStatus.PENDING,
                    expires_at=now,
                    created_at=now - timedelta(seconds=i // 3),
                    updated_at=now,
                )
            )
    await signed_in(client, admin)
    r = await client.get("/admin/transactions.csv")
    ids = [row["transaction_id"] for row in csv.DictReader(io.StringIO(r.text))]
    assert len(ids) == len(set(ids)) == 230


# --- the dashboard ------------------------------------------------------------------------------


def minor_of(text: str) -> int:
    """ "18 000.00 KZT" (any spaces) -> 1800000."""
    number = "".join(text.split()[:-1]) if text.split()[-1].isalpha() else "".join(text.split())
    return int(Decimal(number.replace("\u202f", "")) * 100)


async def test_dashboard_figures_match_the_database(client, db, admin, clock, ctx):
    a = await make_merchant(db, "Alpha", webhook_url="https://a.example/h")
    b = await make_merchant(db, "Beta")
    made = {
        "paid": await paid_payment(client, a, amount=500),
        "paid_usd": await paid_payment(client, b, amount=12.5, currency="USD"),
        "part": (await create_payment(client, a, amount=1000))["transaction_id"],
        "pending": (await create_payment(client, b, amount=300))["transaction_id"],
        "refunded": await paid_payment(client, a, amount=800),
        "cancelled": (await create_payment(client, b, amount=700))["transaction_id"],
        "days_ago": await paid_payment(client, a, amount=1500),
        "long_ago": await paid_payment(client, b, amount=9999),
    }
    await sandbox(client, made["part"], checkout_id="co-part", amount="200")
    await signed_in(client, admin)
    await act(client, f"/admin/transactions/{made['refunded']}/refund")
    await act(client, f"/admin/transactions/{made['cancelled']}/cancel")
    now = clock()
    async with db.transaction() as session:
        for name, days in (("days_ago", 3), ("long_ago", 40)):
            await session.execute(
                update(Payment).where(Payment.id == made[name]).values(created_at=now - timedelta(days=days))
            )
        ds = list(await session.scalars(select(Delivery).order_by(Delivery.id)))
        assert len(ds) >= 4
        states = [DeliveryStatus.SUCCEEDED, DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.PENDING]
        for d, status in zip(ds, states * len(ds), strict=False):
            d.status = status
            d.next_attempt_at = now - timedelta(seconds=5) if status == DeliveryStatus.PENDING else None

    # The figures, worked out here from the rows.
    async with db.reading() as session:
        payments = list(await session.scalars(select(Payment)))
        deliveries = list(await session.scalars(select(Delivery)))
    today = now.astimezone(ALMATY).date()
    start = datetime.combine(today - timedelta(days=29), datetime.min.time(), ALMATY)
    periods: dict[str, dict[str, Any]] = {
        key: {"count": 0, "status": defaultdict(int), "volume": defaultdict(int)} for key in ("today", "last_30")
    }
    daily: dict[str, int] = defaultdict(int)
    for p in payments:
        if p.created_at < start:
            continue
        day = p.created_at.astimezone(ALMATY).date()
        keys = ["last_30"] + (["today"] if day == today else [])
        for key in keys:
            periods[key]["count"] += 1
            periods[key]["status"][p.status] += 1
            periods[key]["volume"][p.currency] += p.paid_amount
        if p.currency == "KZT":
            daily[day.isoformat()] += p.paid_amount
    recent = [d for d in deliveries if d.created_at >= start]
    succeeded = sum(d.status == "succeeded" for d in recent)
    failed = sum(d.status == "failed" for d in recent)
    due = sum(d.status == "pending" and d.next_attempt_at <= now for d in deliveries)

    page = (await client.get("/admin")).text
    assert periods["last_30"]["count"] == 7 and periods["today"]["count"] == 6
    for key, want in periods.items():
        assert int(by_testid(page, f"{key}-count")) == want["count"]
        for status, n in want["status"].items():
            assert int(by_testid(page, f"{key}-status-{status}")) == n, (key, status)
        shown = re.findall(rf'data-testid="{key}-status-([a-z_]+)"', page)
        assert set(shown) == set(want["status"])
        for currency, minor in want["volume"].items():
            assert minor_of(by_testid(page, f"{key}-volume-{currency}").split(":", 1)[1]) == minor, (key, currency)
        done = want["status"]["paid"] + want["status"]["refunded"]
        assert by_testid(page, f"{key}-conversion") == f"{done / want['count'] * 100:.1f}%"
    assert by_testid(page, "webhook-success") == f"{succeeded / (succeeded + failed) * 100:.1f}%"
    assert int(by_testid(page, "backlog")) == due
    bars = dict(re.findall(r'data-day="([0-9-]+)" data-value="(\d+)"', page))
    assert len(bars) == 30 and max(bars) == today.isoformat()
    assert {day: int(v) for day, v in bars.items() if int(v)} == {d: v for d, v in daily.items() if v}
    # The figures of this test, spelt out: today 500 + 200 + 800 KZT paid; three days ago 1500.
    assert periods["today"]["volume"]["KZT"] == 150000 and periods["last_30"]["volume"]["KZT"] == 300000
    assert periods["today"]["volume"]["USD"] == 1250


async def test_dashboard_says_when_no_worker_runs(client, admin):
    await signed_in(client, admin)
    page = (await client.get("/admin")).text
    assert "Нет работающих воркеров" in page
    assert by_testid(page, "webhook-success") == "—"


async def test_login_page_in_english_and_back(client, admin):
    page = await client.get("/admin/login?lang=en")
    assert '<html lang="en">' in page.text and "Sign in" in page.text
    assert "pc_admin_lang=en" in page.headers["set-cookie"]
    r = await login(client, admin, password="bad")
    assert "Wrong username or password." in by_testid(r.text, "login-error")


async def test_a_login_not_from_our_own_form_is_refused(client: httpx.AsyncClient, admin: Operator):
    """Login CSRF: another site cannot post its own credentials into the operator's browser."""
    data = {"username": admin.username, "password": admin.password}
    r = await client.post("/admin/login", data=data)  # no form fetched: no token, no cookie
    assert r.status_code == 403 and "pc_admin" not in r.cookies
    page = await client.get("/admin/login")
    wrong = await client.post("/admin/login", data=data | {"csrf_token": "forged"})
    assert wrong.status_code == 403 and "pc_admin" not in wrong.cookies
    assert "Форма входа устарела" in wrong.text
    assert (await login(client, admin)).status_code == 303  # the real form still works
    assert page.status_code == 200


async def test_a_crafted_link_cannot_put_words_into_the_notice_bar(client, world, admin):
    await signed_in(client, admin)
    for kind in ("notice", "error"):
        page = await client.get("/admin", params={kind: "Срочно позвоните +7 700 000 00 00", "sig": "0" * 32})
        assert page.status_code == 200 and "позвоните" not in page.text
    # The panel's own redirect after an action carries a signature this browser's session checks.
    r = await act(client, f"/admin/transactions/{world.paid}/refund", {"amount": "1"})
    shown = await client.get(redirected_to(r))
    assert by_testid(shown.text, "notice") == "Готово."
    other = await client.get(redirected_to(r).replace("notice=done", "notice=Done%20by%20us"))
    assert "Done by us" not in other.text  # the signature covers the text


# --- one-time passwords and one's own password ------------------------------------------------------


async def change_password(
    client: httpx.AsyncClient, current: str, new: str, again: str | None = None, **form: str
) -> httpx.Response:
    """The password form as the browser posts it, with the CSRF token of its own page."""
    page = await client.get("/admin/password")
    assert page.status_code == 200, page.text
    token = CSRF.search(page.text)
    assert token, page.text
    data = {
        "current_password": current,
        "new_password": new,
        "new_password_again": new if again is None else again,
        "csrf_token": token.group(1),
        **form,
    }
    return await client.post("/admin/password", data=data)


async def stored_user(db: Database, username: str) -> AdminUser:
    async with db.reading() as session:
        return await session.scalar(select(AdminUser).where(AdminUser.username == username))


async def test_a_one_time_password_opens_only_the_page_that_replaces_it(client, db, world, clock, browsers):
    """`paycenter run`, `create-user` and `reset-password` print a one-time password: signed in
    with it, the operator can do nothing but choose their own (or sign out)."""
    newcomer = await new_user(db, clock, "newcomer", Role.ADMIN, one_time=True)
    r = await login(client, newcomer, next="/admin/merchants")
    assert redirected_to(r) == "/admin/password?next=/admin/merchants"
    (entry,) = await audit_rows(db, "login")
    assert entry.details == {"one_time_password": True}

    form = await client.get("/admin/password?next=/admin/merchants")
    assert form.status_code == 200
    assert "Вы вошли с одноразовым паролем" in by_testid(form.text, "must-change")
    assert 'data-testid="password-link"' in form.text and "<nav>" not in form.text
    token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]

    # Every page sends the operator back there, and every action, even with this session's own
    # CSRF token, changes nothing.
    for path in [*PAGES, f"/admin/transactions/{world.paid}"]:
        location = redirected_to(await client.get(path))
        assert location.startswith("/admin/password?next=") and parse_qs(urlsplit(location).query)["next"] == [path]
    before = await snapshot(db)
    for path, data in actions(world):
        r = await client.post(path, data={**data, "csrf_token": token})
        assert redirected_to(r) == "/admin/password?next=/admin", path
    assert await snapshot(db) == before

    # The rules of a new password, each refused with its reason and nothing changed.
    for new, again, reason in (
        ("a much longer secret", "a much longer secret!", "Новые пароли не совпадают."),
        ("short", None, "Новый пароль слишком короткий: нужно не меньше 12 символов."),
        ("            x", None, "Новый пароль слишком короткий: нужно не меньше 12 символов."),
        ("NEWCOMER", None, "Новый пароль слишком короткий: нужно не меньше 12 символов."),
        (newcomer.password, None, "Новый пароль должен отличаться от текущего."),
        ("x" * 1001, None, "Новый пароль слишком длинный."),
    ):
        r = await change_password(client, newcomer.password, new, again)
        assert r.status_code == 422, (new, r.status_code)
        assert by_testid(r.text, "password-error") == reason
    longname = await new_user(db, clock, "a-long-username", Role.VIEWER, one_time=True)
    other = await browsers()
    await login(other, longname)
    r = await change_password(other, longname.password, "A-Long-Username")
    assert by_testid(r.text, "password-error") == "Пароль не может совпадать с логином."
    assert (await stored_user(db, "newcomer")).must_change_password is True

    r = await change_password(client, newcomer.password, "correct horse battery staple", next="/admin/merchants")
    assert redirected_to(r).startswith("/admin/merchants?notice=")
    assert by_testid((await client.get(redirected_to(r))).text, "notice") == (
        "Пароль изменён. Другие ваши сеансы завершены."
    )
    for path in PAGES:  # the same session goes on, now everywhere
        assert (await client.get(path)).status_code == 200, path
    user = await stored_user(db, "newcomer")
    assert user.must_change_password is False and abs(user.password_set_at - clock()) < timedelta(minutes=1)
    (entry,) = await audit_rows(db, "password_change")
    assert (entry.actor, entry.details) == ("newcomer", {"forced": True, "sessions_ended": 0})

    # The one-time password is spent; the chosen one works.
    await act(client, "/admin/logout")
    assert (await login(client, newcomer)).status_code == 401
    r = await login(client, Operator("newcomer", "correct horse battery staple"))
    assert redirected_to(r) == "/admin"


async def test_a_one_time_password_expires(client, db, clock, ctx, browsers):
    late = await new_user(db, clock, "late", Role.ADMIN, one_time=True)
    prompt = await new_user(db, clock, "prompt", Role.VIEWER, one_time=True)
    clock.advance(hours=71, minutes=59)
    assert redirected_to(await login(client, prompt)).startswith("/admin/password")
    clock.advance(minutes=1)  # 72 h: the default
    r = await login(client, late)
    assert r.status_code == 401
    assert not [c for c in r.headers.get_list("set-cookie") if c.startswith("pc_admin=")]  # no session
    assert by_testid(r.text, "login-error") == (
        "Срок действия одноразового пароля истёк. Попросите администратора выполнить "
        "paycenter admin reset-password для вашего логина."
    )
    en = await client.get("/admin/login?lang=en")
    assert en.status_code == 200
    r = await login(client, late)
    assert "This one-time password has expired" in by_testid(r.text, "login-error")
    entries = [(a.actor, a.details) for a in await audit_rows(db, "login_failed")]
    assert entries == [("late", {"reason": "one_time_password_expired"})] * 2
    # A wrong password is still just wrong: the expiry says nothing about a password not given.
    r = await login(client, late, password="guess")
    assert "Wrong username or password." in by_testid(r.text, "login-error")

    # A reset issues a fresh one, good for another 72 h from now.
    async with db.transaction() as session:
        fresh = await admins.reset_password(session, username="late", now=clock())
    assert redirected_to(await login(client, Operator("late", fresh))).startswith("/admin/password")

    # The time is a setting.
    ctx.settings.admin_one_time_password_ttl_seconds = 3600
    clock.advance(hours=1)
    assert (await login(await browsers(), Operator("late", fresh))).status_code == 401


async def test_operators_change_their_own_password(client, db, admin, viewer, browsers, clock):
    await signed_in(client, admin)
    elsewhere = await signed_in(await browsers("10.1.1.1"), admin)  # the same operator, another browser
    colleague = await signed_in(await browsers("10.1.1.2"), viewer)
    page = await client.get("/admin")
    assert 'href="/admin/password"' in page.text
    form = await client.get("/admin/password")
    assert 'data-testid="must-change"' not in form.text and "Текущий пароль" in form.text

    # A stale or forged form is refused before anything is checked.
    before = await snapshot(db)
    for token in (None, "forged"):
        data = {"current_password": admin.password, "new_password": "n" * 20, "new_password_again": "n" * 20}
        r = await client.post("/admin/password", data=data if token is None else {**data, "csrf_token": token})
        assert r.status_code == 403 and "CSRF" in by_testid(r.text, "forbidden")
    assert await snapshot(db) == before

    # A wrong current password: refused, recorded, nothing else changes.
    r = await change_password(client, "not my password", "a brand new passphrase")
    assert r.status_code == 403
    assert by_testid(r.text, "password-error") == "Текущий пароль неверен."
    (failed,) = await audit_rows(db, "password_change_failed")
    assert (failed.actor, failed.details, failed.ip) == ("boss", {"reason": "wrong_current_password"}, "127.0.0.1")
    assert (await elsewhere.get("/admin")).status_code == 200

    r = await change_password(client, admin.password, "a brand new passphrase")
    assert redirected_to(r).startswith("/admin?notice=")
    # This session goes on; the operator's other one ended; a colleague's is untouched.
    assert (await client.get("/admin")).status_code == 200
    assert redirected_to(await elsewhere.get("/admin")).startswith("/admin/login")
    assert (await colleague.get("/admin")).status_code == 200
    (entry,) = await audit_rows(db, "password_change")
    assert (entry.actor, entry.details) == ("boss", {"forced": False, "sessions_ended": 1})
    assert (await login(await browsers(), admin)).status_code == 401
    assert redirected_to(await login(await browsers(), admin, password="a brand new passphrase")) == "/admin"
    async with db.reading() as session:
        hashes = list(await session.scalars(select(AdminUser.password_hash)))
    assert all(h.startswith("$argon2id$") for h in hashes) and "a brand new passphrase" not in repr(hashes)

    # A viewer changes theirs too: a password is not an action on the product.
    r = await change_password(colleague, viewer.password, "the auditor's passphrase")
    assert redirected_to(r).startswith("/admin?notice=")


async def test_guessing_the_current_password_locks_like_a_login(client, db, admin, browsers):
    """A borrowed session cannot be used to try passwords: five wrong ones lock it like logins."""
    await signed_in(client, admin)
    for _ in range(5):
        assert (await change_password(client, "guess", "a brand new passphrase")).status_code == 403
    r = await change_password(client, admin.password, "a brand new passphrase")
    assert r.status_code == 429
    assert "Попробуйте снова через 15 мин." in by_testid(r.text, "password-error")
    assert (await login(await browsers("10.2.2.2"), admin)).status_code == 429
    reasons = [a.details["reason"] for a in await audit_rows(db, "password_change_failed")]
    assert reasons == ["wrong_current_password"] * 5 + ["locked"]


async def test_a_password_changed_meanwhile_is_not_overwritten(db, admin, clock):
    """A reset (or another session's change) between checking the current password and storing
    the new one wins: the slower change is refused."""
    user = await stored_user(db, "boss")
    verified = user.password_hash
    async with db.transaction() as session:
        await admins.reset_password(session, username="boss", now=clock())
    with pytest.raises(admins.PasswordRefused, match="password_changed_meanwhile"):
        async with db.transaction() as session:
            await admins.set_password(
                session, user_id=user.id, password_hash=admins.HASHER.hash("x" * 20), now=clock(), replaces=verified
            )
    after = await stored_user(db, "boss")
    assert after.must_change_password is True and after.password_hash != verified


async def test_the_terminal_check_is_recorded_with_its_result(client, db, world, admin):
    await signed_in(client, admin)
    r = await act(client, f"/admin/terminals/{world.terminal}/check")
    assert flash(r)["notice"] == ["health_unreachable"]  # a text's key, said in the page's language
    shown = await client.get(redirected_to(r))
    assert by_testid(shown.text, "notice") == "нет связи"
    assert 'data-health="unreachable"' in shown.text
    (entry,) = await audit_rows(db, "terminal_check")
    assert (entry.actor, entry.target, entry.ip) == ("boss", world.terminal, "127.0.0.1")
    assert entry.details["health"] == "unreachable" and entry.details["error"]
    terminal = await get_row(db, Terminal, world.terminal)
    assert (terminal.health, terminal.last_error) == ("unreachable", entry.details["error"])
    r = await act(client, "/admin/terminals/trm_nope/check")
    assert "error" in flash(r)
    assert len(await audit_rows(db, "terminal_check")) == 1


@pytest.fixture(params=BACKENDS)
async def blank_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A new, empty database on each backend (for migrating step by step)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    server_url = SERVER_URLS[request.param]
    url = await _fresh_server_database(request.param, server_url)
    try:
        yield url
    finally:
        await _drop_server_database(server_url, url)


async def test_upgrading_makes_every_existing_password_one_time(blank_url: str) -> None:
    """Before 0009 nobody could choose a password: every stored one was printed by paycenter (the
    first admin's into the server's log). The upgrade makes them one-time passwords, counted
    from the upgrade, so nobody is locked out by it but each must choose their own."""
    import sqlalchemy as sa

    from paycenter.db import UTCDateTime, utcnow
    from paycenter.migrate import upgrade

    await upgrade(blank_url, "0007")
    long_ago = datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC"))
    users = sa.table(
        "admin_users",
        *(sa.column(name) for name in ("id", "username", "password_hash", "role", "is_active")),
        sa.column("created_at", UTCDateTime()),
    )
    db = Database(blank_url)
    try:
        async with db.transaction() as session:
            await session.execute(
                users.insert().values(
                    id="adm_old", username="admin", password_hash="x", role="admin", is_active=True, created_at=long_ago
                )
            )
        await upgrade(blank_url)
        async with db.reading() as session:
            user = await session.get(AdminUser, "adm_old")
    finally:
        await db.dispose()
    assert user is not None and user.must_change_password is True
    assert abs(user.password_set_at - utcnow()) < timedelta(minutes=5)
    ttl = timedelta(hours=72)
    assert not admins.one_time_password_expired(user, ttl=ttl, now=utcnow())
    assert admins.one_time_password_expired(user, ttl=ttl, now=utcnow() + ttl)
