"""How the Kaspi clients fail, end to end over real HTTP: the terminal simulator (kaspi.md §B)
refusing, hanging up, answering what is not its API; tokens refused, renewed, lost; what each
failure becomes (the ProviderError kind the loops act on: NotSent, TokenRejected,
CancelUnsupported, a retryable ProviderError) and what the terminal store is told.

The same for the Kaspi QR partner API (kaspi-qr-api.md): its simulator's injected error codes, and,
for what no Kaspi answer looks like (a gateway's 502, an HTML page, a StatusCode that is not a
number), a tiny loopback server answering that.

The store here is an in-memory TerminalStore (the protocol the DB store implements); one that can
be told to fail shows that a store outage never loses a renewed token pair. Nothing here touches
the database, so every backend runs the same tests.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kit.asgi_server import serve
from kit.kaspi import settings as qr_settings
from kit.sink import eventually
from paycenter.config import Settings
from paycenter.providers import kaspi_qr as qr
from paycenter.providers.base import (
    AttemptRef,
    AttemptStart,
    CancelUnsupported,
    NotSent,
    PollState,
    ProviderError,
    RefundLegRef,
    TerminalRef,
    TokenRejected,
)
from paycenter.providers.kaspi_pos import KaspiPosProvider, method_of, parse_expiry, renewal_due
from paycenter.providers.kaspi_qr import KaspiQrClient, KaspiQrProvider
from paycenter.simulators import kaspi_pos as kp
from paycenter.simulators import kaspi_qr

TERMINAL, TOKEN = "T1", "token-T1"


@dataclass
class Store:
    """An in-memory TerminalStore; ``failing`` makes its writes raise (a database outage)."""

    saved: list[TerminalRef] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    failing: bool = False

    async def current(self, terminal_id: str) -> TerminalRef | None:
        return self.saved[-1] if self.saved else None

    async def save_tokens(self, terminal_id: str, *, replaced: str, renewed: TerminalRef) -> bool:
        if self.failing:
            raise RuntimeError("database is down")
        self.saved.append(renewed)
        return True

    async def note(self, terminal_id: str, **changes: Any) -> None:
        if self.failing:
            raise RuntimeError("database is down")
        self.notes.append(changes)


@dataclass
class Pos:
    base: str
    sim: kp.Simulator

    def ref(self, name: str = TERMINAL, **changes: Any) -> TerminalRef:
        ref = TerminalRef(id=f"trm_{name}", name=name, base_url=f"{self.base}/terminals/{name}", access_token=TOKEN)
        return replace(ref, **changes)


@pytest.fixture
async def pos() -> AsyncIterator[Pos]:
    app = kp.create_app(terminals={TERMINAL: TOKEN}, camera=True)
    async with serve(app) as base:
        yield Pos(base, app.state.sim)


OPENED: list[KaspiPosProvider | KaspiQrProvider] = []  # closed after each test by close_providers


@pytest.fixture(autouse=True)
async def close_providers() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().close()


def provider(store: Store | None = None, clock: Any = None) -> KaspiPosProvider:
    settings = Settings(database_url="sqlite://", _env_file=None)  # type: ignore[call-arg]
    made = KaspiPosProvider(settings, store=store, clock=clock)
    OPENED.append(made)
    return made


def closed_port() -> str:
    """A loopback URL nothing listens on: the connection is refused, the request never leaves."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def attempt(terminal: TerminalRef, process_id: str) -> AttemptRef:
    return AttemptRef(attempt_id="att_f", provider_ref=process_id, amount=150000, currency="KZT", terminal=terminal)


def start_request(terminal: TerminalRef | None, amount: int = 150000) -> AttemptStart:
    return AttemptStart(
        attempt_id="att_f", payment_id="P" * 32, amount=amount, currency="KZT", description="", terminal=terminal
    )


def leg(terminal: TerminalRef | None, **changes: Any) -> RefundLegRef:
    values: dict[str, Any] = {
        "leg_id": "leg_f",
        "amount": 50000,
        "currency": "KZT",
        "provider_txn_id": "1",
        "attempt_ref": None,
        "terminal": terminal,
    }
    return RefundLegRef(**(values | changes))


