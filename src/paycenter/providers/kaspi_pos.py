"""Provider ``kaspi_pos``: Kaspi Smart POS terminals over their local REST API "v2".

Every protocol detail lives here (paths, parameters, statuses), from shared/reference/kaspi.md
section B. A terminal runs one operation at a time; the pool in ``providers.terminals`` hands
each live attempt (and each refund) its own terminal. The QR the payer scans is on the terminal's
screen; where a camera service reads it (as the old system did), the payment page shows it too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp

from paycenter.config import Settings
from paycenter.money import reported_minor
from paycenter.providers.base import (
    METHOD_ALIASES,
    AttemptRef,
    AttemptStart,
    NotSent,
    PollResult,
    PollState,
    ProviderError,
    RefundLegRef,
    RefundOutcome,
    Started,
    TerminalRef,
    UnknownOutcome,
    UnreadableSuccess,
)
from paycenter.providers.kaspi_qr import loan_method

# --- protocol ---------------------------------------------------------------------------------

FINAL = {"success": PollState.SUCCEEDED, "fail": PollState.FAILED, "unknown": PollState.UNKNOWN}
CANCEL_SUBSTATUSES = ("cancel",)  # a fail whose subStatus mentions a cancel: the payer cancelled
# Kaspi's product types (addInfo.ProductType) as our payment method codes.
PRODUCT_TYPES = {
    "gold": "kaspi_gold",
    "red": "kaspi_red",
    "credit": "kaspi_credit",
    "kredit": "kaspi_credit",
}
QR_SCAN_TIMEOUT_MS = 10_000
# "Previous operation not finished": nothing was done, try another terminal (107: every
# independent client and the terminal simulator S, shared/reference/kaspi.md §B).
BUSY_CODES = ("107",)


def method_of(product_type: Any, loan_term: Any, cheque_method: Any = None, loan_offer: Any = None) -> str | None:
    kind = str(product_type or cheque_method or "").strip().lower()
    if not kind:
        return None
    if kind.startswith("kaspi_"):
        return METHOD_ALIASES.get(kind, kind)
    if kind == "loan":
        return loan_method(loan_term, loan_offer)
    if "install" in kind or "rassroch" in kind:
        return "kaspi_installment_24" if str(loan_term) == "24" else "kaspi_installment_12"
    return PRODUCT_TYPES.get(kind, f"kaspi_{kind}")


def app_link(qr_data: str) -> str:
    """The terminal's QR (https://qr.kaspi.kz/...) as the link that opens the Kaspi app."""
    return qr_data.replace("https://qr.kaspi.kz/", "https://pay.kaspi.kz/pay/", 1)


def whole_tenge(minor: int) -> int:
    if minor % 100:
        raise ProviderError("Kaspi terminals take whole tenge", retryable=False)
    return minor // 100


# --- provider ---------------------------------------------------------------------------------


