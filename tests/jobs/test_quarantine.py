"""One bad row never stops a loop: for each background loop, a poison row planted straight in the
database (as a bug, a bad migration or a hostile merchant's data would leave it), and proof that
every other merchant's payments still expire, get polled, refunded and their webhooks on time;
that the poison row is quarantined with its reason, leaves the loop's due set, shows in
`paycenter status` and the admin, and is processed once an operator fixes it and retries.

Poisons are planted on every backend: a currency no code knows, undecryptable or malformed
secrets, a provider bug, a foreign key nobody expected.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from standardwebhooks import Webhook

from kit.admin import act, admin_browser, new_user, redirected_to, signed_in
from kit.api import MerchantCreds, create_payment, make_merchant, sandbox
from kit.clock import drive
from kit.kaspi import Kaspi, new_payment, qr_id
from kit.quarantine import UNDECRYPTABLE, mark_of, plant, quarantined
from kit.served import paycenter_cli
from kit.sink import Sink, eventually, wait_until
from paycenter import quarantine
from paycenter.db import Database, new_payment_id
from paycenter.jobs import cleanup
from paycenter.jobs.dispatcher import Dispatcher
from paycenter.jobs.expirer import expire_due
from paycenter.observability import LOOP_ROW_FAILURES
from paycenter.operators.models import AuditEntry, Role
from paycenter.payments.models import Attempt, Payment, Refund, RefundLeg
from paycenter.quarantine import Loop, QuarantinedRow
from paycenter.webhooks import service as webhooks
from paycenter.webhooks.models import Delivery, DeliveryAttempt
from paycenter.webhooks.sender import Sender, SendResult

pytestmark = pytest.mark.slow  # every loop driven past a poison row, and the CLI as a process

# A payment row no loop can act on: its events' amounts need the currency's minor digits.
POISON_CURRENCY = "UPDATE payments SET currency = 'ZZZ' WHERE id = :id"


async def marks(db: Database, loop: Loop | None = None) -> list[QuarantinedRow]:
    async with db.reading() as session:
        return await quarantine.rows(session, loop=loop)


async def cycles(read: Any, n: int, *, timeout: float = 10) -> None:
    """Wait until a loop has gone round ``n`` more times (``read`` gives its last cycle's start)."""
    seen = {read()}
    deadline = time.monotonic() + timeout
    while len(seen) <= n:
        assert time.monotonic() < deadline, f"the loop went round {len(seen) - 1} times in {timeout} s"
        await wait_until(lambda: read() not in seen, timeout=timeout, what="another cycle")
        seen.add(read())


async def cli(database_url: str, tmp_path: Path, *args: str, rc: int = 0) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env.update(PAYCENTER_DATABASE_URL=database_url, NO_COLOR="1", COLUMNS="200")
    code, out, err = await paycenter_cli(*args, cwd=tmp_path, env=env, timeout=60)
    assert code == rc, f"paycenter {' '.join(args)}: exit {code}\n{out}\n{err}"
    return out + err


async def assert_visible(
    *, db: Database, app: Any, clock: Any, database_url: str, tmp_path: Path, mark: QuarantinedRow, reason: str
) -> None:
    """An operator sees the mark (which loop, which row, why, since when) in `paycenter status`
    and in the admin: the quarantine page, the dashboard and the payment's own page."""
    assert reason in mark.reason, mark.reason
    out = await cli(database_url, tmp_path, "status")
    line = next((x for x in out.splitlines() if mark.row_id in x), None)
    assert line is not None and mark.loop in line and reason in line, out
    async with admin_browser(app, db, clock) as browser:
        page = (await browser.get("/admin/quarantine")).text
        assert mark.row_id in page and reason in page and mark.loop in page, page
        dashboard = (await browser.get("/admin")).text
        assert 'data-testid="quarantined"' in dashboard and "/admin/quarantine" in dashboard
        if mark.payment_id:
            detail = await browser.get(f"/admin/transactions/{mark.payment_id}")
            if detail.status_code == 200:  # a payment whose own row is the poison may not render
                assert mark.row_id in detail.text and 'data-testid="quarantine"' in detail.text


async def retry_in_admin(app: Any, db: Database, clock: Any, mark: QuarantinedRow) -> None:
    async with admin_browser(app, db, clock) as browser:
        r = await act(browser, "/admin/quarantine/retry", {"loop": mark.loop, "row_id": mark.row_id})
        assert "error" not in redirected_to(r), redirected_to(r)
    async with db.reading() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "quarantine_retry"))
    assert entry is not None and entry.target == mark.row_id


