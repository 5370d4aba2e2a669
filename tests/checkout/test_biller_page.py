"""The payment page of a Kaspi biller payment: the account to type in the Kaspi app, the sum due
and the way there, in Russian, Kazakh and English; nothing to start; and, once the payment is
paid or closed, none of it. Payments are written straight into the database (the provider and
its endpoint are not this page's business), on every backend."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from kit.admin import by_testid, text_of
from kit.api import MerchantCreds
from kit.biller_rows import biller_pay, insert_payment
from kit.clock import Clock
from paycenter.app import create_app
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database
from paycenter.payments.models import Payment, PaymentStatus
from paycenter.providers.registry import Providers

ACCOUNT = "1234567890"
STEPS = {
    "ru": [
        "Откройте приложение Kaspi.kz.",
        "Перейдите в раздел «Платежи».",
        "Найдите через поиск «{name}».",
        f"Введите номер счёта {ACCOUNT}.",
        "Проверьте сумму 15 000,00 ₸ и оплатите.",
    ],
    "kk": [
        "Kaspi.kz қосымшасын ашыңыз.",
        "«Төлемдер» бөліміне өтіңіз.",
        "Іздеу арқылы «{name}» табыңыз.",
        f"{ACCOUNT} шот нөмірін енгізіңіз.",
        "15 000,00 ₸ сомасын тексеріп, төлеңіз.",
    ],
    "en": [
        "Open the Kaspi.kz app.",
        "Go to Payments («Платежи» / «Төлемдер» in the app).",
        "Search for “{name}” and open it.",
        f"Enter the account number {ACCOUNT}.",
        "Check that the amount is 15,000.00 ₸ and pay.",
    ],
}
LABEL = {"ru": "Номер счёта", "kk": "Шот нөмірі", "en": "Account number"}
AMOUNT = {"ru": "15 000,00 ₸", "kk": "15 000,00 ₸", "en": "15,000.00 ₸"}


def spaced(text: str) -> str:
    """The page's narrow and non-breaking spaces as plain ones."""
    return text.replace("\u202f", " ").replace("\u00a0", " ")


