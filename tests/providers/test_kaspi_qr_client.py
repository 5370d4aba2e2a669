"""The kaspi_qr client against the simulator on every scheme: r1 (Api-Key), r2 (certificate only) and
r3 (the BIN in every POST body and in the trade points' path, none in its other GETs: kaspi-qr-api.md
§3), and refunds as each scheme has them (§5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from kit.asgi_server import serve
from kit.kaspi import settings
from paycenter.config import Settings
from paycenter.providers.base import AttemptRef, AttemptStart, PollState, ProviderError, RefundLegRef
from paycenter.providers.kaspi_qr import ALMATY, KaspiQrClient, KaspiQrProvider, parse_time, poll_interval
from paycenter.simulators import kaspi_qr


async def registered(url: str, scheme: str) -> str:
    client = KaspiQrClient(settings(url, scheme))
    try:
        points = await client.trade_points()
        return await client.register_device("paycenter", points[0]["TradePointId"])
    finally:
        await client.close()


async def pay(provider: KaspiQrProvider, sim: kaspi_qr.Simulator, amount: int = 50000) -> tuple[str, str]:
    """A purchase paid through the provider: (QrPaymentId, TransactionId)."""
    started = await provider.start(
        AttemptStart(attempt_id="att_1", payment_id="P", amount=amount, currency="KZT", description="x")
    )
    assert started.expires_at is not None and started.confirm_timeout == 65
    assert started.poll_interval == 5  # (Qr)PaymentBehaviorOptions.StatusPollingInterval, this QR's
    assert started.provider_ref == str(int(started.provider_ref))  # an Int64, every digit kept
    ref = AttemptRef("att_1", started.provider_ref, amount, "KZT", confirm_timeout=65)
    assert (await provider.poll(ref)).state is PollState.WAITING
    sim.scan(int(started.provider_ref))
    scanned = await provider.poll(ref)
    assert scanned.state is PollState.ACTIVE and scanned.expires_at is not None  # confirm deadline
    sim.confirm(int(started.provider_ref), product="Red")
    paid = await provider.poll(ref)
    assert (paid.state, paid.amount, paid.payment_method) == (PollState.SUCCEEDED, amount, "kaspi_red")
    return started.provider_ref, paid.provider_txn_id or ""


@pytest.mark.parametrize("scheme", ["r1", "r2", "r3"])
@pytest.mark.parametrize("mode", ["qr", "link"])
async def test_register_and_pay(scheme, mode):
    # Int64 ids past 2^53 (kaspi-qr-api.md §2): a client that read or sent them as floats, strings or
    # 32-bit integers would lose the purchase (the simulator refuses a string QrPaymentId).
    app = kaspi_qr.create_app(id_floor=2**62)
    async with serve(app) as url:
        token = await registered(url, scheme)
        provider = KaspiQrProvider(settings(url, scheme, kaspi_qr_device_token=token, kaspi_qr_mode=mode))
        try:
            qr_payment_id, _ = await pay(provider, app.state.sim)
            (purchase,) = app.state.sim.payments()
            assert purchase["QrPaymentId"] == int(qr_payment_id) > 2**62 and purchase["Kind"] == mode
        finally:
            await provider.close()


async def test_r3_refunds_directly():
    app = kaspi_qr.create_app(id_floor=2**62)
    async with serve(app) as url:
        token = await registered(url, "r3")
        provider = KaspiQrProvider(settings(url, "r3", kaspi_qr_device_token=token))
        try:
            qr_payment_id, txn = await pay(provider, app.state.sim)
            leg = RefundLegRef("rfl_1", 20000, "KZT", txn, qr_payment_id)
            assert (await provider.refund(leg)).succeeded is True
            # §3 payment/return, r3 body: DeviceToken, QrPaymentId (Int64: a JSON number), Amount,
            # OrganizationBin; no QrReturnId.
            sent = app.state.sim.last_bodies["payment/return"]
            assert sent == {
                "DeviceToken": token,
                "QrPaymentId": int(qr_payment_id),
                "Amount": 200,
                "OrganizationBin": "123456789012",
            }
            assert type(sent["QrPaymentId"]) is int
            assert await provider.returned(qr_payment_id) == (50000, 30000)
            too_much = RefundLegRef("rfl_2", 40000, "KZT", txn, qr_payment_id)
            refused = await provider.refund(too_much)
            assert refused.succeeded is False and "above the purchase amount" in (refused.error or "")
            assert app.state.sim.stats()["Calls"].get("return/create", 0) == 0  # no customer on r3
        finally:
            await provider.close()


@pytest.mark.parametrize(
    ("answered", "seconds"),
    [(5, 5), (30, 30), (2.5, 3), (0, None), (-5, None), ("5", None), (None, None), (True, None), (10**9, 3600)],
)
def test_a_qrs_polling_interval_is_whole_seconds_never_shorter_than_answered(answered, seconds):
    """kaspi-qr-api.md §4: poll each QR every StatusPollingInterval seconds, "not faster". What is no
    positive number leaves the operator's interval in force."""
    assert poll_interval(answered) == seconds