def failures_counted(loop: Loop) -> float:
    return LOOP_ROW_FAILURES.labels(loop.value)._value.get()


def events_at(sink: Sink, path: str, pid: str, event: str | None = None) -> list[dict[str, Any]]:
    bodies = [json.loads(r.body) for r in sink.at(path)]
    return [b for b in bodies if b["transaction_id"] == pid and (event is None or b["event"] == event)]


# --- the expirer -----------------------------------------------------------------------------------

EXPIRER_POISONS = {
    # (only on, the poison, what the reason says, the fix)
    # (NaN in metadata, the example, is no poison any more: stored rows are read
    # sanitized, see test_edge_input.py::test_old_rows_still_read_render_and_act.) A currency no
    # code knows breaks the event's amounts the same way, on every backend.
    "unknown_currency": (
        None,
        "UPDATE payments SET currency = 'ZZZ' WHERE id = :id",
        "Unknown currency",
        "UPDATE payments SET currency = 'KZT' WHERE id = :id",
    ),
    # (An undecryptable webhook secret is no poison for the expirer any more: the secret is never
    # loaded with a payment, only read row by row by the dispatcher; see
    # test_one_payments_unreadable_webhook_secret_leaves_its_merchants_reads_readable.)
}


@pytest.mark.parametrize("poison", list(EXPIRER_POISONS))
async def test_expirer_goes_on_past_a_poison_payment(
    poison, backend, database_url, client, db, app, worker, sink, clock, merchant, other_merchant, tmp_path
):
    only, sql, reason, fix = EXPIRER_POISONS[poison]
    if only and backend != only:
        pytest.skip(f"{backend} refuses this poison at the door: it can only be planted on {only}")
    url = sink.on("/hooks")
    bad = (await create_payment(client, merchant, expires_in=10, webhook_url=url))["transaction_id"]
    good = [
        (await create_payment(client, other_merchant, expires_in=10, webhook_url=url))["transaction_id"]
        for _ in range(3)
    ]
    await plant(db, sql, id=bad)
    clock.advance(seconds=11)

    # Every other payment expires and its merchant hears of it, within the expirer's normal second.
    await wait_until(
        lambda: all(events_at(sink, "/hooks", pid, "expired") for pid in good), timeout=5, what="expired webhooks"
    )
    mark = await quarantined(db, Loop.EXPIRER, bad)
    assert mark.payment_id == bad and mark.failures == 1
    # Out of the due set: the expirer goes round and round without touching it again.
    await cycles(lambda: worker.expirer.last_cycle_at, 4)
    assert (await mark_of(db, Loop.EXPIRER, bad)).failures == 1
    await assert_visible(
        db=db, app=app, clock=clock, database_url=database_url, tmp_path=tmp_path, mark=mark, reason=reason
    )

    await plant(db, fix, id=bad)
    out = await cli(database_url, tmp_path, "quarantine", "retry", bad)
    assert "1" in out and bad in out, out
    await wait_until(lambda: events_at(sink, "/hooks", bad, "expired"), timeout=5, what="the fixed payment to expire")
    assert await marks(db) == []


async def test_expirer_batches_when_all_is_well_and_isolates_one_row_when_not(db, client, merchant, clock):
    """Forty payments due together expire in one pass; with a poison among them the other
    thirty-nine still do in that same pass, and the poison is the only row marked."""
    pids = [(await create_payment(client, merchant, expires_in=10))["transaction_id"] for _ in range(40)]
    await plant(db, POISON_CURRENCY, id=pids[17])
    before = failures_counted(Loop.EXPIRER)
    clock.advance(seconds=11)
    assert await expire_due(db, now=clock(), chunk=50) == 39
    assert [m.row_id for m in await marks(db)] == [pids[17]]
    assert failures_counted(Loop.EXPIRER) == before + 1
    assert await expire_due(db, now=clock()) == 0  # the poison is not tried again


# --- the dispatcher -------------------------------------------------------------------------------

SIGNING_POISONS = {
    "undecryptable": (UNDECRYPTABLE, "SecretsError"),
    "malformed": ("whsec_abc", "Error"),  # not base64: the signature cannot be computed
}