# --- the terminal's protocol, read off its answers -------------------------------------------


def test_an_expiry_date_that_cannot_be_read_or_is_past_gives_no_expiry() -> None:
    """kaspi.md §B: expirationDate is the terminal's local time without a zone, in one of the
    formats S, T and N write; anything else, or a date already past, leaves renewal to a refusal."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("Jan 2, 2026 10:00:00", now) == datetime(2026, 1, 2, 4, 0, tzinfo=UTC)  # read as UTC+6
    assert parse_expiry("2026-01-02 10:00:00", now) is not None
    assert parse_expiry("tomorrow", now) is None
    assert parse_expiry(None, now) is None
    assert parse_expiry("2025-12-31 10:00:00", now) is None


def test_a_pair_without_a_lifetime_is_never_renewed_early() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ref = TerminalRef(id="t", name="t", base_url="http://x", access_token="a", refresh_token="r")
    backwards = replace(ref, token_renewed_at=now, token_expires_at=now - timedelta(minutes=1))
    assert not renewal_due(backwards, now + timedelta(days=1))
    assert not renewal_due(ref, now)  # no dates: a static token
    day = replace(ref, token_renewed_at=now, token_expires_at=now + timedelta(days=1))
    assert not renewal_due(day, now + timedelta(hours=12))  # never in the first half
    assert renewal_due(day, now + timedelta(hours=19))  # the last quarter


@pytest.mark.parametrize(
    ("product", "term", "cheque", "method"),
    [
        (None, None, None, None),
        ("kaspi_gold", None, None, "kaspi_gold"),
        ("Installment", "24", None, "kaspi_installment_24"),
        ("rassrochka", "12", None, "kaspi_installment_12"),
        ("red", None, None, "kaspi_red"),
        (None, None, "qr", "kaspi_qr"),
    ],
)
def test_the_payment_method_is_read_from_the_product_type_or_the_cheque(
    product: str | None, term: str | None, cheque: str | None, method: str | None
) -> None:
    assert method_of(product, term, cheque) == method


def test_kaspi_qr_reads_an_instalment_product_with_its_term() -> None:
    """kaspi-qr-api.md §3: ProductType with LoanTerm; 24 months or else the 12-month instalment."""
    assert qr.method_of("Installment", 24) == "kaspi_installment_24"
    assert qr.method_of("rassrochka", None) == "kaspi_installment_12"


# --- transport and answers that are not the API ----------------------------------------------


async def test_a_terminal_that_refuses_the_connection_was_not_sent_the_payment(pos: Pos) -> None:
    """kaspi_http: a connection never made means nothing was done, so the payer goes to the next
    terminal (NotSent), unlike any failure after the request left."""
    p = provider()
    with pytest.raises(NotSent) as caught:
        await p.start(start_request(pos.ref(base_url=closed_port())))
    assert caught.value.code == "unreachable"


async def test_an_answer_that_is_not_json_is_a_retryable_error_not_a_missing_call(pos: Pos) -> None:
    """A proxy's error page or a server without the path: the server answered, but not as the API
    does. A 404 without JSON carries the code a missing /v2/cancel carries (kaspi.md §B)."""
    p = provider()
    with pytest.raises(ProviderError) as caught:
        await p.device_info(pos.ref(base_url=f"{pos.base}/not-a-terminal"))
    assert type(caught.value) is ProviderError and caught.value.retryable
    assert caught.value.code == "404"
    assert "without JSON" in caught.value.message


async def test_a_payment_needs_a_terminal(pos: Pos) -> None:
    p = provider()
    with pytest.raises(ProviderError) as caught:
        await p.start(start_request(None))
    assert not caught.value.retryable
    with pytest.raises(ProviderError, match="whole tenge"):
        await p.start(start_request(pos.ref(), amount=150050))
    assert pos.sim.get(TERMINAL).current is None  # nothing was started on the terminal


async def test_a_camera_that_cannot_read_the_qr_leaves_the_payer_the_terminal_screen(pos: Pos) -> None:
    """The QR the camera reads is a convenience: the attempt starts without it."""
    p = provider()
    unreachable = await p.start(start_request(pos.ref(camera_url=f"{closed_port()}/scan")))
    assert unreachable.provider_ref and unreachable.qr_payload is None and unreachable.pay_link is None
    pos.sim.payer_cancel(TERMINAL)
    no_camera = await p.start(start_request(pos.ref(camera_url=f"{pos.base}/camera/scan-qr/NOPE")))
    assert no_camera.qr_payload is None  # {"success": false}: a camera that does not know it
    pos.sim.payer_cancel(TERMINAL)
    not_json = await p.start(start_request(pos.ref(camera_url=f"{pos.base}/no-camera-here")))
    assert not_json.qr_payload is None


# --- tokens (kaspi.md §B: /v2/register, /v2/revoke, renewal on 401/403) -----------------------


async def test_a_refused_token_without_a_store_is_not_renewed(pos: Pos) -> None:
    p = provider()
    with pytest.raises(TokenRejected):
        await p.device_info(pos.ref(access_token="dead"))
    assert pos.sim.get(TERMINAL).revoke_calls == 0


async def test_a_refused_token_without_a_refresh_token_asks_for_registration(pos: Pos) -> None:
    store = Store()
    p = provider(store)
    with pytest.raises(TokenRejected, match="paycenter terminal register T1"):
        await p.device_info(pos.ref(access_token="dead"))
    assert [n["trouble"] for n in store.notes if "trouble" in n]  # the operator is told why
    store.notes.clear()
    # Renewing ahead of a refusal does not raise an alarm: the token still works.
    with pytest.raises(TokenRejected, match="will refuse"):
        await p.renew(pos.ref())
    assert store.notes == []


async def test_a_registration_that_cannot_reach_the_terminal_is_retryable(pos: Pos) -> None:
    p = provider()
    with pytest.raises(ProviderError) as caught:
        await p.register(pos.ref(base_url=closed_port()), "paycenter-test")
    assert caught.value.retryable and "did not register us" in caught.value.message


async def test_a_registration_the_person_at_the_terminal_denies_is_refused(pos: Pos) -> None:
    """kaspi.md §B: /v2/register waits for the person at the terminal; a denial is a refusal with
    the terminal's words, and no token pair."""
    pos.sim.set_registration(TERMINAL, "manual")
    p = provider()
    asking = asyncio.create_task(p.register(pos.ref(access_token=""), "paycenter-test"))

    async def waiting() -> bool:
        return bool([f for f in pos.sim.get(TERMINAL).waiting_registrations if not f.done()])

    await eventually(waiting, timeout=10, what="a registration waiting at the terminal")
    pos.sim.decide_registration(TERMINAL, False)
    with pytest.raises(ProviderError, match="refused the registration") as caught:
        await asking
    assert not isinstance(caught.value, TokenRejected)


