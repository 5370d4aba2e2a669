"""The kaspi_qr client against the simulator on every scheme: r1 (Api-Key), r2 (certificate only) and
r3 (the BIN in every POST body and in the trade points' path, none in its other GETs: kaspi-qr-api.md
§3), and refunds as each scheme has them (§5)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from asgi_server import serve
from paycenter.config import Settings
from paycenter.providers.base import AttemptRef, AttemptStart, PollState, ProviderError, RefundLegRef
from paycenter.providers.kaspi_qr import KaspiQrClient, KaspiQrProvider
from paycenter.simulators import kaspi_qr


def settings(url: str, scheme: str, **extra: str) -> Settings:
    values = {"kaspi_qr_base_url": url, "kaspi_qr_scheme": scheme, "kaspi_qr_api_key": "test-api-key"}
    values["kaspi_qr_organization_bin"] = "123456789012"
    return Settings(_env_file=None, **(values | extra))  # type: ignore[call-arg]


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
    app = kaspi_qr.create_app()
    async with serve(app) as url:
        token = await registered(url, scheme)
        provider = KaspiQrProvider(settings(url, scheme, kaspi_qr_device_token=token, kaspi_qr_mode=mode))
        try:
            qr_payment_id, _ = await pay(provider, app.state.sim)
            (purchase,) = app.state.sim.payments()
            assert purchase["QrPaymentId"] == int(qr_payment_id) and purchase["Kind"] == mode
        finally:
            await provider.close()


async def test_r3_refunds_directly():
    app = kaspi_qr.create_app()
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
    from test_configcheck import _certificate

    cert, key = _certificate(tmp_path, "locked", passphrase=b"not-given")
    config = Settings(
        kaspi_qr_base_url="https://127.0.0.1:1",
        kaspi_qr_scheme="r2",
        kaspi_qr_cert_file=str(cert),
        kaspi_qr_key_file=str(key),
    )
    with pytest.raises(ProviderError, match="KEY_FILE is encrypted"):
        KaspiQrClient(config)


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
