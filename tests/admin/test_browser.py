"""An operator's day in the admin panel, in Debian's Chromium against a real ``paycenter run``.

One server process on a fresh SQLite file serves every test here. Merchants' webhooks go to a
local endpoint this test controls: it first fails (one try only, so the delivery ends ``failed``
at once), later answers 200. The operator logs in as the admin ``paycenter run`` printed (choosing
their own password at that first login, as every operator must), finds a
payment by its metadata ``order_id``, reads its metadata and webhook log, resends the failed
delivery, refunds part of the payment and checks the dashboard against the database; a viewer
(made with ``paycenter admin create-user``) cannot refund, a form without its CSRF token is
refused, an operator changes their own password (ending their other session), and five wrong
passwords lock the login. The lock test runs last: it locks the address.

Chromium missing: skipped, or a failure when ``PAYCENTER_TEST_REQUIRE`` contains ``chromium``.
``PAYCENTER_SCREENSHOTS=1`` rewrites ``docs/screenshots/admin-dashboard.png``,
``admin-transaction.png`` and (when ``/docs`` serves the interactive reference) ``api-docs.png``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select, update

from kit.biller_rows import biller_pay, insert_payment
from kit.browser import TIMEOUT_MS, Tab, Windows, require_chromium
from kit.languages import VISIBLE_TEXT_JS, foreign
from kit.served import PAYCENTER, paycenter_run
from kit.sink import Sink, eventually
from paycenter import quarantine
from paycenter.admin.links import router as links_router
from paycenter.admin.pages import router
from paycenter.db import Database
from paycenter.payments.models import Payment, Refund
from paycenter.providers import terminals
from paycenter.webhooks.models import Delivery

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WANT_SCREENSHOTS = os.environ.get("PAYCENTER_SCREENSHOTS") == "1"
ALMATY = ZoneInfo("Asia/Almaty")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _text(s: str) -> str:
    return " ".join(s.split())


# --- the server and the merchants' endpoint --------------------------------------------------


OS_USER = "ops-browser"  # who runs the `paycenter` commands here, as the audit log names them


@dataclass
class Server:
    base_url: str
    database_url: str
    admin_password: str  # the one-time password `paycenter run` printed
    demo_token: str
    env: dict[str, str]
    workdir: Path
    sink: Sink
    log: Path
    # Operators past their first login, and the passwords they chose then.
    chosen: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    require_chromium()  # before the server: without a browser no test here runs
    workdir = tmp_path_factory.mktemp("paycenter-admin")
    sink = await Sink().start()
    database_url = f"sqlite:///{workdir / 'paycenter.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env.update(
        PAYCENTER_DATABASE_URL=database_url,
        PAYCENTER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        PAYCENTER_WEBHOOK_RETRY_SCHEDULE="",  # one try: a failing endpoint fails the delivery at once
        PAYCENTER_WORKER_POLL_INTERVAL="0.1",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
        LOGNAME=OS_USER,
        SUDO_USER="",
    )
    try:
        async with paycenter_run(workdir, env) as running:
            output = running.output()
            password = re.search(r"Created the first admin: user 'admin', one-time password: (\S+)", output)
            token = re.search(r"X-API-Token: (pct_[A-Za-z0-9_-]+)", output)
            assert password and token, output
            yield Server(
                running.base_url, database_url, password.group(1), token.group(1), env, workdir, sink, running.log
            )
    finally:
        await sink.stop()


@pytest.fixture(scope="module")
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture
async def tabs(browser: Any) -> AsyncIterator[Any]:
    """New browser windows (each its own cookies), all watched for console and page errors; every
    dialog (confirm("...?")) is accepted, as the operator says yes, and recorded on the tab."""
    windows = Windows(browser)

    async def open_tab() -> Tab:
        tab = await windows.open()

        async def on_dialog(dialog: Any) -> None:
            tab.dialogs.append(dialog.message)
            await dialog.accept()

        tab.page.on("dialog", on_dialog)
        return tab

    try:
        yield open_tab
        # Refused requests (401, 403, 422, 429) are answers, not errors: the panel itself runs no
        # script that fails, and nothing it loads goes missing.
        errors = [e for e in windows.errors() if not re.search(r"status of (401|403|422|429)\b", e)]
        assert errors == []
    finally:
        await windows.close()


async def sign_in(tab: Tab, server: Server, username: str, one_time: str, *, start: str = "/admin") -> None:
    """Sign in and land on ``start``. The first time, with the one-time password: the panel then
    asks for a password of the operator's own, chosen here and used from then on."""
    from playwright.async_api import expect

    page = tab.page
    await page.goto(server.base_url + start)
    await expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    await page.locator("input[name=username]").fill(username)
    await page.locator("input[name=password]").fill(server.chosen.get(username, one_time))
    await page.get_by_test_id("sign-in").click()
    if username not in server.chosen:
        await expect(page).to_have_url(re.compile(r"/admin/password\?next="))
        await expect(page.get_by_test_id("must-change")).to_be_visible()
        chosen = f"{username} chose this in the browser"
        await choose_password(page, one_time, chosen)
        server.chosen[username] = chosen
        await expect(page.get_by_test_id("notice")).to_have_text("Пароль изменён. Другие ваши сеансы завершены.")
        await expect(page).to_have_url(re.compile(re.escape(server.base_url + start) + r"(\?notice=.*)?$"))
        await page.goto(server.base_url + start)
    await expect(page).to_have_url(server.base_url + start)
    await expect(page.get_by_test_id("me")).to_contain_text(username)