async def registered(p: KaspiPosProvider, pos: Pos) -> TerminalRef:
    return await p.register(pos.ref(access_token=""), "paycenter-test")


async def test_a_token_renewed_once_serves_every_caller_holding_the_old_one(pos: Pos) -> None:
    """Two calls refused with the same token renew it once: /v2/revoke kills the old pair, so a
    second revoke with it would be refused and the terminal lost (kaspi.md §B)."""
    store = Store()
    p = provider(store)
    ref = await registered(p, pos)
    renewed = await p.renew(ref, refused=True)
    again = await p.renew(ref, refused=True)
    assert again == renewed and renewed.access_token != ref.access_token
    assert pos.sim.get(TERMINAL).revoke_calls == 1
    assert store.saved == [renewed]
    # A ref that another process renewed since (later renewed_at) is taken as it is.
    other = replace(ref, access_token="other", token_renewed_at=renewed.token_renewed_at + timedelta(seconds=1))
    assert p.newest(other) is other
    assert p.newest(ref) == renewed


async def test_an_early_renewal_that_fails_keeps_using_the_live_token(pos: Pos) -> None:
    """Renewal is due in the pair's last quarter; if the terminal refuses it, the token still works
    until it expires, so the call goes on with it and the operator is told to register again."""
    store = Store()
    now = [datetime.now(UTC)]
    p = provider(store, clock=lambda: now[0])
    ref = replace(await registered(p, pos), refresh_token="not-the-refresh-token")
    now[0] += timedelta(hours=20)  # our clock only: the terminal's token lives 24 h by its own
    info = await p.device_info(ref)
    assert info  # the call was made with the old, still live token
    assert any("refused to renew" in n.get("trouble", "") for n in store.notes)