@pytest.mark.parametrize("poison", list(SIGNING_POISONS))
async def test_dispatcher_goes_on_past_a_merchant_whose_secret_cannot_sign(
    poison, database_url, client, db, app, worker, sink, clock, merchant, other_merchant, tmp_path
):
    value, reason = SIGNING_POISONS[poison]
    url = sink.on("/hooks")
    bad = (await create_payment(client, merchant, webhook_url=url))["transaction_id"]
    await plant(db, "UPDATE merchants SET signing_secret = :v WHERE id = :id", v=value, id=merchant.merchant_id)
    await sandbox(client, bad, checkout_id="bad")
    good = []
    for i in range(3):
        pid = (await create_payment(client, other_merchant, webhook_url=url))["transaction_id"]
        await sandbox(client, pid, checkout_id=f"good{i}")
        good.append(pid)

    await wait_until(lambda: all(events_at(sink, "/hooks", pid, "paid") for pid in good), timeout=5, what="webhooks")
    async with db.reading() as session:
        verifier = Webhook(
            (
                await session.execute(
                    text("SELECT signing_secret FROM merchants WHERE id = :id"), {"id": other_merchant.merchant_id}
                )
            ).scalar_one()
        )
        delivery = await session.scalar(select(Delivery).where(Delivery.payment_id == bad))
    for received in sink.at("/hooks"):
        verifier.verify(received.body, {k.lower(): v for k, v in received.headers.items()})
    mark = await quarantined(db, Loop.DISPATCHER, delivery.id)
    assert mark.payment_id == bad

    # Recorded as that delivery's failure, not pinned in flight, and not tried again.
    async def tries() -> list[DeliveryAttempt]:
        async with db.reading() as session:
            return list(
                await session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery.id))
            )

    (attempt,) = await tries()
    assert (attempt.error_class, attempt.response_status) == ("internal", None) and reason in attempt.error
    await wait_until(lambda: worker.dispatcher.in_flight == 0, timeout=5, what="nothing in flight")
    await cycles(lambda: worker.dispatcher.last_cycle_at, 4)
    assert len(await tries()) == 1 and not events_at(sink, "/hooks", bad)
    await assert_visible(
        db=db, app=app, clock=clock, database_url=database_url, tmp_path=tmp_path, mark=mark, reason=reason
    )

    fixed = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    await plant(db, "UPDATE merchants SET signing_secret = :v WHERE id = :id", v=fixed, id=merchant.merchant_id)
    await retry_in_admin(app, db, clock, mark)
    await wait_until(lambda: events_at(sink, "/hooks", bad, "paid"), timeout=5, what="the fixed merchant's webhook")
    (received,) = [r for r in sink.at("/hooks") if json.loads(r.body)["transaction_id"] == bad]
    Webhook(fixed).verify(received.body, {k.lower(): v for k, v in received.headers.items()})
    assert await marks(db) == []


async def test_recorder_writes_the_others_when_one_try_cannot_be_recorded(client, db, merchant, clock):
    """The recorder writes finished tries in one transaction per batch. A try that cannot be
    written (here: its delivery was deleted while it was on the wire) no longer loses the whole
    batch, which would have sent every other webhook of the batch again."""
    for i in range(4):
        pid = (await create_payment(client, merchant, webhook_url="https://shop.example/never"))["transaction_id"]
        await sandbox(client, pid, checkout_id=f"r{i}")
    now = clock()
    dispatcher = Dispatcher(db, Sender(allowed_networks=[]), owner="recorder-test", clock=clock, schedule=[60.0])
    async with db.transaction() as session:
        jobs = await webhooks.claim(
            session,
            owner="recorder-test",
            limit=10,
            now=now,
            lease_until=now + timedelta(seconds=30),
            skip_urls=set(),
            default_max_attempts=2,
        )
    assert len(jobs) == 4
    poison = jobs[2]
    await plant(db, "DELETE FROM webhook_deliveries WHERE id = :id", id=poison.delivery_id)
    for job in jobs:
        dispatcher._in_flight[job.delivery_id] = job
        result = SendResult(started_at=now, duration_ms=3, status=200, response_headers={}, response_body="ok")
        dispatcher._done.append(webhooks.Outcome(job, {"webhook-id": job.event_id}, result))
    await dispatcher._flush()

    async with db.reading() as session:
        states = dict((await session.execute(select(Delivery.id, Delivery.status))).all())
    assert states == {j.delivery_id: "succeeded" for j in jobs if j is not poison}
    mark = await mark_of(db, Loop.DISPATCHER, poison.delivery_id)
    assert mark is not None and "IntegrityError" in mark.reason
    assert dispatcher.in_flight == 0