async def test_wrong_credentials_are_clear_errors():
    async with serve(kaspi_qr.create_app()) as url:
        for bad in (settings(url, "r1", kaspi_qr_api_key="nope"), settings(url, "r3", kaspi_qr_organization_bin="1")):
            client = KaspiQrClient(bad)
            try:
                with pytest.raises(ProviderError) as caught:
                    await client.trade_points()
                assert caught.value.code == "-10000" and not caught.value.retryable
            finally:
                await client.close()


def test_an_encrypted_client_key_is_a_clear_error_not_a_terminal_prompt(tmp_path):
    """OpenSSL would otherwise ask for the passphrase on stdin and hang the worker."""
    from kit.certs import _certificate

    cert, key = _certificate(tmp_path, "locked", passphrase=b"not-given")
    config = Settings(
        kaspi_qr_base_url="https://127.0.0.1:1",
        kaspi_qr_scheme="r2",
        kaspi_qr_cert_file=str(cert),
        kaspi_qr_key_file=str(key),
    )
    with pytest.raises(ProviderError, match="KEY_FILE is encrypted"):
        KaspiQrClient(config)


# --- dates (kaspi-qr-api.md §2: ISO 8601 in forms that vary) -----------------------------------


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        # The document's own examples (§2), then the field's +05:00 (§2 [field]).
        ("2020-01-16T10:30:00+06", datetime(2020, 1, 16, 4, 30, tzinfo=UTC)),
        ("2021-11-3T11:55:14.166+06:00", datetime(2021, 11, 3, 5, 55, 14, 166000, tzinfo=UTC)),
        # No offset: Kazakhstan time, UTC+6 in 2021; the 7th fraction digit is below a microsecond.
        ("2021-12-08T11:35:48.1566667", datetime(2021, 12, 8, 5, 35, 48, 156666, tzinfo=UTC)),
        ("2026-12-06T14:05:33.123+05:00", datetime(2026, 12, 6, 9, 5, 33, 123000, tzinfo=UTC)),
        ("2026-12-06T14:05:33.123456", datetime(2026, 12, 6, 9, 5, 33, 123456, tzinfo=UTC)),  # UTC+5 since 2024-03
        ("2026-12-06T14:05:33Z", datetime(2026, 12, 6, 14, 5, 33, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_the_documents_forms(text, instant):
    """Before: the unpadded day ("2021-11-3") was unreadable, so the QR had no ExpireDate deadline."""
    assert parse_time(text) == instant


@pytest.mark.parametrize("text", ["", None, "soon", "2026-13-01T00:00:00+05:00", "2026-12-06T14:05:33+24:00"])
def test_parse_time_gives_none_for_what_is_no_date(text):
    assert parse_time(text) is None


# What each simulator form keeps of an instant, in microseconds.
PRECISION = {"seconds": 1_000_000, "hour-offset": 1_000_000, "millis": 1000, "unpadded": 1000, "local-ticks": 1}


@given(
    instant=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)),
    form=st.sampled_from(kaspi_qr.TIME_FORMS),
    offset=st.sampled_from(kaspi_qr.TIME_OFFSETS),
)
@example(instant=datetime(2024, 3, 1, 5, 59, 59, 999999, tzinfo=UTC), form="unpadded", offset=6)
@example(instant=datetime(2026, 1, 9, 23, 0, 0, 1000, tzinfo=UTC), form="local-ticks", offset=5)
def test_every_simulator_date_form_reads_back_to_the_same_instant(instant, form, offset):
    """Any instant, written by the simulator in any of Kaspi's forms at +05:00 or +06:00, is read by our
    client as that instant (to the form's precision)."""
    if form == "local-ticks":
        local = instant.astimezone(ALMATY).replace(tzinfo=None)
        # A wall time that occurred twice (the 2024-03-01 change, DST until 2005) names no one instant.
        assume(local.replace(tzinfo=ALMATY, fold=0).utcoffset() == local.replace(tzinfo=ALMATY, fold=1).utcoffset())
    text = kaspi_qr.wire_time(instant, form, offset)
    kept = instant - timedelta(microseconds=instant.microsecond % PRECISION[form])
    assert parse_time(text) == kept, text