async def test_a_renewal_the_terminal_cannot_answer_is_tried_again_later(pos: Pos) -> None:
    """Only a refusal (105, 401/403) means the pair is dead; an unreachable terminal does not."""
    store = Store()
    p = provider(store)
    ref = replace(await registered(p, pos), base_url=closed_port())
    with pytest.raises(NotSent):
        await p.renew(ref, refused=True)
    assert store.notes == []


async def test_a_renewed_pair_the_store_could_not_take_is_stored_on_the_next_call(pos: Pos) -> None:
    """The old pair is dead once /v2/revoke answered: losing the new one would lose the terminal."""
    store = Store(failing=True)
    p = provider(store)
    ref = await registered(p, pos)
    renewed = await p.renew(ref)
    assert store.saved == []
    assert await p.device_info(ref)  # the old ref is answered with the new token
    store.failing = False
    await p.keep_token(ref)
    assert store.saved == [renewed]


# --- operations -------------------------------------------------------------------------------


async def test_cancel_support_is_learnt_once_even_if_the_store_is_down(pos: Pos) -> None:
    """kaspi.md §B: /v2/cancel exists on some firmware only; the first answer tells, and is
    remembered here even when the store cannot record it."""
    pos.sim.set_features(TERMINAL, True)
    store = Store(failing=True)
    p = provider(store)
    first = await p.start(start_request(pos.ref()))
    await p.cancel(attempt(pos.ref(), first.provider_ref))
    second = await p.start(start_request(pos.ref()))
    await p.cancel(attempt(pos.ref(), second.provider_ref))
    result = await p.poll(attempt(pos.ref(), second.provider_ref))
    assert result.state in (PollState.CANCELLED, PollState.FAILED)
    assert store.notes == []
    # A cancel the terminal refuses (no such process) is its answer, not a missing call.
    with pytest.raises(ProviderError) as refused:
        await p.cancel(attempt(pos.ref(), "no-such-process"))
    assert not isinstance(refused.value, CancelUnsupported) and refused.value.code != "404"


async def test_a_terminal_without_cancel_is_asked_once(pos: Pos) -> None:
    p = provider()  # no store: learnt in this process only
    started = await p.start(start_request(pos.ref()))
    with pytest.raises(CancelUnsupported):
        await p.cancel(attempt(pos.ref(), started.provider_ref))
    with pytest.raises(CancelUnsupported):
        await p.clear(pos.ref())
    assert pos.sim.get(TERMINAL).current is not None  # still waiting for the payer


async def test_a_refund_without_its_terminal_fails_without_a_call(pos: Pos) -> None:
    p = provider()
    outcome = await p.refund(leg(None))
    assert outcome.succeeded is False and "not in the pool" in (outcome.error or "")


async def test_a_refund_whose_status_is_unknown_is_actualized(pos: Pos) -> None:
    """kaspi.md §B: an unknown status asks /v2/actualize, and what it says then is believed."""
    p = provider()
    started = await p.start(start_request(pos.ref()))
    pos.sim.confirm(TERMINAL)
    paid = await p.poll(attempt(pos.ref(), started.provider_ref))
    assert paid.state is PollState.SUCCEEDED
    pos.sim.set_mode(TERMINAL, "unknown")
    refund_leg = leg(pos.ref(), provider_txn_id=paid.provider_txn_id, paid_by=paid.paid_by)
    outcome = await p.refund(refund_leg)
    assert outcome.succeeded is None and outcome.provider_ref
    pos.sim.confirm_refund(TERMINAL)
    done = await p.poll_refund(replace(refund_leg, provider_ref=outcome.provider_ref))
    assert done.succeeded is True