async def test_a_response_body_with_nul_is_recorded(client, db, merchant, worker, sink):
    """An endpoint answering NUL bytes (PostgreSQL cannot store them in text) gets its try
    recorded like any other, and nobody else's batch is lost."""
    url = sink.on("/nul")
    sink.bodies["/nul"] = "before\x00after"
    pids = []
    for i in range(3):
        pid = (await create_payment(client, merchant, webhook_url=url))["transaction_id"]
        await sandbox(client, pid, checkout_id=f"n{i}")
        pids.append(pid)

    async def delivered() -> list[Delivery]:
        async with db.reading() as session:
            rows = list(await session.scalars(select(Delivery).where(Delivery.status == "succeeded")))
        return rows if len(rows) == 3 else []

    rows = await eventually(delivered, timeout=5, what="three deliveries recorded")
    async with db.reading() as session:
        bodies = list(await session.scalars(select(DeliveryAttempt.response_body)))
    assert len(bodies) == 3 and all(b.startswith("before") and b.endswith("after") for b in bodies), bodies
    assert len(sink.at("/nul")) == 3 and {d.attempt_count for d in rows} == {1}
    assert await marks(db) == []


# --- the poller --------------------------------------------------------------------------------------

POLLER_POISONS = {
    # A terminal whose stored token no key decrypts: the poller's reads used to load every
    # terminal of every live attempt in one statement.
    "terminal_token": "SecretsError",
    # A payment in a currency no code knows: counting its money fails.
    "payment_currency": "Unknown currency",
}


@pytest.mark.parametrize("poison", list(POLLER_POISONS))
async def test_poller_goes_on_past_an_attempt_it_cannot_handle(
    poison,
    kaspi: Kaspi,
    merchant,
    database_url,
    db,
    clock,
    tmp_path,
):
    k = kaspi
    other = await make_merchant(db, name="Other shop")
    if poison == "terminal_token":
        bad = await new_payment(k, merchant, "kaspi_pos")
        await k.start(bad)
        attempt = await k.live(bad)
        await plant(db, f"UPDATE terminals SET access_token = '{UNDECRYPTABLE}' WHERE id = :id", id=attempt.terminal_id)
    else:
        bad = await new_payment(k, merchant, "kaspi_qr")
        await k.start(bad)
        attempt = await k.live(bad)
        await plant(db, POISON_CURRENCY, id=bad)
        k.qr.confirm(qr_id(attempt))  # paid at Kaspi: the poller must count it, and cannot
    good = []
    for _ in range(2):
        data = await create_payment(k.client, other, provider="kaspi_qr", webhook_url=k.sink.on("/hooks"))
        good.append(data["transaction_id"])
        await k.start(good[-1])
        k.qr.confirm(qr_id(await k.live(good[-1])))
    for pid in good:
        await k.wait_event(pid, "paid")
    mark = await quarantined(db, Loop.POLLER, attempt.id)
    assert mark.payment_id == bad
    await cycles(lambda: k.worker.poller.last_cycle_at, 3)
    assert (await mark_of(db, Loop.POLLER, attempt.id)).failures == 1
    await assert_visible(
        db=db,
        app=k.client._transport.app,  # type: ignore[attr-defined]
        clock=clock,
        database_url=database_url,
        tmp_path=tmp_path,
        mark=mark,
        reason=POLLER_POISONS[poison],
    )

    if poison == "terminal_token":
        assert (await k.payment(bad))["status"] == "processing"
        await _restore_terminal_token(db, attempt.terminal_id)
    else:
        await plant(db, "UPDATE payments SET currency = 'KZT' WHERE id = :id", id=bad)
    await cli(database_url, tmp_path, "quarantine", "retry", "--all")
    if poison == "terminal_token":
        k.pos.confirm(await _terminal_name(db, attempt.terminal_id))
    await k.wait_event(bad, "paid")
    assert await marks(db) == []


async def _terminal_name(db: Database, terminal_id: str) -> str:
    async with db.reading() as session:
        return await session.scalar(text("SELECT name FROM terminals WHERE id = :id"), {"id": terminal_id})


async def _restore_terminal_token(db: Database, terminal_id: str) -> None:
    name = await _terminal_name(db, terminal_id)
    await plant(db, "UPDATE terminals SET access_token = :t WHERE id = :id", t=f"token-{name}", id=terminal_id)