def steps_of(page: str) -> list[str]:
    block = re.search(r'<ol class="steps" data-testid="biller-steps">(.*?)</ol>', page, re.S)
    assert block, "no steps on the page"
    return [text_of(li) for li in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def biller_block(page: str) -> str:
    match = re.search(r'<div class="kaspi biller" data-testid="biller">(.*?)</div>', page, re.S)
    assert match, "no biller block on the page"
    return match.group(1)


@pytest.fixture
async def named(database_url: str, db: Database, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a service name of its own for the biller (PAYCENTER_KASPI_BILLER_SERVICE_NAME)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        public_url="http://pay.test",
        run_worker=False,
        kaspi_biller_service_name="Фитнес «Алма»",
    )
    app = create_app(ctx=AppContext(settings=settings, db=db, providers=Providers(settings, clock), clock=clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pay.test") as c:
        yield c


@pytest.mark.parametrize("lang", ["ru", "kk", "en"])
async def test_the_page_shows_the_account_the_sum_and_the_way(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock, lang: str
) -> None:
    pid = await insert_payment(db, merchant.merchant_id, now=clock(), account=ACCOUNT)
    r = await client.get(f"/pay/{pid}?lang={lang}")
    assert r.status_code == 200
    page = r.text
    block = biller_block(page)
    # Big and grouped for reading, in spans: a selection copies the digits alone, as the button does.
    assert re.search(r'data-testid="account"[^>]*>(<span>\d{1,3}</span>)+</p>', block)
    assert re.findall(r"<span>(\d+)</span>", block) == ["123", "456", "789", "0"]
    assert 'data-copy="1234567890"' in block
    assert LABEL[lang] in text_of(block)
    assert spaced(by_testid(page, "biller-amount")) == AMOUNT[lang]
    # The merchant's name, as no service name is configured.
    expected = [s.format(name="Test shop") for s in STEPS[lang]]
    assert [spaced(s) for s in steps_of(page)] == expected
    # Nothing to start: no Kaspi start button, no sandbox buttons; the page polls (pay.js, not final).
    assert 'action="/pay/' not in page
    assert 'data-final="false"' in page and "/static/pay.js" in page


async def test_the_amount_due_is_what_remains(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    now = clock()
    pid = await insert_payment(db, merchant.merchant_id, now=now, account=ACCOUNT, amount=1_500_000)
    await biller_pay(db, pid, txn_id="9001", account=ACCOUNT, amount=500_000, txn_date=now, now=now)
    page = (await client.get(f"/pay/{pid}?lang=ru")).text
    assert spaced(by_testid(page, "biller-amount")) == "10 000,00 ₸"
    assert spaced(steps_of(page)[-1]) == "Проверьте сумму 10 000,00 ₸ и оплатите."
    assert 'data-status="partially_paid"' in page


async def test_the_configured_service_name_is_the_one_to_find(
    named: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    pid = await insert_payment(db, merchant.merchant_id, now=clock(), account=ACCOUNT)
    page = (await named.get(f"/pay/{pid}?lang=kk")).text
    assert steps_of(page)[2] == "Іздеу арқылы «Фитнес «Алма»» табыңыз."
    assert "Test shop" not in " ".join(steps_of(page))
    # Escaped as text, like every configured or merchant's text.
    assert "«Алма»" in html.unescape(page)


@pytest.mark.parametrize(
    "change",
    [
        {"status": PaymentStatus.PAID},
        {"status": PaymentStatus.EXPIRED},
        {"status": PaymentStatus.CANCELLED},
        {"expires_in": timedelta(seconds=-1)},  # due, not yet expired by the worker: not payable either
    ],
    ids=["paid", "expired", "cancelled", "past its time"],
)
async def test_nothing_to_pay_shows_no_account(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock, change: dict[str, Any]
) -> None:
    pid = await insert_payment(
        db, merchant.merchant_id, now=clock(), account=ACCOUNT, expires_in=change.get("expires_in", timedelta(hours=1))
    )
    if "status" in change:
        async with db.transaction() as session:
            await session.execute(update(Payment).where(Payment.id == pid).values(status=change["status"]))
    page = (await client.get(f"/pay/{pid}?lang=ru")).text
    assert 'data-testid="biller"' not in page
    assert ACCOUNT not in page and "Номер счёта" not in page
    assert 'data-final="true"' in page


async def test_other_providers_show_no_account(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    pid = await insert_payment(db, merchant.merchant_id, now=clock(), provider="sandbox")
    page = (await client.get(f"/pay/{pid}")).text
    assert 'data-testid="biller"' not in page and "data-copy" not in page
    assert 'data-testid="pay-full"' in page  # the sandbox's own buttons


async def test_the_status_the_page_polls_follows_kaspis_pay(
    client: httpx.AsyncClient, db: Database, merchant: MerchantCreds, clock: Clock
) -> None:
    """pay.js polls /api/payment/{id}/status while the page is not final and reloads when the
    status or the paid sum changes: Kaspi's pay shows there, and the reloaded page is final."""
    now = clock()
    pid = await insert_payment(db, merchant.merchant_id, now=now, account=ACCOUNT, amount=1_500_000)
    before = (await client.get(f"/api/payment/{pid}/status")).json()["data"]
    assert (before["status"], before["paid_amount"]) == ("pending", "0.00")
    await biller_pay(db, pid, txn_id="9002", account=ACCOUNT, amount=1_500_000, txn_date=now, now=now)
    after = (await client.get(f"/api/payment/{pid}/status")).json()["data"]
    assert (after["status"], after["paid_amount"]) == ("paid", "15000.00")
    page = (await client.get(f"/pay/{pid}?lang=ru")).text
    assert 'data-final="true"' in page and 'data-testid="biller"' not in page
    assert "Оплата прошла успешно" in page