async def test_a_refund_the_customer_declines_fails_with_the_terminals_reason(pos: Pos) -> None:
    """The customer confirms a terminal refund in the Kaspi app (kaspi.md §B); a decline is final."""
    p = provider()
    started = await p.start(start_request(pos.ref()))
    pos.sim.confirm(TERMINAL, cheque_method="card")
    paid = await p.poll(attempt(pos.ref(), started.provider_ref))
    assert paid.paid_by == "card"  # refunded the way it was paid
    outcome = await p.refund(leg(pos.ref(), provider_txn_id=paid.provider_txn_id, paid_by=paid.paid_by))
    pos.sim.fail_refund(TERMINAL)
    declined = await p.poll_refund(leg(pos.ref(), provider_ref=outcome.provider_ref))
    assert declined.succeeded is False and declined.error
    assert pos.sim.get(TERMINAL).current is None  # the terminal is free for the next payer


# --- Kaspi QR (the partner API, kaspi-qr-api.md) ----------------------------------------------


class OddKaspi:
    """What stands between us and Kaspi answering not as the API does (a gateway's 502, an HTML
    error page, a JSON list, a StatusCode that is not a number, a status the document lacks); it
    also plays a terminal whose firmware leaves out the ids of its answers."""

    def __init__(self) -> None:
        self.answer: Response = JSONResponse({"StatusCode": 0, "Data": None})
        self.app = Starlette(routes=[Route("/{path:path}", self.respond, methods=["GET", "POST"])])

    async def respond(self, request: Request) -> Response:
        return self.answer


@pytest.fixture
async def odd() -> AsyncIterator[tuple[str, OddKaspi]]:
    fake = OddKaspi()
    async with serve(fake.app) as base:
        yield base, fake


def qr_provider(url: str, scheme: str = "r3", **extra: str) -> KaspiQrProvider:
    made = KaspiQrProvider(qr_settings(url, scheme, **({"kaspi_qr_device_token": "dt"} | extra)))
    OPENED.append(made)
    return made


def paid_leg(**changes: Any) -> RefundLegRef:
    return RefundLegRef(**({"leg_id": "rfl_f", "amount": 20000, "currency": "KZT", "provider_txn_id": "9"} | changes))


async def test_a_refund_kaspi_may_have_made_is_never_reported_failed_or_sent_again(odd: tuple[str, OddKaspi]) -> None:
    """payment/return answered by a gateway's HTTP 5xx, or not answered at all: the return may have
    happened, so the leg stays in doubt (a retryable ProviderError), neither failed nor NotSent."""
    base, fake = odd
    fake.answer = Response("<html>Bad Gateway</html>", status_code=502, media_type="text/html")
    codes = []
    for url in (base, closed_port()):
        with pytest.raises(ProviderError) as caught:
            await qr_provider(url).refund(paid_leg(attempt_ref="4294967297"))
        assert type(caught.value) is ProviderError and caught.value.retryable
        codes.append(caught.value.code)
    assert codes == ["http_502", None]  # a gateway's answer; a connection refused
    refused = await qr_provider(base).refund(paid_leg(attempt_ref=None))
    assert refused.succeeded is False and "no Kaspi payment id" in (refused.error or "")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Response("<html>maintenance</html>", media_type="text/html"), "without JSON"),
        (JSONResponse([1, 2]), "not an object"),
        (JSONResponse({"StatusCode": "oops", "Message": "broken"}), "Kaspi error oops: broken"),
        (JSONResponse({"StatusCode": 0, "Data": None}), "creation without data"),
    ],
)
async def test_a_qr_creation_answered_not_as_the_api_does_is_retryable(
    odd: tuple[str, OddKaspi], answer: Response, message: str
) -> None:
    """Nothing readable says the QR exists, so creating another is safe: a retryable error."""
    base, fake = odd
    fake.answer = answer
    with pytest.raises(ProviderError, match=message) as caught:
        await qr_provider(base).start(AttemptStart("att_f", "P", 50000, "KZT", "x"))
    assert caught.value.retryable


async def test_kaspi_qr_needs_its_settings() -> None:
    with pytest.raises(ProviderError, match="BASE_URL") as caught:
        KaspiQrClient(Settings(database_url="sqlite://", _env_file=None))  # type: ignore[call-arg]
    assert not caught.value.retryable
    with pytest.raises(ProviderError, match="DEVICE_TOKEN"):
        await qr_provider(closed_port(), kaspi_qr_device_token="").start(AttemptStart("att_f", "P", 50000, "KZT", "x"))