# --- refund legs ---------------------------------------------------------------------------------------


async def paid_qr(k: Kaspi, creds: MerchantCreds) -> str:
    data = await create_payment(k.client, creds, provider="kaspi_qr", webhook_url=k.sink.on("/hooks"))
    pid = data["transaction_id"]
    await k.start(pid)
    k.qr.confirm(qr_id(await k.live(pid)))
    await k.wait_event(pid, "paid")
    return pid


async def legs_of(db: Database, pid: str) -> list[RefundLeg]:
    async with db.reading() as session:
        return list(
            await session.scalars(
                select(RefundLeg).join(Refund, Refund.id == RefundLeg.refund_id).where(Refund.payment_id == pid)
            )
        )


@pytest.mark.parametrize("kaspi", ["r3"], indirect=True)  # direct refunds (kaspi-qr-api.md §5)
@pytest.mark.parametrize("poison", ["provider_bug", "payment_currency"])
async def test_refund_legs_go_on_past_a_leg_that_cannot_be_handled(
    poison,
    kaspi: Kaspi,
    merchant,
    database_url,
    db,
    clock,
    tmp_path,
):
    k = kaspi
    other = await make_merchant(db, name="Other shop")
    bad = await paid_qr(k, merchant)
    good = [await paid_qr(k, other) for _ in range(2)]
    provider = k.ctx.providers.get("kaspi_qr")
    bad_ref = str(qr_id(await _attempt_of(db, bad)))
    real_refund = provider.refund

    if poison == "provider_bug":

        async def buggy(leg):  # a bug in the provider code, not an answer from Kaspi
            if leg.attempt_ref == bad_ref:
                raise KeyError("ReturnOperationId")
            return await real_refund(leg)

        provider.refund = buggy  # type: ignore[method-assign]
        r = await k.client.post(f"/api/payment/{bad}/refund")
        assert r.status_code == 200 and r.json()["data"]["refund"]["status"] == "pending", r.text
        reason = "KeyError"
    else:
        # The refund is accepted, Kaspi asks to try again; meanwhile the payment's row goes bad,
        # so when Kaspi does return the money, recording it fails.
        k.qr.inject_error("payment/return", -99000006, times=1)
        r = await k.client.post(f"/api/payment/{bad}/refund")
        assert r.json()["data"]["refund"]["status"] == "pending", r.text
        await plant(db, POISON_CURRENCY, id=bad)
        reason = "Unknown currency"
    for pid in good:
        r = await k.client.post(f"/api/payment/{pid}/refund", headers=other.headers)
        assert r.json()["data"]["refund"]["status"] == "succeeded", r.text
        await k.wait_event(pid, "refunded")

    (leg,) = await legs_of(db, bad)

    async def marked() -> QuarantinedRow | None:
        return await mark_of(db, Loop.REFUNDS, leg.id)

    mark = await drive(clock, marked, step=6, what="the leg to be quarantined")
    assert mark.payment_id == bad
    calls = k.qr.stats()["Calls"].get("payment/return", 0)
    await cycles(lambda: k.worker.poller.last_cycle_at, 3)
    clock.advance(minutes=5)
    await cycles(lambda: k.worker.poller.last_cycle_at, 3)
    assert (await mark_of(db, Loop.REFUNDS, leg.id)).failures == 1
    assert k.qr.stats()["Calls"].get("payment/return", 0) == calls  # not sent again meanwhile
    await assert_visible(
        db=db,
        app=k.client._transport.app,  # type: ignore[attr-defined]
        clock=clock,
        database_url=database_url,
        tmp_path=tmp_path,
        mark=mark,
        reason=reason,
    )

    if poison == "provider_bug":
        provider.refund = real_refund  # type: ignore[method-assign]
    else:
        await plant(db, "UPDATE payments SET currency = 'KZT' WHERE id = :id", id=bad)
    await cli(database_url, tmp_path, "quarantine", "retry", leg.id)

    async def refunded() -> bool:
        return bool(await k.webhooks(bad, "refunded"))

    # Sent but never answered (as far as we know): the poller asks Kaspi what became of it first.
    await drive(clock, refunded, step=15, what="the fixed leg's refund")
    assert sum(float(p["Returned"]) for p in k.qr.payments()) == 1500  # each payment's money went back once
    assert await marks(db) == []