@pytest.mark.parametrize("form", kaspi_qr.TIME_FORMS)
async def test_the_qr_deadline_is_the_expire_date_in_every_form(form):
    """qr/create's ExpireDate, in each form, becomes the attempt's deadline at the right instant."""
    created = datetime(2026, 12, 6, 9, 0, 0, 123456, tzinfo=UTC)
    app = kaspi_qr.create_app(clock=lambda: created, qr_lifetime=60, time_form=form, time_offset=6)
    async with serve(app) as url:
        token = app.state.sim.register_device()
        config = settings(url, "r1", kaspi_qr_device_token=token, kaspi_qr_mode="qr")
        provider = KaspiQrProvider(config, clock=lambda: created)  # the scan wait (180 s) ends later
        try:
            started = await provider.start(
                AttemptStart(attempt_id="att_1", payment_id="P", amount=100, currency="KZT", description="x")
            )
        finally:
            await provider.close()
    deadline = created + timedelta(seconds=60)
    assert started.expires_at == deadline - timedelta(microseconds=deadline.microsecond % PRECISION[form])


async def test_r1_refunds_are_refused_without_asking_kaspi():
    """r1 has no refund API (kaspi-qr-api.md §1): a leg asked before the API refused such refunds
    fails with what to do instead, and nothing is sent."""
    app = kaspi_qr.create_app()
    async with serve(app) as url:
        token = await registered(url, "r1")
        provider = KaspiQrProvider(settings(url, "r1", kaspi_qr_device_token=token))
        try:
            assert "no refund API" in (provider.refunds_refused or "")
            qr_payment_id, txn = await pay(provider, app.state.sim)
            refused = await provider.refund(RefundLegRef("rfl_1", 20000, "KZT", txn, qr_payment_id))
            assert refused.succeeded is False and refused.error == provider.refunds_refused
            calls = app.state.sim.stats()["Calls"]
            assert not any(op.startswith("return/") or op == "payment/return" for op in calls), calls
        finally:
            await provider.close()
        for scheme in ("r2", "r3"):
            assert KaspiQrProvider(settings(url, scheme)).refunds_refused is None


