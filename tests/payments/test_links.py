"""Payment links on every backend: made in the admin and through the API, paid through their public
page ``/l/{id}``; a reusable link makes separate payments, each with ``metadata.link_id`` and its own
webhook; payer-chosen amounts stay within bounds; a disabled link makes none; viewers only look;
every admin action is audited; a merchant sees only its own links; the legacy version has none."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kit.admin import Operator, act, by_testid, new_user, redirected_to, signed_in
from kit.api import MerchantCreds, make_merchant, sandbox
from kit.clock import Clock
from kit.sink import Sink, wait_until
from paycenter import versions
from paycenter.admin.web import LANG_COOKIE
from paycenter.db import Database, new_id
from paycenter.operators.models import AuditEntry, Role
from paycenter.payments.models import Payment, PaymentLink

LINK_ID = re.compile(r"/admin/links/(lnk_[0-9a-z]{25})")


@pytest.fixture
async def payer(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A payer's browser, from its own address."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://pay.test") as c:
        yield c


async def link_payments(db: Database, link_id: str) -> list[Payment]:
    async with db.reading() as session:
        return list(
            await session.scalars(select(Payment).where(Payment.link_id == link_id).order_by(Payment.created_at))
        )


async def get_link(db: Database, link_id: str) -> PaymentLink:
    async with db.reading() as session:
        link = await session.get(PaymentLink, link_id)
        assert link is not None
        return link


async def audits(db: Database, action: str) -> list[AuditEntry]:
    async with db.reading() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def admin_create(client: httpx.AsyncClient, merchant: MerchantCreds, **form: str) -> httpx.Response:
    data = {"merchant_id": merchant.merchant_id, "kind": "one_off", "amount_mode": "fixed", "expires_minutes": "60"}
    return await act(client, "/admin/links", {**data, **form})


async def api_create(client: httpx.AsyncClient, merchant: MerchantCreds, **body: Any) -> httpx.Response:
    return await client.post("/api/links", json=body, headers=merchant.headers)


# --- the admin ------------------------------------------------------------------------------------


async def test_an_operator_makes_a_one_off_link_and_its_payment_at_once(client, db, admin, merchant):
    await signed_in(client, admin)
    r = await admin_create(
        client,
        merchant,
        amount="5 000",
        description="Букет №12",
        customer_name="Айгерим",
        customer_phone="+77010000000",
        metadata='{"order_id": "WA-12"}',
    )
    link_id = LINK_ID.match(redirected_to(r).split("?")[0]).group(1)
    link = await get_link(db, link_id)
    assert (link.kind, link.amount, link.created_by, link.created_via) == ("one_off", 500000, "boss", "admin")
    [payment] = await link_payments(db, link_id)
    assert link.payment_id == payment.id and link.payments_count == 1
    assert payment.amount == 500000 and payment.status == "pending"
    assert payment.metadata_ == {"order_id": "WA-12", "link_id": link_id}
    assert (payment.customer_name, payment.customer_phone, payment.order_id) == ("Айгерим", "+77010000000", "WA-12")
    page = await client.get(f"/admin/links/{link_id}")
    assert page.status_code == 200
    assert by_testid(page.text, "link-payment-url") == f"http://pay.test/pay/{payment.id}"
    assert f'value="http://pay.test/l/{link_id}"' in page.text and "<svg" in page.text
    png = await client.get(f"/admin/links/{link_id}/qr.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG") and png.headers["content-type"] == "image/png"
    svg = await client.get(f"/admin/links/{link_id}/qr.svg")
    assert svg.status_code == 200 and b"<svg" in svg.content
    # The public link leads to the payment; paid, the list says so.
    assert (await client.get(f"/l/{link_id}")).headers["location"] == f"/pay/{payment.id}"
    await sandbox(client, payment.id, checkout_id=new_id("co"))
    listed = await client.get("/admin/links")
    assert by_testid(listed.text, "link-status") == "Оплачен"
    [entry] = await audits(db, "link_create")
    assert entry.actor == "boss" and entry.target == link_id
    assert entry.details["payment_id"] == payment.id and entry.details["amount"] == 500000


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"amount": ""}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "100", "metadata": "{not json"}, "metadata"),
        ({"amount": "100", "metadata": "[1, 2]"}, "metadata"),
        ({"amount": "100", "expires_minutes": "soon"}, "expires"),
        ({"amount": "100", "expires_minutes": "0"}, "expires_in"),
        ({"amount": "100", "merchant_id": "mch_nope"}, "merchant"),
        ({"amount": "100", "customer_phone": "9" * 40}, "customer_phone"),
        ({"kind": "reusable", "amount_mode": "range", "min_amount": "100"}, "amount"),
        ({"kind": "reusable", "amount": "100", "link_expires_at": "tomorrow"}, "expires"),
        ({"amount": "100", "metadata": json.dumps({f"k{i}": i for i in range(50)})}, "metadata"),
    ],
)
async def test_bad_input_is_a_form_error_and_writes_nothing(client, db, admin, merchant, form, says):
    await signed_in(client, admin)
    client.cookies.set(LANG_COOKIE, "en")  # the service's own words (tests/admin/test_refusals.py: the others)
    r = await admin_create(client, merchant, **form)
    assert r.status_code == 422, r.text[:300]
    assert says in by_testid(r.text, "form-error")
    async with db.reading() as session:
        assert list(await session.scalars(select(PaymentLink))) == []
        assert list(await session.scalars(select(Payment))) == []
    assert await audits(db, "link_create") == []


async def test_a_viewer_sees_links_but_cannot_make_or_disable_one(client, db, clock, admin, merchant, app):
    await signed_in(client, admin)
    link_id = LINK_ID.match(redirected_to(await admin_create(client, merchant, amount="100")).split("?")[0]).group(1)
    viewer: Operator = await new_user(db, clock, "auditor", Role.VIEWER)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pay.test") as other:
        await signed_in(other, viewer)
        page = await other.get("/admin/links")
        assert page.status_code == 200 and link_id in page.text
        assert 'data-testid="link-form"' not in page.text and 'data-testid="link-disable"' not in page.text
        assert (await other.get(f"/admin/links/{link_id}")).status_code == 200
        assert (await admin_create(other, merchant, amount="100")).status_code == 403
        assert (await act(other, f"/admin/links/{link_id}/disable")).status_code == 403
        # Without this session's CSRF token nothing happens either.
        assert (await client.post(f"/admin/links/{link_id}/disable", data={"csrf_token": "x"})).status_code == 403
    async with db.reading() as session:
        assert len(list(await session.scalars(select(PaymentLink)))) == 1
    assert (await get_link(db, link_id)).is_active
    assert await audits(db, "link_disable") == []


async def test_an_unknown_link_in_the_admin_is_a_404_page(client, admin):
    await signed_in(client, admin)
    for path in ("/admin/links/lnk_nope", "/admin/links/whatever/qr.png", "/admin/links/lnk_x/qr.gif"):
        assert (await client.get(path)).status_code == 404, path
    assert (await act(client, "/admin/links/lnk_nope/disable")).status_code == 404


# --- reusable links and their payers --------------------------------------------------------------


async def test_a_reusable_link_makes_a_separate_payment_and_webhook_for_each_payer(
    client, db, admin, sink: Sink, worker, payer, app
):
    shop = await make_merchant(db, name="Florist", webhook_url=sink.on("/hooks"))
    await signed_in(client, admin)
    r = await admin_create(client, shop, kind="reusable", amount="2500", description="Доставка")
    link_id = LINK_ID.match(redirected_to(r).split("?")[0]).group(1)
    assert await link_payments(db, link_id) == []
    # Opening the link (as a messenger's preview does) makes no payment.
    page = await payer.get(f"/l/{link_id}")
    assert page.status_code == 200 and "Florist" in page.text
    assert await link_payments(db, link_id) == []
    made = []
    for _ in range(2):
        r = await payer.post(f"/l/{link_id}")
        assert r.status_code == 303, r.text[:300]
        made.append(r.headers["location"].removeprefix("/pay/"))
    payments = await link_payments(db, link_id)
    assert sorted(p.id for p in payments) == sorted(made) and len(set(made)) == 2
    for p in payments:
        assert p.amount == 250000 and p.metadata_ == {"link_id": link_id} and p.description == "Доставка"
        await sandbox(payer, p.id, checkout_id=new_id("co"))
    await wait_until(lambda: len(sink.at("/hooks")) >= 2, timeout=10, what="two paid webhooks")
    bodies = [json.loads(r.body) for r in sink.at("/hooks")]
    assert sorted(b["transaction_id"] for b in bodies) == sorted(made)
    assert {b["event"] for b in bodies} == {"paid"}
    assert all(b["metadata"] == {"link_id": link_id} for b in bodies)
    assert (await get_link(db, link_id)).payments_count == 2
    listed = await client.get("/admin/links")
    assert [s for s in re.findall(r'data-testid="link-payment-status">([^<]+)<', listed.text)] == ["Оплачен"] * 2


async def test_a_payer_chooses_an_amount_within_the_links_bounds(client, db, merchant, payer):
    r = await api_create(client, merchant, kind="reusable", min_amount=500, max_amount="10000.50", description="Донат")
    assert r.status_code == 201, r.text
    link_id = r.json()["data"]["id"]
    page = await payer.get(f"/l/{link_id}")
    assert 'name="amount"' in page.text
    for typed in ("", "499.99", "10000.51", "abc", "1e3", "-600"):
        refused = await payer.post(f"/l/{link_id}", data={"amount": typed})
        assert refused.status_code == 422, (typed, refused.text[:200])
        assert "от 500,00 ₸ до 10 000,50 ₸" in by_testid(refused.text, "error").replace("\u00a0", " ").replace(
            "\u202f", " "
        ), by_testid(refused.text, "error")
    assert await link_payments(db, link_id) == []
    for typed, minor in (("500", 50000), ("10 000,50", 1000050), ("1234.5", 123450)):
        r = await payer.post(f"/l/{link_id}", data={"amount": typed})
        assert r.status_code == 303, (typed, r.text[:300])
        [payment] = [p for p in await link_payments(db, link_id) if p.id == r.headers["location"].removeprefix("/pay/")]
        assert payment.amount == minor


async def test_a_disabled_or_expired_link_makes_no_payment(client, db, admin, merchant, payer, clock: Clock):
    await signed_in(client, admin)
    r = await admin_create(client, merchant, kind="reusable", amount="100")
    link_id = LINK_ID.match(redirected_to(r).split("?")[0]).group(1)
    assert (await payer.post(f"/l/{link_id}")).status_code == 303
    r = await act(client, f"/admin/links/{link_id}/disable")
    assert redirected_to(r).startswith(f"/admin/links/{link_id}")
    assert not (await get_link(db, link_id)).is_active
    assert (await payer.get(f"/l/{link_id}")).status_code == 410
    assert (await payer.post(f"/l/{link_id}")).status_code == 410
    assert len(await link_payments(db, link_id)) == 1
    # Disabling again changes nothing and records nothing more.
    await act(client, f"/admin/links/{link_id}/disable")
    [entry] = await audits(db, "link_disable")
    assert entry.actor == "boss" and entry.target == link_id
    # A link past its own expiry.
    r = await api_create(client, merchant, kind="reusable", amount=100, link_expires_at="2100-01-01T00:00:00Z")
    later = r.json()["data"]["id"]
    clock.advance(days=365 * 80)
    assert (await payer.post(f"/l/{later}")).status_code == 410
    assert await link_payments(db, later) == []
    assert (await payer.get("/l/lnk_unknown")).status_code == 404


async def test_a_disabled_one_off_link_no_longer_leads_to_its_payment(client, db, admin, merchant, payer):
    await signed_in(client, admin)
    link_id = LINK_ID.match(redirected_to(await admin_create(client, merchant, amount="100")).split("?")[0]).group(1)
    assert (await payer.get(f"/l/{link_id}")).status_code == 303
    await act(client, f"/admin/links/{link_id}/disable")
    assert (await payer.get(f"/l/{link_id}")).status_code == 410


async def test_one_address_makes_a_bounded_number_of_payments(client, db, merchant, payer, app, clock):
    clock.freeze()  # windows start on the minute: a slow host must not cross one mid-test
    from paycenter.checkout.links import PAYMENTS_PER_ADDRESS

    link_id = (await api_create(client, merchant, kind="reusable", amount=100)).json()["data"]["id"]
    for _ in range(PAYMENTS_PER_ADDRESS):
        assert (await payer.post(f"/l/{link_id}")).status_code == 303
    refused = await payer.post(f"/l/{link_id}")
    assert refused.status_code == 429
    assert len(await link_payments(db, link_id)) == PAYMENTS_PER_ADDRESS
    # Another address still may.
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://pay.test") as other:
        assert (await other.post(f"/l/{link_id}")).status_code == 303


# --- the merchant API ------------------------------------------------------------------------------


async def test_the_api_makes_and_lists_a_merchants_own_links(client, db, merchant, other_merchant):
    r = await api_create(client, merchant, amount=5000, description="Order 7", metadata={"order_id": "7"})
    assert r.status_code == 201, r.text
    one_off = r.json()["data"]
    assert one_off["kind"] == "one_off" and one_off["amount"] == "5000.00" and one_off["status"] == "pending"
    assert one_off["url"] == f"http://pay.test/l/{one_off['id']}"
    assert one_off["payment_url"] == f"http://pay.test/pay/{one_off['payment_id']}"
    assert one_off["created_via"] == "api" and one_off["metadata"] == {"order_id": "7"}
    r = await api_create(client, merchant, kind="reusable", min_amount=100, max_amount=200)
    reusable = r.json()["data"]
    assert (reusable["amount"], reusable["min_amount"], reusable["max_amount"]) == (None, "100.00", "200.00")
    await api_create(client, other_merchant, amount=1)
    page = (await client.get("/api/links", headers=merchant.headers, params={"limit": 1})).json()
    assert page["success"] is True
    assert [i["id"] for i in page["data"]["items"]] == [reusable["id"]] and page["data"]["has_more"] is True
    rest = await client.get("/api/links", headers=merchant.headers, params={"cursor": page["data"]["next_cursor"]})
    assert [i["id"] for i in rest.json()["data"]["items"]] == [one_off["id"]]
    assert rest.json()["data"]["has_more"] is False
    others = (await client.get("/api/links", headers=other_merchant.headers)).json()["data"]["items"]
    assert len(others) == 1 and others[0]["id"] not in (one_off["id"], reusable["id"])
    async with db.reading() as session:
        payment = await session.get(Payment, one_off["payment_id"])
        assert payment is not None and payment.merchant_id == merchant.merchant_id
    assert (await client.get("/api/links")).status_code == 401
    assert (await client.get("/api/links", headers=merchant.headers, params={"cursor": "nope"})).status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": 100, "currency": "USD"}, "currency"),
        ({"amount": 100, "min_amount": 1, "max_amount": 2, "kind": "reusable"}, "amount"),
        ({"kind": "reusable", "amount": None, "min_amount": 5}, "amount"),
        ({"kind": "weekly", "amount": 1}, "kind"),
        ({"amount": 1, "metadata": "x"}, "metadata"),
        ({"amount": 1, "provider": "nobank"}, "provider"),
        ({"amount": 1, "link_expires_at": "2100-01-01T00:00:00Z"}, "link_expires_at"),
    ],
)
async def test_the_api_refuses_bad_links_in_its_envelope(client, db, merchant, body, field):
    r = await api_create(client, merchant, **body)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["success"] is False and answer["error"]["code"] == "validation_error"
    assert field in json.dumps(answer["error"])
    async with db.reading() as session:
        assert list(await session.scalars(select(PaymentLink))) == []


async def test_the_legacy_version_has_no_links(client, db):
    old = await make_merchant(db, name="Old shop", api_version=versions.LEGACY)
    for r in (
        await client.get("/api/links", headers=old.headers),
        await client.post("/api/links", json={"amount": 100}, headers=old.headers),
    ):
        assert r.status_code == 404 and r.json()["success"] is False
    async with db.reading() as session:
        assert list(await session.scalars(select(PaymentLink))) == []
    assert "/api/links" not in (await client.get("/openapi-legacy.json")).json()["paths"]
    assert set((await client.get("/openapi.json")).json()["paths"]["/api/links"]) == {"get", "post"}


async def test_bounds_are_taken_in_either_order_and_a_past_end_makes_a_closed_link(client, merchant, payer):
    r = await api_create(client, merchant, kind="reusable", min_amount=900, max_amount="100.5")
    assert r.status_code == 201, r.text
    assert (r.json()["data"]["min_amount"], r.json()["data"]["max_amount"]) == ("100.50", "900.00")
    r = await api_create(client, merchant, kind="reusable", amount=5, link_expires_at="2001-01-01T00:00:00Z")
    assert r.status_code == 201 and r.json()["data"]["status"] == "expired"
    assert (await payer.post(f"/l/{r.json()['data']['id']}")).status_code == 410


async def test_ids_and_filters_no_database_takes_are_answered_not_looked_up(client, admin, payer):
    await signed_in(client, admin)
    for path in ("/l/lnk_%00", "/l/lnk_" + "a" * 300, "/l/LNK_ABC"):
        assert (await payer.get(path)).status_code == 404, path
        assert (await payer.post(path)).status_code == 404, path
    assert (await client.get("/admin/links", params={"merchant": "a\x00b"})).status_code == 400
    assert (await client.get("/admin/links", params={"cursor": "nope"})).status_code == 200


async def test_a_one_off_link_whose_payment_the_cleanup_deleted_reads_expired(client, db, merchant):
    from sqlalchemy import delete

    made = (await api_create(client, merchant, amount=100)).json()["data"]
    async with db.transaction() as session:  # as the daily cleanup does, for a closed unpaid payment
        await session.execute(delete(Payment).where(Payment.id == made["payment_id"]))
    [listed] = (await client.get("/api/links", headers=merchant.headers)).json()["data"]["items"]
    assert (listed["id"], listed["status"]) == (made["id"], "expired")