async def _attempt_of(db: Database, pid: str) -> Attempt:
    async with db.reading() as session:
        return await session.scalar(select(Attempt).where(Attempt.payment_id == pid, Attempt.status == "succeeded"))


# --- the cleanup --------------------------------------------------------------------------------------


async def test_cleanup_goes_on_past_a_payment_it_cannot_delete(
    backend, database_url, client, db, app, clock, merchant, other_merchant, tmp_path
):
    bad = (await create_payment(client, merchant, expires_in=60))["transaction_id"]
    good = [(await create_payment(client, other_merchant, expires_in=60))["transaction_id"] for _ in range(3)]
    clock.advance(seconds=61)
    assert await expire_due(db, now=clock()) == 4
    await plant(db, "UPDATE webhook_deliveries SET status = 'succeeded', next_attempt_at = NULL")
    clock.advance(hours=25)
    # Someone's table still points at the payment (a report, an integration): it cannot go.
    charset = " ENGINE=InnoDB" if backend == "mariadb" else ""
    await plant(
        db,
        "CREATE TABLE poison_refs (id INTEGER PRIMARY KEY, payment_id VARCHAR(32) NOT NULL, "
        f"FOREIGN KEY (payment_id) REFERENCES payments (id)){charset}",
    )
    try:
        await plant(db, "INSERT INTO poison_refs (id, payment_id) VALUES (1, :id)", id=bad)
        day = timedelta(hours=24)
        result = await cleanup.run(db, now=clock(), retention=day, idempotency_ttl=day)
        assert set(result.removed) == set(good)
        mark = await mark_of(db, Loop.CLEANUP, bad)
        assert mark is not None and mark.payment_id == bad
        again = await cleanup.run(db, now=clock(), retention=day, idempotency_ttl=day)
        assert again.removed == [] and (await mark_of(db, Loop.CLEANUP, bad)).failures == 1
        await assert_visible(
            db=db,
            app=app,
            clock=clock,
            database_url=database_url,
            tmp_path=tmp_path,
            mark=mark,
            reason="IntegrityError",
        )

        await plant(db, "DELETE FROM poison_refs")
        await cli(database_url, tmp_path, "quarantine", "retry", bad)
        result = await cleanup.run(db, now=clock(), retention=day, idempotency_ttl=day)
        assert result.removed == [bad]
        async with db.reading() as session:
            assert await session.get(Payment, bad) is None
        assert await marks(db) == []
    finally:
        await plant(db, "DROP TABLE poison_refs")


# --- the operator's tools ----------------------------------------------------------------------------


async def test_quarantine_list_and_retry_all_from_the_cli(database_url, db, client, merchant, clock, tmp_path):
    pids = [(await create_payment(client, merchant, expires_in=10))["transaction_id"] for _ in range(2)]
    for pid in pids:
        await plant(db, POISON_CURRENCY, id=pid)
    clock.advance(seconds=11)
    assert await expire_due(db, now=clock()) == 0
    listed = json.loads(await cli(database_url, tmp_path, "quarantine", "list", "--json"))
    assert {(m["loop"], m["row_id"]) for m in listed} == {("expirer", pid) for pid in pids}
    assert all("Unknown currency" in m["reason"] and m["since"] for m in listed)
    text_out = await cli(database_url, tmp_path, "quarantine", "list")
    assert all(pid in text_out for pid in pids)
    report = json.loads(await cli(database_url, tmp_path, "status", "--json"))
    assert {(q["loop"], q["row_id"]) for q in report["quarantined"]} == {("expirer", pid) for pid in pids}
    assert report["quarantined_by_loop"] == {"expirer": 2}
    for pid in pids:
        await plant(db, "UPDATE payments SET currency = 'KZT' WHERE id = :id", id=pid)
    out = await cli(database_url, tmp_path, "quarantine", "retry", "--all")
    assert "2" in out
    assert await marks(db) == []
    assert await expire_due(db, now=clock()) == 2
    # Nothing to retry is said plainly, and is not an error; a row that is not there is.
    assert "nothing" in (await cli(database_url, tmp_path, "quarantine", "retry", "--all")).lower()
    assert "not quarantined" in await cli(database_url, tmp_path, "quarantine", "retry", pids[0], rc=1)
    assert "ROW_ID or --all" in await cli(database_url, tmp_path, "quarantine", "retry", rc=2)
    async with db.reading() as session:
        actors = list(await session.scalars(select(AuditEntry.actor).where(AuditEntry.action == "quarantine_retry")))
    assert len(actors) == 2 and all(a.startswith("cli:") for a in actors)