@pytest.fixture
async def r2() -> AsyncIterator[tuple[KaspiQrProvider, kaspi_qr.Simulator]]:
    app = kaspi_qr.create_app()
    async with serve(app) as url:
        client = KaspiQrClient(qr_settings(url, "r2"))
        try:
            points = await client.trade_points()
            token = await client.register_device("paycenter", points[0]["TradePointId"])
        finally:
            await client.close()
        yield qr_provider(url, "r2", kaspi_qr_device_token=token), app.state.sim


async def test_a_return_qr_kaspi_could_not_create_is_asked_again_or_failed(r2: Any) -> None:
    """r2 (kaspi-qr-api.md §5): a return QR nobody was shown moves no money, so a retryable error
    creating it is NotSent (ask again); a refusal fails the leg with Kaspi's reason."""
    provider, sim = r2
    leg = paid_leg(attempt_ref="4294967297")
    sim.inject_error("return/create", -999)
    with pytest.raises(NotSent):
        await provider.refund(leg)
    sim.inject_error("return/create", -1501)
    refused = await provider.refund(leg)
    assert refused.succeeded is False and refused.error
    assert sim.returns() == []


async def test_a_return_qr_whose_scan_failed_fails_the_leg_and_an_outage_is_asked_again(r2: Any) -> None:
    """return/status Error is final: nothing was returned, the merchant refunds again for a new QR;
    Kaspi unavailable (-999) is asked again later, never read as a failure."""
    provider, sim = r2
    shown = await provider.refund(paid_leg(attempt_ref="4294967297"))
    assert shown.return_qr is not None
    waiting = paid_leg(attempt_ref="4294967297", return_qr_ref=shown.return_qr.ref)
    sim.inject_error("return/status", -999)
    with pytest.raises(ProviderError) as caught:
        await provider.poll_refund(waiting)
    assert caught.value.retryable
    sim.fail_return(int(shown.return_qr.ref))
    failed = await provider.poll_refund(waiting)
    assert failed.succeeded is False and "Refund again" in (failed.error or "")
    assert sim.stats()["Calls"].get("payment/return", 0) == 0
    # A leg already returned (it has Kaspi's ReturnOperationId) is done: returns are immediate.
    done = await provider.poll_refund(replace(waiting, provider_ref="77"))
    assert (done.succeeded, done.provider_ref) == (True, "77")


async def test_a_return_status_the_document_lacks_reads_as_not_scanned_yet(odd: tuple[str, OddKaspi]) -> None:
    base, fake = odd
    fake.answer = JSONResponse({"StatusCode": 0, "Data": {"Status": "SomethingNew"}})
    provider = qr_provider(base, "r2")
    polled = await provider.poll_refund(paid_leg(attempt_ref="4294967297", return_qr_ref="5"))
    assert (polled.succeeded, polled.poll_in) == (None, provider.poll_every)


async def test_a_terminal_answer_without_its_ids_starts_nothing_and_proves_nothing(odd: tuple[str, OddKaspi]) -> None:
    """statusCode 0 without a processId started nothing we can follow; a success without a
    transactionId cannot be refunded later, so it is not taken as paid (kaspi.md §B: the
    transactionId is the cheque's orderNumber or rrn)."""
    base, fake = odd
    terminal = TerminalRef(id="trm_odd", name="K9", base_url=base, access_token=TOKEN)
    fake.answer = JSONResponse({"statusCode": 0, "data": {}})
    p = provider()
    with pytest.raises(ProviderError, match="started no process"):
        await p.start(start_request(terminal))
    refused = await p.refund(leg(terminal))
    assert refused.succeeded is False and "no refund process" in (refused.error or "")
    fake.answer = JSONResponse({"statusCode": 0, "data": {"status": "success", "chequeInfo": {"amount": "1500 ₸"}}})
    result = await p.poll(attempt(terminal, "1"))
    assert result.state is PollState.UNKNOWN and result.error == "success without a transactionId"