async def test_r2_refunds_through_the_return_qr_the_customer_scans():
    """r2 (kaspi-qr-api.md §5): the first refund call only gets a return QR to show; poll_refund
    follows return/status, and once the customer scanned it checks the purchase is theirs and
    returnable (``payer_ready``); the second refund call sends payment/return with the QrReturnId."""
    app = kaspi_qr.create_app()
    sim = app.state.sim
    async with serve(app) as url:
        token = await registered(url, "r2")
        provider = KaspiQrProvider(settings(url, "r2", kaspi_qr_device_token=token))
        try:
            assert provider.refunds_refused is None
            qr_payment_id, txn = await pay(provider, sim)
            leg = RefundLegRef("rfl_1", 20000, "KZT", txn, qr_payment_id)
            shown = await provider.refund(leg)
            assert shown.succeeded is None and shown.return_qr is not None and not shown.payer_ready
            (created,) = sim.returns()
            assert (shown.return_qr.payload, shown.return_qr.ref) == (created["QrToken"], str(created["QrReturnId"]))
            assert created["ExternalId"] == "rfl_1" and shown.return_qr.expires_at is not None
            assert sim.stats()["Calls"].get("payment/return", 0) == 0  # nothing moved yet

            waiting = replace(leg, return_qr_ref=shown.return_qr.ref, return_qr_expires_at=shown.return_qr.expires_at)
            polled = await provider.poll_refund(waiting)
            assert (polled.succeeded, polled.payer_ready, polled.poll_in) == (None, False, provider.poll_every)
            sim.scan_return(created["QrReturnId"])
            ready = await provider.poll_refund(waiting)
            assert (ready.succeeded, ready.payer_ready) == (None, True)
            sent = await provider.refund(waiting)
            assert sent.succeeded is True and sent.provider_ref
            assert sim.last_bodies["payment/return"]["QrReturnId"] == created["QrReturnId"]
            assert await provider.returned(qr_payment_id) == (50000, 30000)

            # More than Kaspi can still return: failed before payment/return, nothing moved.
            too_much = replace(waiting, leg_id="rfl_2", amount=40000)
            refused = await provider.poll_refund(too_much)
            assert refused.succeeded is False and "only 300.00 KZT" in (refused.error or "")
            # Past its deadline and still not scanned: the QR is dead.
            late = await provider.refund(replace(leg, leg_id="rfl_3"))
            assert late.return_qr is not None
            expired = replace(leg, return_qr_ref=late.return_qr.ref, return_qr_expires_at=provider.clock())
            dead = await provider.poll_refund(expired)
            assert dead.succeeded is False and "not scanned before it expired" in (dead.error or "")
            # An unknown return QR: a clear failure, not a retry forever.
            lost = await provider.poll_refund(replace(leg, return_qr_ref="424242"))
            assert lost.succeeded is False and "purchase not found" in (lost.error or "")
            assert sim.stats()["Calls"]["payment/return"] == 1
        finally:
            await provider.close()


def test_an_encrypted_device_token_is_sent_decrypted():
    """deploy/paycenter.env.example says the device token may be given encrypted, as the API key;
    before, the fernet:... text itself went to Kaspi."""
    from paycenter import crypto

    keyring = crypto.configure(crypto.new_key())
    try:
        sealed = keyring.seal("device-token-1")
        provider = KaspiQrProvider(settings("https://127.0.0.1:9", "r1", kaspi_qr_device_token=sealed))
        assert sealed.startswith("fernet:") and provider.device_token == "device-token-1"
    finally:
        crypto.configure("")


async def test_a_status_on_a_connection_the_server_closed_is_asked_again_at_once():
    """A server closes idle keep-alive connections; the poller comes back to a QR exactly one
    interval later, on such a connection. Before: that status call failed and the QR waited a
    whole interval more (bench/latency.py's QR tail of two intervals). A POST is not repeated."""
    import asyncio
    import json as jsonlib

    seen: list[tuple[str, str]] = []  # (request line, X-Request-ID)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(headers.get("Content-Length", "0"))
                if length:
                    await reader.readexactly(length)
                seen.append((lines[0], headers.get("X-Request-ID", "")))
                if served == 1:
                    return  # the second request on this connection: closed without an answer
                body = jsonlib.dumps({"StatusCode": 0, "Message": "", "Data": {"Status": "Wait"}}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = KaspiQrClient(settings(f"http://127.0.0.1:{port}", "r1"))
    try:
        # Three pooled connections, each answered once; the server then drops the next request on
        # each, as a server drops connections idle past its keep-alive.
        await asyncio.gather(*(client.call("GET", f"payment/status/{n}") for n in range(3)))
        assert len(seen) == 3
        assert await client.call("GET", "payment/status/5") == {"Status": "Wait"}
        assert len(seen) == 7 and seen[-1][0] == "GET /r1/v01/payment/status/5 HTTP/1.1"  # 3 dropped, then answered
        # A POST that goes out on a connection the server drops is not repeated by us.
        await asyncio.gather(*(client.call("GET", f"payment/status/{n}") for n in range(2)))
        before = len(seen)
        with pytest.raises(ProviderError, match="unreachable"):
            await client.call("POST", "qr/create", body={"Amount": 1})
        assert [line for line, _ in seen[before:]] == ["POST /r1/v01/qr/create HTTP/1.1"]
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