# --- the mechanism, for any poison pattern ---------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    due=st.integers(min_value=1, max_value=24),
    poisoned=st.sets(st.integers(min_value=0, max_value=23), max_size=6),
    chunk=st.integers(min_value=1, max_value=10),
)
async def test_one_pass_expires_every_healthy_row_and_marks_exactly_the_poisoned(
    db, merchant, clock, due, poisoned, chunk
):
    """Whatever the poisons' number and places and the chunk size: one pass of the expirer
    expires every healthy due payment, quarantines exactly the poisoned ones, and the next pass
    has nothing left to do."""
    async with db.transaction() as session:
        for table in ("quarantine", "webhook_deliveries", "events", "payments"):
            await session.execute(text(f"DELETE FROM {table}"))
    now = clock()
    ids = []
    async with db.transaction() as session:
        for i in range(due):
            payment = Payment(
                id=new_payment_id(),
                merchant_id=merchant.merchant_id,
                amount=100,
                currency="KZT",
                description="",
                metadata_={},
                provider="sandbox",
                status="pending",
                paid_amount=0,
                fee_amount=0,
                received_amount=0,
                credited_amount=0,
                paid_late=False,
                refunded_amount=0,
                last_sequence=0,
                expires_at=now - timedelta(seconds=1 + i),
                created_at=now - timedelta(hours=1),
                updated_at=now,
            )
            session.add(payment)
            ids.append(payment.id)
    bad = {ids[i] for i in poisoned if i < due}
    for pid in bad:
        await plant(db, POISON_CURRENCY, id=pid)
    assert await expire_due(db, now=now, chunk=chunk) == due - len(bad)
    assert {m.row_id for m in await marks(db, Loop.EXPIRER)} == bad
    assert await expire_due(db, now=now, chunk=chunk) == 0
    async with db.reading() as session:
        pending = set(await session.scalars(select(Payment.id).where(Payment.status == "pending")))
    assert pending == bad


async def test_one_merchants_unreadable_secret_leaves_the_merchant_list_readable(
    client, db, merchant, other_merchant, clock
):
    """The merchants page lists every merchant; one whose stored signing secret no key decrypts is
    shown as such, and the others as before (it was a 500 for every operator)."""
    await plant(db, f"UPDATE merchants SET signing_secret = '{UNDECRYPTABLE}' WHERE id = :id", id=merchant.merchant_id)
    await signed_in(client, await new_user(db, clock, "boss", Role.ADMIN))
    r = await client.get("/admin/merchants")
    assert r.status_code == 200, r.text[:300]
    assert merchant.merchant_id in r.text and other_merchant.merchant_id in r.text
    assert r.text.count('data-testid="secret-unreadable"') == 1
    assert "whsec_" in r.text  # the other merchant's secret, as its first characters


async def test_one_payments_unreadable_webhook_secret_leaves_its_merchants_reads_readable(client, db, merchant):
    """A payment whose stored webhook secret no key decrypts: the merchant's list, that payment's
    own reads and the others' answer as before (the secret is never loaded with a payment, only
    read row by row by the dispatcher, which quarantines that delivery)."""
    bad = (await create_payment(client, merchant, webhook_secret="s1"))["transaction_id"]
    good = (await create_payment(client, merchant, webhook_secret="s2"))["transaction_id"]
    await plant(db, f"UPDATE payments SET webhook_secret = '{UNDECRYPTABLE}' WHERE id = :id", id=bad)
    listed = await client.get("/api/transactions", headers=merchant.headers)
    assert listed.status_code == 200, listed.text[:300]
    assert {p["transaction_id"] for p in listed.json()["data"]["items"]} >= {bad, good}
    for pid in (bad, good):
        for path in (f"/api/transaction/{pid}", f"/api/payment/{pid}", f"/api/payment/{pid}/webhooks"):
            r = await client.get(path, headers=merchant.headers)
            assert r.status_code == 200, (path, r.text[:300])
        detail = (await client.get(f"/api/transaction/{pid}", headers=merchant.headers)).json()["data"]
        assert detail["has_webhook_secret"] is True and "webhook_secret" not in detail
    r = await client.post(f"/api/payment/{bad}/cancel", json={}, headers=merchant.headers)
    assert r.status_code == 200, r.text[:300]