class KaspiPosProvider:
    name: ClassVar[str] = "kaspi_pos"
    pull: ClassVar[bool] = True
    needs_terminal: ClassVar[bool] = True
    max_in_flight: ClassVar[int] = 200
    currencies: ClassVar[tuple[str, ...] | None] = ("KZT",)
    poll_every = timedelta(0)  # a device on the shop's network: every poller cycle (1 s)
    refunds_refused: str | None = None

    # /v2/actualize: only for an unknown status, at least this far apart; an operation unknown for
    # longer than UNKNOWN_FOR goes to an operator (kaspi.md §B: S answers 103 otherwise; N waits
    # 10 s between calls and hands the operation to manual review after 180 s).
    ACTUALIZE_EVERY = timedelta(seconds=10)
    UNKNOWN_FOR = timedelta(seconds=180)

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        # processId -> (first unknown, last actualize); one poller leads at a time.
        self._unknown: dict[str, tuple[datetime, datetime | None]] = {}
        self.timeout = aiohttp.ClientTimeout(total=settings.kaspi_timeout, connect=min(5.0, settings.kaspi_timeout))
        self.verify_tls = settings.kaspi_pos_verify_tls
        self.refund_method = settings.kaspi_pos_refund_method
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=aiohttp.TCPConnector(limit=0, ssl=None if self.verify_tls else False)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, terminal: TerminalRef, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET ``/v2/<path>``; returns ``data``. A non-zero ``statusCode`` is an error."""
        session = await self.session()
        url = f"{terminal.base_url.rstrip('/')}/v2/{path}"
        try:
            async with session.get(url, params=params, headers={"accesstoken": terminal.access_token}) as resp:
                try:
                    payload = await resp.json(content_type=None)
                except ValueError:
                    raise ProviderError(f"terminal {terminal.name} answered HTTP {resp.status} without JSON") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"terminal {terminal.name} is unreachable: {type(exc).__name__}: {exc}") from exc
        if not isinstance(payload, dict):
            raise ProviderError(f"terminal {terminal.name} answered something that is not an object")
        if payload.get("statusCode") not in (0, "0"):
            message = payload.get("errorText") or payload.get("message") or "no message"
            if str(payload.get("statusCode")) in BUSY_CODES:
                raise NotSent(f"terminal {terminal.name} is busy: {message}", code="busy")
            raise ProviderError(
                f"terminal {terminal.name}: {message} (statusCode {payload.get('statusCode')})",
                code=str(payload.get("statusCode")),
            )
        data = payload.get("data")
        return data if isinstance(data, dict) else {}

    async def start(self, request: AttemptStart) -> Started:
        terminal = request.terminal
        if terminal is None:
            raise ProviderError("no terminal was allocated", retryable=False)
        data = await self.call(terminal, "payment", {"amount": whole_tenge(request.amount)})
        process_id = data.get("processId")
        if not process_id:
            raise ProviderError(f"terminal {terminal.name} started no process")
        qr = await self.read_qr(terminal)
        return Started(provider_ref=str(process_id), qr_payload=qr, pay_link=app_link(qr) if qr else None)

    async def read_qr(self, terminal: TerminalRef) -> str | None:
        """The QR on the terminal's screen, through its camera service; None without one."""
        if not terminal.camera_url:
            return None
        session = await self.session()
        try:
            async with session.get(terminal.camera_url, params={"timeout": QR_SCAN_TIMEOUT_MS}) as resp:
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None  # the payer can still scan the terminal itself
        if isinstance(payload, dict) and payload.get("success") and payload.get("qrData"):
            return str(payload["qrData"])
        return None

    async def poll(self, attempt: AttemptRef) -> PollResult:
        assert attempt.terminal is not None
        data = await self.call(attempt.terminal, "status", {"processId": attempt.provider_ref})
        result = self._result(data, attempt)
        ref = str(attempt.provider_ref)
        if result.state is not PollState.UNKNOWN:
            self._unknown.pop(ref, None)
            return result
        now = self.clock()
        since, actualized = self._unknown.get(ref, (now, None))
        if now - since >= self.UNKNOWN_FOR:
            raise UnknownOutcome(
                f"terminal {attempt.terminal.name} has not known the outcome of operation {ref} for "
                f"{int((now - since).total_seconds())} s: check the terminal and its cheques"
            )
        if actualized is not None and now - actualized < self.ACTUALIZE_EVERY:
            self._unknown[ref] = (since, actualized)
            return result
        # The terminal lost track: ask it to re-sync, and believe what it says then.
        self._unknown[ref] = (since, now)
        data = await self.call(attempt.terminal, "actualize", {"processId": attempt.provider_ref})
        result = self._result(data, attempt)
        if result.state is not PollState.UNKNOWN:
            self._unknown.pop(ref, None)
        return result

    def _result(self, data: dict[str, Any], attempt: AttemptRef) -> PollResult:
        raw = str(data.get("status") or "")
        state = FINAL.get(raw.lower(), PollState.ACTIVE)
        if state is PollState.SUCCEEDED:
            cheque = data.get("chequeInfo") or {}
            extra = data.get("addInfo") or {}
            # The amount may come as data.amount (a number) or only in the cheque's text
            # ("1500 ₸"; shared/reference/kaspi.md §B, from the terminal simulator S).
            reported = data.get("amount") if data.get("amount") not in (None, "") else cheque.get("amount")
            amount = reported_minor(reported)
            txn = data.get("transactionId")
            if not txn:
                return PollResult(state=PollState.UNKNOWN, raw_status=raw, error="success without a transactionId")
            if amount is None or amount <= 0:
                raise UnreadableSuccess(
                    f"terminal {attempt.terminal.name if attempt.terminal else '?'} reports payment {txn} as "
                    f"successful with an amount that cannot be read ({reported!r}); check the cheque"
                )
            return PollResult(
                state=state,
                raw_status=raw,
                provider_txn_id=str(txn),
                amount=amount,
                payment_method=method_of(
                    extra.get("ProductType"), extra.get("LoanTerm"), cheque.get("method"), extra.get("LoanOfferName")
                ),
            )
        if state is PollState.FAILED:
            sub = str(data.get("subStatus") or "")
            if any(word in sub.lower() for word in CANCEL_SUBSTATUSES):
                return PollResult(state=PollState.CANCELLED, raw_status=raw, error=f"cancelled at the terminal ({sub})")
            return PollResult(state=state, raw_status=raw, error=f"the terminal reported a failure ({sub or raw})")
        return PollResult(state=state, raw_status=raw)

    async def cancel(self, attempt: AttemptRef) -> None:
        assert attempt.terminal is not None
        await self.call(attempt.terminal, "cancel", {"processId": attempt.provider_ref})

    async def clear(self, terminal: TerminalRef) -> None:
        """Clear whatever operation is stuck on the terminal (``/v2/cancel`` with its token)."""
        await self.call(terminal, "cancel")

    async def refund(self, leg: RefundLegRef) -> RefundOutcome:
        if leg.terminal is None:
            return RefundOutcome(succeeded=False, error="the terminal that took this payment is not in the pool")
        params = {"method": self.refund_method, "amount": whole_tenge(leg.amount), "transactionId": leg.provider_txn_id}
        data = await self.call(leg.terminal, "refund", params)
        process_id = data.get("processId")
        if not process_id:
            return RefundOutcome(succeeded=False, error="the terminal started no refund process")
        # The customer confirms the refund in the Kaspi app (minutes); poll_refund follows it.
        return RefundOutcome(succeeded=None, provider_ref=str(process_id))

    async def poll_refund(self, leg: RefundLegRef) -> RefundOutcome:
        assert leg.terminal is not None and leg.provider_ref is not None
        data = await self.call(leg.terminal, "status", {"processId": leg.provider_ref})
        if str(data.get("status") or "").lower() == "unknown":
            data = await self.call(leg.terminal, "actualize", {"processId": leg.provider_ref})
        raw = str(data.get("status") or "").lower()
        if raw == "success":
            return RefundOutcome(succeeded=True, provider_ref=leg.provider_ref)
        if raw == "fail":
            return RefundOutcome(succeeded=False, provider_ref=leg.provider_ref, error=str(data.get("subStatus") or ""))
        return RefundOutcome(succeeded=None, provider_ref=leg.provider_ref)

    async def device_info(self, terminal: TerminalRef) -> dict[str, Any]:
        return await self.call(terminal, "deviceinfo")