async def choose_password(page: Any, current: str, new: str, again: str | None = None) -> None:
    form = page.get_by_test_id("password-form")
    await form.locator("input[name=current_password]").fill(current)
    await form.locator("input[name=new_password]").fill(new)
    await form.locator("input[name=new_password_again]").fill(new if again is None else again)
    await page.get_by_test_id("save-password").click()


# --- the data: a few merchants' payments ------------------------------------------------------


@dataclass
class Shop:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Token": self.token}


async def pay(api: httpx.AsyncClient, payment_id: str, amount: str | None = None) -> None:
    form = {"action": "pay", "checkout_id": f"browser-{payment_id[:8]}-{amount}"}
    if amount:
        form["amount"] = amount
    r = await api.post(f"/pay/{payment_id}/sandbox", data=form)
    assert r.status_code == 303, r.text


async def new_payment(api: httpx.AsyncClient, shop: Shop, **body: Any) -> str:
    r = await api.post("/api/payment/init", json={"currency": "KZT", **body}, headers=shop.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["transaction_id"])


async def webhook_log(api: httpx.AsyncClient, shop: Shop, payment_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/api/payment/{payment_id}/webhooks", headers=shop.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


@dataclass
class Day:
    coffee: Shop
    books: Shop
    demo: Shop
    key: str  # the payment the operator looks for
    order_id: str
    hook_path: str
    viewer_password: str
    extra: dict[str, str] = field(default_factory=dict)  # payments made later, by role


@pytest.fixture(scope="module")
async def day(server: Server, api: httpx.AsyncClient, browser: Any) -> Day:
    """Two merchants made in the panel (their tokens read off the page, shown once), the demo
    shop, and a morning of payments: paid, part-paid, refunded, pending, cancelled."""
    from playwright.async_api import expect

    # A viewer, made the way an operator would; the CLI starts slowly, so it runs meanwhile.
    create_user = await asyncio.create_subprocess_exec(
        *(str(PAYCENTER), "admin", "create-user", "auditor", "--role", "viewer"),
        cwd=server.workdir,
        env=server.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    windows = Windows(browser)
    tab = await windows.open()
    page = tab.page
    await sign_in(tab, server, "admin", server.admin_password, start="/admin/merchants")
    shops = []
    for name, path in (("Кофейня «Зерно»", "/hooks/zerno"), ("Book Corner", "/hooks/books")):
        form = page.locator("form[action='/admin/merchants']")
        await form.locator("input[name=name]").fill(name)
        await form.locator("input[name=webhook_url]").fill(server.sink.url(path))
        await form.locator("button").click()
        shown = page.get_by_test_id("shown-once")
        await expect(shown).to_contain_text(name)
        token = re.search(r"pct_[A-Za-z0-9_-]+", await shown.inner_text())
        assert token
        shops.append(Shop(name, token.group(0)))
        await page.reload()
        await expect(page.get_by_test_id("shown-once")).to_have_count(0)  # shown once, then gone
    await windows.close()
    coffee, books = shops
    demo = Shop("Demo shop", server.demo_token)

    hook_path = "/hooks/zerno-orders"
    server.sink.on(hook_path, 500)  # the coffee shop's order endpoint is down this morning
    order_id = "ZRN-2024-0042"
    key = await new_payment(
        api,
        coffee,
        amount=12500,
        description="Капучино ×2, круассан",
        webhook_url=server.sink.url(hook_path),
        customer_name="Айгерим С.",
        metadata={
            "order_id": order_id,
            "user_id": "cust-8841",
            "table": 7,
            "items": [{"sku": "CAP-L", "qty": 2}, {"sku": "CRS", "qty": 1}],
            "loyalty": {"card": "ZR-5521", "points": 125},
        },
    )
    await pay(api, key)
    for i, (shop, amount, part, refund) in enumerate(
        [
            (coffee, 4800, None, None),
            (coffee, 9900, "4000", None),
            (books, 15600, None, "all"),
            (books, 7300, None, None),
            (books, 22000, "10000", None),
            (demo, 500, None, None),
            (demo, 3200, None, "1200"),
            (coffee, 6100, "skip", None),
        ]
    ):
        pid = await new_payment(
            api,
            shop,
            amount=amount,
            description=f"Заказ №{1000 + i}",
            metadata={"order_id": f"ORD-{1000 + i}", "user_id": f"u-{300 + i}"},
        )
        if part == "skip":
            r = await api.post(f"/api/payment/{pid}/cancel", headers=shop.headers, json={"reason": "payer left"})
            assert r.status_code == 200, r.text
            continue
        await pay(api, pid, part)
        if refund:
            body = {} if refund == "all" else {"amount": refund}
            r = await api.post(f"/api/payment/{pid}/refund", json=body, headers=shop.headers)
            assert r.status_code == 200, r.text
    await new_payment(api, demo, amount=900, description="Ожидает оплаты", metadata={"order_id": "ORD-PENDING"})
    await history(server, api, demo)

    async def key_failed() -> bool:
        log = await webhook_log(api, coffee, key)
        return len(log) == 1 and log[0]["status"] == "failed"

    await eventually(key_failed, timeout=10, what="the key payment's webhook to fail")
    out, _ = await asyncio.wait_for(create_user.communicate(), 30)
    assert create_user.returncode == 0, out.decode()
    viewer = re.search(r"user auditor \(viewer\) created; one-time password: (\S+)", out.decode())
    assert viewer, out.decode()
    return Day(coffee, books, demo, key, order_id, hook_path, viewer.group(1))


# Earlier days, for the 30-day figures and the chart: (days ago, amount); the last is too old to count.
HISTORY = [(1, 18400), (1, 6200), (2, 25300), (3, 9800), (4, 31200), (5, 14700), (6, 8800), (8, 21900), (9, 12600)]
HISTORY += [(11, 27400), (13, 7700), (15, 19900), (16, 11300), (19, 24600), (22, 16100), (25, 9400), (28, 22800)]
HISTORY += [(45, 50000)]


async def history(server: Server, api: httpx.AsyncClient, shop: Shop) -> None:
    """Paid payments of earlier days: made through the API now, then dated back in the database."""
    dated = {}
    for i, (days_ago, amount) in enumerate(HISTORY):
        pid = await new_payment(api, shop, amount=amount, description=f"Заказ №{900 + i}")
        await pay(api, pid)
        dated[pid] = datetime.now(ALMATY) - timedelta(days=days_ago)
    database = Database(server.database_url)
    try:
        async with database.transaction() as session:
            for pid, when in dated.items():
                await session.execute(update(Payment).where(Payment.id == pid).values(created_at=when))
    finally:
        await database.dispose()


async def settled(server: Server) -> None:
    """Wait until the worker has tried every webhook (none left pending)."""

    async def none_pending() -> bool:
        database = Database(server.database_url)
        try:
            async with database.reading() as session:
                statuses = list(await session.scalars(select(Delivery.status)))
        finally:
            await database.dispose()
        return bool(statuses) and "pending" not in statuses

    await eventually(none_pending, timeout=10, what="every webhook delivery to be tried")


# --- the operator ---------------------------------------------------------------------------------


async def test_find_inspect_resend_refund_and_check_the_dashboard(server, api, day, tabs):
    from playwright.async_api import expect

    tab = await tabs()
    page = tab.page
    await sign_in(tab, server, "admin", server.admin_password)

    # Find the payment by its metadata order_id.
    await page.get_by_role("link", name="Транзакции").click()
    await page.get_by_test_id("search").fill(day.order_id)
    await page.get_by_test_id("filter").click()
    rows = page.locator("[data-testid=transactions] tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text(day.order_id)
    await expect(rows).to_contain_text("Кофейня «Зерно»")
    await rows.locator("a").click()
    await expect(page.get_by_test_id("payment-id")).to_have_text(day.key)

    # Its metadata as a tree, and the webhook log: one delivery, failed with a 500.
    metadata = page.get_by_test_id("metadata")
    for piece in ("order_id", day.order_id, "user_id", "cust-8841", "CAP-L", "ZR-5521", "125"):
        await expect(metadata).to_contain_text(piece)
    delivery = page.get_by_test_id("delivery")
    await expect(delivery).to_have_count(1)
    await expect(delivery).to_have_attribute("data-status", "failed")
    await expect(delivery.locator("details.attempt")).to_have_count(1)
    attempt = delivery.locator("details.attempt").first
    await expect(attempt.locator("summary")).to_contain_text("500")
    await expect(attempt).to_contain_text("webhook-id")
    await expect(attempt).to_contain_text(f'"transaction_id": "{day.key}"')
    await expect(attempt).to_contain_text("nope")  # the endpoint's answer
    assert len(server.sink.at(day.hook_path)) == 1

    # The endpoint is back: resend; after a reload the log shows the success.
    server.sink.on(day.hook_path, 200)
    await delivery.get_by_test_id("resend").click()
    await expect(page.get_by_test_id("notice")).to_have_text("Готово.")

    async def delivered() -> bool:
        log = await webhook_log(api, day.coffee, day.key)
        return log[0]["status"] == "succeeded"

    await eventually(delivered, timeout=10, what="the resent webhook to be delivered")
    await page.reload()
    await expect(delivery).to_have_attribute("data-status", "succeeded")
    await expect(delivery.get_by_test_id("delivery-status")).to_have_text("succeeded")
    await expect(delivery.locator("details.attempt")).to_have_count(2)
    await expect(delivery.locator("details.attempt").last.locator("summary")).to_contain_text("200")
    received = server.sink.at(day.hook_path)
    assert len(received) == 2 and received[0].headers["webhook-id"] == received[1].headers["webhook-id"]

    # A partial refund, confirmed in the dialog.
    await page.get_by_test_id("refund-amount").fill("2500")
    await page.locator("input[name=reason]").fill("круассан закончился")
    await page.get_by_test_id("refund").click()
    await expect(page.get_by_test_id("notice")).to_have_text("Готово.")
    assert tab.dialogs == ["Вернуть деньги покупателю?"]
    refunds = page.get_by_test_id("refunds")
    await expect(refunds.locator("tbody tr")).to_have_count(1)
    await expect(refunds).to_contain_text("2 500.00 KZT")
    await expect(refunds).to_contain_text("круассан закончился")
    await expect(refunds).to_contain_text("succeeded")
    await expect(page.get_by_test_id("refunded")).to_have_text("2 500.00 KZT")
    await expect(page.get_by_test_id("status")).to_have_text("paid")  # in part: still paid
    r = await api.get(f"/api/payment/{day.key}", headers=day.coffee.headers)
    assert r.json()["data"]["refunded_amount"] == "2500.00"

    async def refunded_delivered() -> bool:
        log = await webhook_log(api, day.coffee, day.key)
        return len(log) == 2 and all(d["status"] == "succeeded" for d in log)

    await eventually(refunded_delivered, timeout=10, what="the refunded webhook")
    await page.reload()
    await expect(page.get_by_test_id("delivery")).to_have_count(2)
    if WANT_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.goto(f"{server.base_url}/admin/transactions/{day.key}")  # without the "done" notice
        await page.screenshot(path=str(SCREENSHOTS / "admin-transaction.png"))

    # The dashboard, against the database.
    await settled(server)
    await page.get_by_role("link", name="Сводка").click()
    await expect(page.get_by_test_id("today-count")).to_be_visible()
    want = await figures(server)
    assert want["today"]["count"] == 10  # every payment above was made just now
    assert want["today"]["volume"] == 5_790_000  # 57 900 KZT received, refunds or not
    for key in ("today", "last_30"):
        figs = want[key]
        await expect(page.get_by_test_id(f"{key}-count")).to_have_text(str(figs["count"]))
        for status, n in figs["status"].items():
            await expect(page.get_by_test_id(f"{key}-status-{status}")).to_have_text(str(n))
        volume = _text(await page.get_by_test_id(f"{key}-volume-KZT").inner_text())
        assert volume == f"Оборот: {money(figs['volume'])}", volume
        await expect(page.get_by_test_id(f"{key}-conversion")).to_have_text(f"{figs['conversion'] * 100:.1f}%")
    await expect(page.get_by_test_id("webhook-success")).to_have_text(f"{want['webhook_success'] * 100:.1f}%")
    await expect(page.get_by_test_id("backlog")).to_have_text("0")
    assert await page.get_by_text("Нет работающих воркеров").count() == 0  # `run` runs the worker
    assert want["last_30"]["count"] == 10 + len(HISTORY) - 1
    bars = await page.locator("svg.chart rect").evaluate_all(
        "rects => rects.map(r => [r.dataset.day, Number(r.dataset.value)])"
    )
    assert len(bars) == 30 and bars[-1][0] == datetime.now(ALMATY).date().isoformat()
    assert {day: value for day, value in bars if value} == want["daily"]
    if WANT_SCREENSHOTS:
        await page.screenshot(path=str(SCREENSHOTS / "admin-dashboard.png"))


def money(minor: int) -> str:
    whole, cents = divmod(minor, 100)
    return f"{whole:,}".replace(",", " ") + f".{cents:02d} KZT"


async def figures(server: Server) -> dict[str, Any]:
    """The dashboard's figures, worked out here from the rows (the app's own Database, read-only)."""
    database = Database(server.database_url)
    try:
        async with database.reading() as session:
            payments = list(await session.execute(select(Payment.created_at, Payment.status, Payment.paid_amount)))
            deliveries = list(await session.scalars(select(Delivery.status)))
    finally:
        await database.dispose()
    today = datetime.now(ALMATY).date()
    start = datetime.combine(today - timedelta(days=29), datetime.min.time(), ALMATY)
    out: dict[str, Any] = {}
    for key in ("today", "last_30"):
        chosen = [
            (status, paid)
            for created, status, paid in payments
            if created >= start and (key == "last_30" or created.astimezone(ALMATY).date() == today)
        ]
        statuses: dict[str, int] = defaultdict(int)
        for status, _ in chosen:
            statuses[status] += 1
        out[key] = {
            "count": len(chosen),
            "status": dict(statuses),
            "volume": sum(paid for _, paid in chosen),
            "conversion": (statuses["paid"] + statuses["refunded"]) / len(chosen),
        }
    succeeded, failed = deliveries.count("succeeded"), deliveries.count("failed")
    out["webhook_success"] = succeeded / (succeeded + failed)
    daily: dict[str, int] = defaultdict(int)
    for created, _, paid in payments:
        if created >= start:
            daily[created.astimezone(ALMATY).date().isoformat()] += paid
    out["daily"] = {d: v for d, v in daily.items() if v}
    return out


# --- a viewer, a forged form, a locked login -----------------------------------------------------


async def test_a_viewer_cannot_refund(server, api, day, tabs):
    from playwright.async_api import expect

    tab = await tabs()
    page = tab.page
    await sign_in(tab, server, "auditor", day.viewer_password, start=f"/admin/transactions/{day.key}")
    await expect(page.get_by_test_id("me")).to_have_text("auditor · наблюдатель")
    await expect(page.get_by_test_id("payment-id")).to_have_text(day.key)
    await expect(page.get_by_test_id("metadata")).to_contain_text(day.order_id)
    await expect(page.get_by_test_id("webhook-log")).to_be_visible()
    for absent in ("refund", "refund-amount", "resend", "cancel"):
        await expect(page.get_by_test_id(absent)).to_have_count(0)
    await expect(page.locator("form[action$='/refund']")).to_have_count(0)
    before = (await api.get(f"/api/payment/{day.key}", headers=day.coffee.headers)).json()["data"]

    # A forged refund form, with the viewer's own valid CSRF token, posted by the browser.
    async with page.expect_response(lambda r: r.url.endswith("/refund")) as answer:
        await page.evaluate(
            """(pid) => {
                const form = document.createElement('form');
                form.method = 'post';
                form.action = `/admin/transactions/${pid}/refund`;
                for (const [name, value] of [['amount', '100'],
                        ['csrf_token', document.querySelector('input[name=csrf_token]').value]]) {
                    const input = document.createElement('input');
                    input.type = 'hidden'; input.name = name; input.value = value;
                    form.appendChild(input);
                }
                document.body.appendChild(form);
                form.submit();
            }""",
            day.key,
        )
    assert (await answer.value).status == 403
    await expect(page.get_by_test_id("forbidden")).to_have_text("У вашей роли нет прав на это действие.")
    after = (await api.get(f"/api/payment/{day.key}", headers=day.coffee.headers)).json()["data"]
    assert (after["refunded_amount"], after["status"]) == (before["refunded_amount"], before["status"])


async def test_a_form_without_its_csrf_token_is_refused(server, api, day, tabs):
    from playwright.async_api import expect

    tab = await tabs()
    page = tab.page
    await sign_in(tab, server, "admin", server.admin_password, start=f"/admin/transactions/{day.key}")
    before = (await api.get(f"/api/payment/{day.key}", headers=day.coffee.headers)).json()["data"]
    form = page.locator("form[action$='/refund']")
    await form.locator("input[name=csrf_token]").evaluate("input => input.remove()")
    await expect(form.locator("input[name=csrf_token]")).to_have_count(0)
    await page.get_by_test_id("refund-amount").fill("100")
    async with page.expect_response(lambda r: r.url.endswith("/refund")) as answer:
        await page.get_by_test_id("refund").click()
    assert (await answer.value).status == 403
    await expect(page.get_by_test_id("forbidden")).to_contain_text("CSRF")
    after = (await api.get(f"/api/payment/{day.key}", headers=day.coffee.headers)).json()["data"]
    assert after["refunded_amount"] == before["refunded_amount"]


async def test_first_login_forces_a_password_of_ones_own_and_operators_change_it(server, tabs):
    """A new operator's one-time password opens only the page that replaces it; later they change
    it themselves (the current one first), which ends their other sessions. The audit page shows
    it all, with the shell commands that made the user."""
    from playwright.async_api import expect

    made = await asyncio.create_subprocess_exec(
        *(str(PAYCENTER), "admin", "create-user", "cashier", "--role", "admin"),
        cwd=server.workdir,
        env=server.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(made.communicate(), 30)
    assert made.returncode == 0, err.decode()
    found = re.search(r"user cashier \(admin\) created; one-time password: (\S+)", out.decode())
    assert found, out.decode()
    one_time = found.group(1)
    assert "the first login asks the user to choose their own password" in err.decode()

    tab = await tabs()
    page = tab.page
    await page.goto(server.base_url + "/admin/transactions")
    await page.locator("input[name=username]").fill("cashier")
    await page.locator("input[name=password]").fill(one_time)
    await page.get_by_test_id("sign-in").click()
    await expect(page).to_have_url(server.base_url + "/admin/password?next=/admin/transactions")
    await expect(page.get_by_test_id("must-change")).to_have_text(
        "Вы вошли с одноразовым паролем. Придумайте свой пароль, чтобы продолжить."
    )
    await expect(page.locator("header nav")).to_have_count(0)  # nowhere else to go
    await page.goto(server.base_url + "/admin/merchants")
    await expect(page).to_have_url(server.base_url + "/admin/password?next=/admin/merchants")
    await choose_password(page, one_time, "cashier's first passphrase", "cashier's first passphrasE")
    await expect(page.get_by_test_id("password-error")).to_have_text("Новые пароли не совпадают.")
    await choose_password(page, one_time, "cashier's first passphrase")
    await expect(page.get_by_test_id("notice")).to_have_text("Пароль изменён. Другие ваши сеансы завершены.")
    await expect(page).to_have_url(re.compile(r"/admin/merchants\?notice="))
    await expect(page.locator("header nav")).to_be_visible()

    # The one-time password is spent.
    stale = (await tabs()).page
    await stale.goto(server.base_url + "/admin/login")
    await stale.locator("input[name=username]").fill("cashier")
    await stale.locator("input[name=password]").fill(one_time)
    await stale.get_by_test_id("sign-in").click()
    await expect(stale.get_by_test_id("login-error")).to_have_text("Неверный логин или пароль.")

    # Signed in elsewhere too; then a change of their own from the first window.
    elsewhere = await tabs()
    server.chosen["cashier"] = "cashier's first passphrase"
    await sign_in(elsewhere, server, "cashier", one_time)
    await page.get_by_test_id("password-link").click()
    await expect(page).to_have_url(server.base_url + "/admin/password")
    await expect(page.get_by_test_id("must-change")).to_have_count(0)
    await choose_password(page, "not the password", "cashier's second passphrase")
    await expect(page.get_by_test_id("password-error")).to_have_text("Текущий пароль неверен.")
    await choose_password(page, "cashier's first passphrase", "cashier's second passphrase")
    await expect(page.get_by_test_id("notice")).to_have_text("Пароль изменён. Другие ваши сеансы завершены.")
    await elsewhere.page.reload()
    await expect(elsewhere.page).to_have_url(re.compile(r"/admin/login\?next="))  # that session ended
    await page.get_by_role("link", name="Журнал действий").click()  # this one goes on
    audit = page.get_by_test_id("audit")
    rows = audit.locator("tbody tr")
    for who, action in (
        ("cashier", "password_change"),
        ("cashier", "password_change_failed"),
        (f"cli:{OS_USER}", "admin_user_create"),
        (f"cli:{OS_USER}", "merchant_create"),  # the demo shop `paycenter run` made
    ):
        await expect(rows.filter(has_text=action).filter(has_text=who).first).to_be_visible()
    await expect(rows.filter(has_text="admin_user_create").filter(has_text="cashier")).to_have_count(1)
    server.chosen["cashier"] = "cashier's second passphrase"


# --- every page in every language ----------------------------------------------------------------


async def samples(server: Server, day: Day) -> dict[str, list[str]]:
    """Values for the admin routes' path parameters, chosen so that every part of a page renders:
    a payment with a refund and webhooks, a Kaspi biller payment with Kaspi's pays and a
    quarantined row, one that does not exist (the 404 page); a delivery. Also a terminal."""
    database = Database(server.database_url)
    try:
        async with database.reading() as session:
            refunded = await session.scalar(select(Refund.payment_id).order_by(Refund.created_at).limit(1))
            delivery = await session.scalar(select(Delivery.id).order_by(Delivery.created_at).limit(1))
            merchant_id = await session.scalar(select(Payment.merchant_id).where(Payment.id == day.key))
        assert refunded and delivery and merchant_id
        now = datetime.now(ALMATY)
        biller = await insert_payment(database, merchant_id, now=now, account="4000000017", amount=1_500_000)
        await biller_pay(database, biller, txn_id="90001", account="4000000017", amount=500_000, txn_date=now, now=now)
        async with database.transaction() as session:
            await quarantine.mark(
                session,
                loop=quarantine.Loop.EXPIRER,
                row_id=biller,
                reason="RuntimeError: a row set aside for this test",
                now=now,
                payment_id=biller,
            )
            await terminals.add(
                session,
                name="Касса 1",
                base_url="https://192.168.1.50:8080",
                access_token="t-1",
                camera_url=None,
                now=now,
            )
    finally:
        await database.dispose()
    day.extra.update(refunded=refunded, biller=biller)
    # And two that are no payment: the 404 page, and the 400 page of a path with a NUL in it.
    links = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, trust_env=False) as api:
        for body in (
            {"amount": 5000, "description": "Букет №12", "customer_name": "Айгерим"},
            {"kind": "reusable", "min_amount": 500, "max_amount": 10000, "description": "Донат"},
        ):
            r = await api.post("/api/links", json=body, headers=day.coffee.headers)
            assert r.status_code == 201, r.text
            links.append(r.json()["data"]["id"])
    return {
        "payment_id": [day.key, refunded, biller, "pay_no_such_payment", "%00"],
        "delivery_id": [delivery],
        "link_id": links,
        "kind": ["svg"],
    }


def admin_pages(values: dict[str, list[str]]) -> list[str]:
    """Every GET page of the admin routers, their path parameters filled from ``values``."""
    pages: list[str] = []
    for route in [*router.routes, *links_router.routes]:
        if not isinstance(route, APIRoute) or "GET" not in route.methods:
            continue
        params = re.findall(r"{(\w+)}", route.path)
        missing = [p for p in params if p not in values]
        assert not missing, f"{route.path}: no sample value for {missing}: add one to samples()"
        if not params:
            pages.append(route.path)
            continue
        for combination in itertools.product(*(values[p] for p in params)):
            path = route.path
            for param, value in zip(params, combination, strict=True):
                path = path.replace("{" + param + "}", value)
            pages.append(path)
    return pages


async def test_every_admin_page_in_russian_kazakh_and_english_has_no_words_of_another(server, day, tabs):
    """The rendered text of every admin page, in each of the three languages, holds no word of
    another (tests/kit/languages.py says how that is judged); and the judging can fail: each
    page's English text fails the Russian check, its Russian text the English and the Kazakh ones,
    and an untranslated label put into a page is found."""
    pages = admin_pages(await samples(server, day))
    assert len(pages) >= 12, pages
    tab = await tabs()
    page = tab.page
    await sign_in(tab, server, "admin", server.admin_password)
    texts: dict[str, dict[str, list[str]]] = {}
    not_html = []
    for lang in ("ru", "kk", "en"):
        texts[lang] = {}
        await page.goto(f"{server.base_url}/admin?lang={lang}")  # the language stays for the session
        for path in pages:
            response = await page.request.get(server.base_url + path)
            if "text/html" not in response.headers["content-type"]:
                not_html.append(path)
                continue
            answer = await page.goto(server.base_url + path)
            assert answer is not None and answer.status in (200, 400, 404), (path, answer and answer.status)
            assert await page.locator("html").get_attribute("lang") == lang, path
            texts[lang][path] = await page.evaluate(VISIBLE_TEXT_JS)
        # The 403 page: a form posted without its CSRF token.
        async with page.expect_response(lambda r: r.url.endswith("/admin/quarantine/retry")) as refused:
            await page.evaluate(
                """() => { const f = document.createElement('form'); f.method = 'post';
                    f.action = '/admin/quarantine/retry'; document.body.appendChild(f); f.submit(); }"""
            )
        assert (await refused.value).status == 403
        await page.get_by_test_id("forbidden").wait_for()
        texts[lang]["403"] = await page.evaluate(VISIBLE_TEXT_JS)
    assert "/admin/transactions.csv" in not_html and all(p.endswith((".csv", ".svg")) for p in not_html), not_html
    tab.errors[:] = [e for e in tab.errors if not re.search(r"status of (400|404) .*(pay_no_such_payment|%00)", e)]
    # The pages rendered their data: a refund, webhooks, Kaspi's pay, the quarantined row, the terminal.
    for path, testids in (
        (f"/admin/transactions/{day.extra['refunded']}", ("refund-row", "delivery")),
        (f"/admin/transactions/{day.extra['biller']}", ("biller-pay", "quarantined-row")),
        ("/admin/quarantine", ("quarantined-row",)),
        ("/admin/terminals", ("terminal",)),
    ):
        await page.goto(server.base_url + path)
        for testid in testids:
            assert await page.get_by_test_id(testid).count() > 0, (path, testid)

    found = {
        (lang, path): problems
        for lang in ("ru", "kk", "en")
        for path, shown in texts[lang].items()
        if (problems := foreign(lang, shown, texts["ru"][path]))
    }
    assert found == {}, "\n".join(f"{lang} {path}: {problems}" for (lang, path), problems in found.items())

    # The check can fail, on every page: another language's text is found out.
    for path in texts["ru"]:
        assert foreign("ru", texts["en"][path]), path
        assert foreign("kk", texts["en"][path], texts["ru"][path]), path
        assert foreign("en", texts["ru"][path]), path
        assert foreign("en", texts["kk"][path]), path
        assert foreign("kk", texts["ru"][path], texts["ru"][path]), path  # Russian passed off as Kazakh

    # And one label left untranslated in a page is found; data marked as such is not.
    injected = {
        "ru": "<dl><dt>fee / net</dt><dd translate='no'>pay_x · order_id</dd></dl>",
        "kk": "<p>Оборот по дням</p><p translate='no'>Кофейня «Зерно»</p>",
        "en": "<p>Сумма возврата</p><p translate='no'>Кофейня «Зерно»</p>",
    }
    want = {"ru": ["fee", "net"], "kk": ["Оборот по дням"], "en": ["Сумма возврата"]}
    for lang, html in injected.items():
        await page.goto(f"{server.base_url}/admin?lang={lang}")
        clean = await page.evaluate(VISIBLE_TEXT_JS)
        assert foreign(lang, clean, texts["ru"]["/admin"]) == []
        await page.locator("main").evaluate("(main, html) => main.insertAdjacentHTML('beforeend', html)", html)
        assert foreign(lang, await page.evaluate(VISIBLE_TEXT_JS), texts["ru"]["/admin"]) == want[lang]
    await page.goto(f"{server.base_url}/admin?lang=ru")


async def test_five_wrong_passwords_lock_the_login(server, tabs):
    """Last: the lock holds the address (127.0.0.1) too, for 15 minutes."""
    from playwright.async_api import expect

    tab = await tabs()
    page = tab.page
    await page.goto(server.base_url + "/admin/login")
    error = page.get_by_test_id("login-error")
    for attempt in range(6):
        right = attempt == 5
        await page.locator("input[name=username]").fill("admin")
        password = server.chosen.get("admin", server.admin_password)
        await page.locator("input[name=password]").fill(password if right else f"guess-{attempt}")
        async with page.expect_response(lambda r: r.url.endswith("/admin/login")) as answer:
            await page.get_by_test_id("sign-in").click()
        status = (await answer.value).status
        if right:
            assert status == 429
            await expect(error).to_have_text(
                re.compile(r"Слишком много неудачных попыток входа\. Попробуйте снова через 1[56] мин\.")
            )
        else:
            assert status == 401
            await expect(error).to_have_text("Неверный логин или пароль.")
    await expect(page).to_have_url(server.base_url + "/admin/login")
    await page.goto(server.base_url + "/admin")
    await expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin$"))


# The words of an element (its text nodes not under translate="no").
BAR_TEXT_JS = """(bar) => {
    const out = [];
    const walker = document.createTreeWalker(bar, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.replace(/\\s+/g, ' ').trim();
        const marked = node.parentElement.closest('[translate]');
        if (text && !(marked && marked.getAttribute('translate') === 'no')) out.push(text);
    }
    return out;
}"""


async def test_api_docs_render_from_the_admin_panel(server, tabs):
    """/admin/docs renders the interactive reference with the operations listed (and, with
    PAYCENTER_SCREENSHOTS=1, its README screenshot is taken from /docs)."""
    tab = await tabs()
    page = tab.page
    response = await page.goto(server.base_url + "/admin/docs")
    assert response is not None and response.status == 200
    await page.get_by_text("Create a payment").first.wait_for(timeout=TIMEOUT_MS)
    await page.get_by_text("Refund a payment").first.wait_for(timeout=TIMEOUT_MS)
    tab.errors.clear()  # Scalar's own console chatter is not ours to judge here
    # From the panel, the bar around the reference speaks the panel's language; the reference
    # declares its own (English, the API's, whose descriptions are the contract).
    bars: dict[str, list[str]] = {}
    for lang in ("ru", "kk", "en"):
        await page.goto(f"{server.base_url}/admin/docs?lang={lang}")
        assert await page.locator("html").get_attribute("lang") == lang
        assert await page.locator("#app").get_attribute("lang") == "en"
        bars[lang] = await page.locator("nav.pc-bar").evaluate(BAR_TEXT_JS)
        tab.errors.clear()
    assert bars["ru"] and bars["kk"] and bars["en"]
    assert [foreign(lang, bars[lang], bars["ru"]) for lang in ("ru", "kk", "en")] == [[], [], []], bars
    assert foreign("ru", bars["en"]) and foreign("en", bars["ru"])  # the check can fail
    if WANT_SCREENSHOTS:
        await page.goto(server.base_url + "/docs")
        await page.get_by_text("Create a payment").first.wait_for(timeout=TIMEOUT_MS)
        tab.errors.clear()
        await page.screenshot(path=str(SCREENSHOTS / "api-docs.png"))
