"""The admin panel and the Kaspi biller: a biller payment's account and the pays Kaspi sent for it
on the transaction's page; the biller's settings, to give Kaspi, on the settings page (the data1
secret said to be set, never shown). Payments are written straight into the database, on every
backend."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kit.admin import Operator, by_testid, signed_in, text_of
from kit.api import MerchantCreds
from kit.biller_rows import biller_pay, insert_payment
from kit.clock import Clock
from paycenter.app import create_app
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database
from paycenter.providers.registry import Providers

ACCOUNT = "4000000017"
SECRET = "data1-value-never-shown-7f3a"


def rows_of(page: str, testid: str) -> list[list[str]]:
    table = re.search(rf'data-testid="{testid}">(.*?)</table>', page, re.S)
    assert table, f"no table {testid!r}"
    body = table.group(1).split("<tbody>")[1]
    return [
        [text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


async def test_a_biller_payment_shows_its_account_and_kaspis_pays(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, admin: Operator, clock: Clock
) -> None:
    now = clock()
    pid = await insert_payment(db, merchant.merchant_id, now=now, account=ACCOUNT, amount=1_500_000)
    # Kaspi's txn_date is Almaty time (UTC+5): 14:30 there is 09:30 UTC.
    first = await biller_pay(
        db,
        pid,
        txn_id="18446744073709551615",
        account=ACCOUNT,
        amount=1_000_000,
        txn_date=datetime(2026, 12, 6, 9, 30, tzinfo=UTC),
        now=now,
    )
    second = await biller_pay(
        db,
        pid,
        txn_id="77",
        account=ACCOUNT,
        amount=500_000,
        txn_date=datetime(2026, 12, 6, 19, 5, 1, tzinfo=UTC),  # already the 7th in Almaty
        now=now + timedelta(seconds=5),
    )
    await signed_in(client, admin)
    page = (await client.get(f"/admin/transactions/{pid}")).text
    assert by_testid(page, "account") == ACCOUNT
    assert by_testid(page, "biller-account") == ACCOUNT
    rows = rows_of(page, "biller-pays")
    assert [r[:5] for r in rows] == [
        ["18446744073709551615", str(first), "10 000.00 KZT", "2026-12-06 14:30:00 +05", "0 · принят"],
        ["77", str(second), "5 000.00 KZT", "2026-12-07 00:05:01 +05", "0 · принят"],
    ]
    assert by_testid(page, "status") == "paid"


async def test_other_payments_show_no_biller_card(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, admin: Operator, clock: Clock
) -> None:
    pid = await insert_payment(db, merchant.merchant_id, now=clock(), provider="sandbox")
    await signed_in(client, admin)
    page = (await client.get(f"/admin/transactions/{pid}")).text
    assert 'data-testid="biller"' not in page and 'data-testid="account"' not in page


def _app(database_url: str, db: Database, clock: Clock, **biller: str) -> httpx.AsyncClient:
    settings = Settings(_env_file=None, database_url=database_url, run_worker=False, **biller)  # type: ignore[arg-type]
    # The page reads the settings alone; the providers are built from those this branch knows.
    providers = Providers(settings.model_copy(update={"enabled_providers": "sandbox"}), clock)
    app = create_app(ctx=AppContext(settings=settings, db=db, providers=providers, clock=clock))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin.internal")


@pytest.fixture
async def configured(database_url: str, db: Database, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    async with _app(
        database_url,
        db,
        clock,
        public_url="https://pay.example.kz/",
        enabled_providers="sandbox,kaspi_biller",
        kaspi_biller_path="/kaspi/biller",
        kaspi_biller_format="xml",
        kaspi_biller_allowed_networks="192.0.2.0/24, 10.1.2.3/32",
        kaspi_biller_secret=SECRET,
        kaspi_biller_service_name="Фитнес «Алма»",
        kaspi_biller_account_digits="8",
    ) as c:
        yield c


async def test_the_settings_page_gives_what_kaspi_needs(configured: httpx.AsyncClient, admin: Operator) -> None:
    await signed_in(configured, admin)
    r = await configured.get("/admin/settings?lang=en")
    assert r.status_code == 200
    page = r.text
    assert by_testid(page, "biller-enabled") == "yes"
    assert by_testid(page, "biller-url") == "https://pay.example.kz/kaspi/biller"
    assert 'data-testid="biller-url-guessed"' not in page
    assert by_testid(page, "biller-format") == "XML"
    assert by_testid(page, "biller-networks") == "192.0.2.0/24, 10.1.2.3/32"
    assert by_testid(page, "biller-secret") == "set (not shown)"
    assert by_testid(page, "biller-service-name") == "Фитнес «Алма»"
    assert by_testid(page, "biller-account-digits") == "8"
    assert SECRET not in page
    # Linked from the menu, as the current page.
    assert re.search(r'<a href="/admin/settings" aria-current="page">Settings</a>', page)


async def test_the_settings_page_of_a_biller_not_set_up(
    database_url: str, db: Database, clock: Clock, admin: Operator
) -> None:
    async with _app(database_url, db, clock) as c:
        await signed_in(c, admin)
        page = (await c.get("/admin/settings?lang=en")).text
    assert by_testid(page, "biller-enabled").startswith("no add kaspi_biller to PAYCENTER_ENABLED_PROVIDERS")
    # No public URL: the address is this request's own, and the page says it may not be Kaspi's.
    assert by_testid(page, "biller-url") == "http://admin.internal/kaspi/biller"
    assert "PAYCENTER_PUBLIC_URL is not set" in by_testid(page, "biller-url-guessed")
    assert by_testid(page, "biller-networks").startswith("none: Kaspi cannot call the address")
    assert by_testid(page, "biller-secret") == "not set: only the address is checked"
    assert by_testid(page, "biller-service-name") == "not set: the payer is shown the merchant's name"
