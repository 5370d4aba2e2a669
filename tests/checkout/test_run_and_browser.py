"""A user's first steps: ``paycenter run`` on an empty database, the seed's curl, paying on a phone.

One real server process (``paycenter run`` on a fresh SQLite file, in a temp dir) serves every test
here; the payer's side is Debian's Chromium driven by Playwright with a phone viewport. These tests
pick no database backend, so they run once.

Chromium missing: skipped, or a failure when ``PAYCENTER_TEST_REQUIRE`` contains ``chromium``.
``PAYCENTER_SCREENSHOTS=1`` rewrites ``docs/screenshots/payment-page.png``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from kit.api import SEED_BODY
from kit.browser import Tab, Windows
from kit.served import paycenter_run

pytestmark = pytest.mark.slow  # a `paycenter run` process

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "payment-page.png"
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "ru-RU",
}
# The page polls every 2 s and counts 5 s down before returning the payer: a few rounds of either.
UPDATE_TIMEOUT_MS = 10_000
REDIRECT_TIMEOUT_MS = 15_000


def _text(s: str) -> str:
    """Collapse every kind of space (the page uses NBSP and narrow NBSP in amounts) to one space."""
    return " ".join(s.split())


# --- the server, as `make run` starts it ------------------------------------------------------


@dataclass
class Server:
    base_url: str
    token: str
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Token": self.token}


TOKEN_IN_CURL = re.compile(r"X-API-Token: (pct_[A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    workdir = tmp_path_factory.mktemp("paycenter-run")  # cwd: no stray .env or ./paycenter.db
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env.update(
        PAYCENTER_DATABASE_URL=f"sqlite:///{workdir / 'paycenter.db'}",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    async with paycenter_run(workdir, env) as running:
        output = running.output()
        match = TOKEN_IN_CURL.search(output)
        assert match, f"no demo API token in the output of `paycenter run`:\n{output}"
        token = match.group(1)
        assert f"\n    {token}\n" in output  # also shown on a line of its own, to copy
        assert f"{running.base_url}/docs" in output
        yield Server(running.base_url, token, running.log)


@pytest.fixture(scope="module")
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A client outside the browser: the merchant's server, or a bank calling back."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, trust_env=False) as client:
        yield client


async def new_payment(api: httpx.AsyncClient, server: Server, **overrides: Any) -> dict[str, Any]:
    r = await api.post("/api/payment/init", json={**SEED_BODY, **overrides}, headers=server.headers)
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def public_view(api: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    r = await api.get(f"/api/payment/{payment_id}")
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_seed_curl_against_the_running_server(server: Server, api: httpx.AsyncClient) -> None:
    # The seed's "Тестирование API" request, byte for byte, with the printed token and local host.
    r = await api.post(
        "/api/payment/init",
        headers={"Content-Type": "application/json", "X-API-Token": server.token},
        content="""{
    "amount": 500,
    "currency": "KZT",
    "description": "Тестовый платеж",
    "webhook_url": "https://webhook.site/YOUR-ID",
    "webhook_secret": "test_secret_key",
    "metadata": {
      "user_id": "12345",
      "order_id": "TEST-001"
    }
  }""".encode(),
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    pid = data["transaction_id"]
    assert re.fullmatch(r"[0-9A-F]{32}", pid)
    assert data["payment_url"] == f"{server.base_url}/pay/{pid}"
    page = await api.get(data["payment_url"])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Demo shop" in page.text
    view = await public_view(api, pid)
    assert (view["amount"], view["paid_amount"], view["status"]) == ("500.00", "0.00", "pending")
    assert (await api.get(f"/api/payment/{pid}", headers={"X-API-Token": "nope"})).status_code == 200
    assert (await api.post("/api/payment/init", json=SEED_BODY)).status_code == 401


# --- the payer's phone -------------------------------------------------------------------------


class Phone(Tab):
    async def fits(self, what: str) -> None:
        """Nothing sticks out sideways: no horizontal scrolling on the phone."""
        width, inner = await self.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"{what}: page is {width}px wide on a {inner}px screen"

    async def text(self, test_id: str) -> str:
        return _text(await self.page.get_by_test_id(test_id).inner_text())


@pytest.fixture
async def phone(browser: Any, server: Server) -> AsyncIterator[Phone]:
    """The payer's phone: one window, watched for console and page errors (the browser fixture
    skips, or fails, without Chromium; the tests above need none)."""
    windows = Windows(browser, PHONE, UPDATE_TIMEOUT_MS)
    try:
        tab = await windows.open()
        yield Phone(tab.page, tab.errors)
    finally:
        await windows.close()


SHOP_PAGE = "<!doctype html><meta charset=utf-8><title>Shop</title><h1>Спасибо за заказ</h1>"


class Shop:
    """A tiny merchant site on 127.0.0.1: where success_url sends the payer back."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                shop.hits.append(self.path)
                body = SHOP_PAGE.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def shop() -> Iterator[Shop]:
    shop = Shop()
    thread = threading.Thread(target=shop.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield shop
    finally:
        shop.httpd.shutdown()
        shop.httpd.server_close()


@pytest.mark.browser
async def test_pay_in_two_parts_on_a_phone(server: Server, api: httpx.AsyncClient, phone: Phone) -> None:
    from playwright.async_api import expect

    data = await new_payment(api, server)
    pid = data["transaction_id"]
    page = phone.page
    await page.goto(data["payment_url"])

    # Russian by default.
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    assert await phone.text("amount") == "500,00 ₸"
    assert await phone.text("status") == "Ожидает оплаты"
    merchant = _text(await page.locator(".merchant").inner_text())
    assert merchant == "Получатель: Demo shop"
    assert "Тестовый платеж" in await page.locator(".description").inner_text()
    assert _text(await page.get_by_test_id("pay-full").inner_text()) == "Оплатить 500,00 ₸"
    assert await page.get_by_test_id("part-amount").get_attribute("placeholder") == "500,00"
    for link in await page.locator(".langs a").all():  # big enough for a finger
        box = await link.bounding_box()
        assert box and box["height"] >= 40 and box["width"] >= 36, f"language link tap area {box}"
    await phone.fits("pending, Russian")
    if os.environ.get("PAYCENTER_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
    await page.set_viewport_size({"width": 320, "height": 640})  # the smallest phones still in use
    await phone.fits("pending, 320 px")
    await page.set_viewport_size(PHONE["viewport"])

    # English and Kazakh through the language links; the choice sticks.
    await page.locator("a[hreflang=en]").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    assert await phone.text("status") == "Awaiting payment"
    assert await phone.text("amount") == "500.00 ₸"
    assert _text(await page.locator(".merchant").inner_text()) == "Pay to: Demo shop"
    assert _text(await page.get_by_test_id("pay-full").inner_text()) == "Pay 500.00 ₸"
    assert await page.get_by_test_id("part-amount").get_attribute("placeholder") == "500.00"
    await phone.fits("pending, English")
    await page.locator("a[hreflang=kk]").click()
    await expect(page.locator("html")).to_have_attribute("lang", "kk")
    assert await phone.text("status") == "Төлемді күтуде"
    assert _text(await page.get_by_test_id("pay-part").inner_text()) == "Бір бөлігін төлеу"
    await phone.fits("pending, Kazakh")
    await page.goto(data["payment_url"])  # the cookie keeps the payer's language
    await expect(page.locator("html")).to_have_attribute("lang", "kk")
    await page.locator("a[hreflang=ru]").click()
    await expect(page.locator("html")).to_have_attribute("lang", "ru")

    # A part: 200 of 500.
    await page.get_by_test_id("part-amount").fill("200")
    await page.get_by_test_id("pay-part").click()
    await expect(page.get_by_test_id("status")).to_have_text("Оплачен частично")
    await expect(page.get_by_test_id("status")).to_have_class(re.compile(r"\bstatus-partially_paid\b"))
    assert await page.locator("#payment").get_attribute("data-status") == "partially_paid"
    assert await phone.text("paid") == "200,00 ₸"
    assert await phone.text("remaining") == "300,00 ₸"
    assert await phone.text("notice") == "Часть суммы оплачена. Оплатите остаток."
    assert _text(await page.get_by_test_id("pay-full").inner_text()) == "Оплатить 300,00 ₸"
    await phone.fits("partially paid")
    view = await public_view(api, pid)
    assert (view["status"], view["paid_amount"], view["remaining_amount"]) == (
        "partially_paid",
        "200.00",
        "300.00",
    )

    # The rest.
    await page.get_by_test_id("pay-full").click()
    await expect(page.get_by_test_id("status")).to_have_text("Оплачен")
    assert await phone.text("paid") == "500,00 ₸"
    assert await page.get_by_test_id("remaining").count() == 0
    assert await page.get_by_test_id("pay-full").count() == 0  # nothing left to press
    assert "Оплата прошла успешно" in await page.locator(".done").inner_text()
    await phone.fits("paid")
    view = await public_view(api, pid)
    amounts = (view["amount"], view["paid_amount"], view["remaining_amount"])
    assert (view["status"], *amounts) == ("paid", "500.00", "500.00", "0.00")
    assert view["paid_at"]
    assert phone.errors == []


@pytest.mark.browser
async def test_payer_returns_to_success_url(server: Server, api: httpx.AsyncClient, phone: Phone, shop: Shop) -> None:
    from playwright.async_api import expect

    success_url = f"{shop.url}/thanks?order=TEST-002"
    data = await new_payment(api, server, success_url=success_url, fail_url=f"{shop.url}/sorry")
    page = phone.page
    await page.goto(data["payment_url"])
    await page.get_by_test_id("pay-full").click()
    await expect(page.get_by_test_id("status")).to_have_text("Оплачен")
    await expect(page.get_by_test_id("return")).to_have_attribute("href", success_url)
    await expect(page.locator("#redirect-note")).to_contain_text("Возвращаем в магазин")
    await phone.fits("paid, returning to the shop")
    await page.wait_for_url(success_url, timeout=REDIRECT_TIMEOUT_MS)
    await expect(page.locator("h1")).to_have_text("Спасибо за заказ")
    assert shop.hits[0] == "/thanks?order=TEST-002"
    assert phone.errors == []


@pytest.mark.browser
async def test_open_page_follows_a_payment_made_elsewhere(server: Server, api: httpx.AsyncClient, phone: Phone) -> None:
    from playwright.async_api import expect

    # A long word and a large sum must still fit the phone.
    description = "Заказ №" + "9" * 60 + " — доставка"
    data = await new_payment(api, server, amount=12345678.9, description=description)
    pid = data["transaction_id"]
    page = phone.page
    await page.goto(data["payment_url"])
    assert await phone.text("amount") == "12 345 678,90 ₸"
    await phone.fits("long description, large sum")

    # Paid outside this browser (another tab, the bank): the open page notices by itself.
    r = await api.post(f"/pay/{pid}/sandbox", data={"action": "pay", "checkout_id": "elsewhere"})
    assert r.status_code == 303
    await expect(page.get_by_test_id("status")).to_have_text("Оплачен", timeout=UPDATE_TIMEOUT_MS)
    await expect(page.get_by_test_id("status")).to_have_class(re.compile(r"\bstatus-paid\b"))
    assert await phone.text("paid") == "12 345 678,90 ₸"
    assert "notice=" not in page.url
    assert (await public_view(api, pid))["paid_amount"] == "12345678.90"
    assert phone.errors == []
