"""Provider ``kaspi_pos``: Kaspi Smart POS terminals over their local REST API "v2".

Every protocol detail lives here (paths, parameters, statuses), from shared/reference/kaspi.md
section B. A terminal runs one operation at a time; the pool in ``providers.terminals`` hands
each live attempt (and each refund) its own terminal. The QR the payer scans is on the terminal's
screen; where a camera service reads it (as the old system did), the payment page shows it too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import aiohttp

from paycenter.config import Settings
from paycenter.money import reported_minor
from paycenter.providers import kaspi_http
from paycenter.providers.base import (
    METHOD_ALIASES,
    AttemptRef,
    AttemptStart,
    CancelUnsupported,
    NotSent,
    PollResult,
    PollState,
    ProviderError,
    RefundLegRef,
    RefundOutcome,
    Started,
    TerminalRef,
    TerminalStore,
    TokenRejected,
    UnknownOutcome,
    UnreadableSuccess,
)
from paycenter.providers.kaspi_qr import loan_method

log = logging.getLogger("paycenter.kaspi_pos")

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
REFUND_METHODS = ("qr", "card")
# The terminal prints its own cheque (owncheque=false): sent on payments and refunds as N and T
# send it; S reads false when it is absent (kaspi.md §B).
OWN_CHEQUE = "false"  # /v2/refund?method=, as chequeInfo.method names them
# A refused token: HTTP 401/403, or the same as the body's statusCode (S sends 401 in both).
TOKEN_CODES = ("401", "403")
REVOKE_REFUSED = "105"  # revoke with a name or refresh token the terminal does not know (S; N)
NO_SUCH_PATH = "404"  # a terminal without the call (S answers 404 to /v2/cancel)
# expirationDate comes without a zone: "MMM d, yyyy HH:mm:ss" (S, T) or "yyyy-MM-dd HH:mm:ss" (T, N).
EXPIRY_FORMATS = ("%b %d, %Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
# It is the terminal's local time. Kazakhstan has used UTC+5 and UTC+6; reading it as +06:00,
# the earlier of the two instants, renews at worst an hour early, never late.
TERMINAL_ZONE = timezone(timedelta(hours=6))
REGISTER_TIMEOUT = 180.0  # seconds /v2/register may wait for the person at the terminal to approve


def parse_expiry(raw: Any, now: datetime) -> datetime | None:
    """When a token pair expires, or None if the terminal's date cannot be read or is already
    past by our clock (then only a refusal tells us to renew)."""
    text = str(raw or "").strip()
    for fmt in EXPIRY_FORMATS:
        try:
            when = datetime.strptime(text, fmt)
        except ValueError:
            continue
        when = when.replace(tzinfo=TERMINAL_ZONE).astimezone(UTC)
        return when if when > now else None
    return None


def renewal_due(terminal: TerminalRef, now: datetime) -> bool:
    """Renew a quarter of the pair's lifetime before it expires (at least 5 minutes before: an
    independent client renews 5 minutes before expiry, kaspi.md §B), never in its first half."""
    if not terminal.refresh_token or terminal.token_expires_at is None or terminal.token_renewed_at is None:
        return False
    lifetime = terminal.token_expires_at - terminal.token_renewed_at
    if lifetime <= timedelta(0):
        return False
    margin = min(max(lifetime / 4, timedelta(minutes=5)), lifetime / 2)
    return now >= terminal.token_expires_at - margin


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

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
        store: TerminalStore | None = None,
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        # Where renewed tokens and detected features go; without one, tokens are never renewed.
        self.store = store
        # The newest credentials this process has for each terminal (a ref read before a renewal
        # still carries the dead token), and renewals the store has not taken yet.
        self._fresh: dict[str, TerminalRef] = {}
        self._unsaved: dict[str, str] = {}  # terminal id -> the refresh token its renewal replaced
        self._renewing: dict[str, asyncio.Lock] = {}
        self._cancels: dict[str, bool] = {}  # terminal id -> whether it has /v2/cancel, once learnt
        # processId -> (first unknown, last actualize); one poller leads at a time.
        self._unknown: dict[str, tuple[datetime, datetime | None]] = {}
        self.timeout = aiohttp.ClientTimeout(
            total=settings.kaspi_timeout, connect=min(settings.kaspi_connect_timeout, settings.kaspi_timeout)
        )
        self.verify_tls = settings.kaspi_pos_verify_tls
        self.refund_method = settings.kaspi_pos_refund_method
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, connector=kaspi_http.connector(self.verify_tls))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, terminal: TerminalRef, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET ``/v2/<path>`` with the terminal's newest token; returns ``data``. A token near its
        expiry is renewed first; a refused one is renewed and the call made once more (nothing was
        done when the terminal refused the token, so repeating it is safe)."""
        current = self.newest(terminal)
        await self._save_unsaved(current)
        if renewal_due(current, self.clock()):
            try:
                current = await self.renew(current)
            except ProviderError as exc:  # the token still works until it expires
                log.warning("terminal %s: early token renewal failed: %s", terminal.name, exc.message)
        try:
            return await self._get(current, path, params)
        except TokenRejected:
            if self.store is None:
                raise
            current = await self.renew(current, refused=True)
        return await self._get(current, path, params)

    async def _get(self, terminal: TerminalRef, path: str, params: dict[str, Any] | None) -> dict[str, Any]:
        session = await self.session()
        url = f"{terminal.base_url.rstrip('/')}/v2/{path}"
        try:
            async with session.get(url, params=params, headers={"accesstoken": terminal.access_token}) as resp:
                http_status = resp.status
                try:
                    payload = await resp.json(content_type=None)
                except ValueError:
                    payload = None
        except kaspi_http.TRANSPORT_ERRORS as exc:  # NotSent only if it never reached the terminal
            who = f"terminal {terminal.name}"
            raise kaspi_http.transport_error(exc, who, lost="did not answer", unsent_if_refused=True) from exc
        code = str(payload.get("statusCode")) if isinstance(payload, dict) else None
        if str(http_status) in TOKEN_CODES or code in TOKEN_CODES:
            raise TokenRejected(f"terminal {terminal.name} refused its access token", code="token")
        if not isinstance(payload, dict):
            raise kaspi_http.not_an_answer(
                f"terminal {terminal.name}", http_status, payload, code=NO_SUCH_PATH if http_status == 404 else None
            )
        if code != "0":
            message = payload.get("errorText") or payload.get("message") or "no message"
            if code in BUSY_CODES:
                raise NotSent(f"terminal {terminal.name} is busy: {message}", code="busy")
            raise ProviderError(f"terminal {terminal.name}: {message} (statusCode {code})", code=code)
        data = payload.get("data")
        return data if isinstance(data, dict) else {}

    # --- tokens (kaspi.md §B: /v2/register, /v2/revoke, renewal before expiry and on 401/403) ---

    def newest(self, terminal: TerminalRef) -> TerminalRef:
        known = self._fresh.get(terminal.id)
        if known is None or known.access_token == terminal.access_token:
            return terminal
        if terminal.token_renewed_at is not None and (
            known.token_renewed_at is None or terminal.token_renewed_at > known.token_renewed_at
        ):
            return terminal  # renewed by another process since
        return known

    def pair(self, terminal: TerminalRef, data: dict[str, Any], client_name: str) -> TerminalRef:
        access, refresh = data.get("accessToken"), data.get("refreshToken")
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise ProviderError(f"terminal {terminal.name} issued no token pair", retryable=False)
        now = self.clock()
        return replace(
            terminal,
            access_token=access,
            refresh_token=refresh,
            client_name=client_name,
            token_expires_at=parse_expiry(data.get("expirationDate"), now),
            token_renewed_at=now,
        )

    async def register(self, terminal: TerminalRef, client_name: str) -> TerminalRef:
        """``/v2/register``: the terminal asks the person in front of it to approve; the answer
        is a new token pair (returned, not stored: the caller stores it)."""
        session = await self.session()
        url = f"{terminal.base_url.rstrip('/')}/v2/register"
        try:
            async with session.get(
                url, params={"name": client_name}, timeout=aiohttp.ClientTimeout(total=REGISTER_TIMEOUT)
            ) as resp:
                payload = await resp.json(content_type=None)
        except (*kaspi_http.TRANSPORT_ERRORS, ValueError) as exc:  # ValueError: an answer not JSON
            raise kaspi_http.transport_error(exc, f"terminal {terminal.name}", lost="did not register us") from exc
        if not isinstance(payload, dict) or str(payload.get("statusCode")) != "0":
            message = payload.get("errorText") if isinstance(payload, dict) else None
            raise ProviderError(f"terminal {terminal.name} refused the registration: {message or payload!r}")
        data = payload.get("data")
        return self.pair(terminal, data if isinstance(data, dict) else {}, client_name)

    async def renew(self, terminal: TerminalRef, *, refused: bool = False) -> TerminalRef:
        """``/v2/revoke`` with the refresh token: a new pair, stored for every process. One
        renewal per terminal at a time here; another process's renewal is found in the store."""
        lock = self._renewing.setdefault(terminal.id, asyncio.Lock())
        async with lock:
            newest = self.newest(terminal)
            if newest.access_token != terminal.access_token:
                return newest  # renewed while this call waited for the lock
            if self.store is not None:
                stored = await self.store.current(terminal.id)
                if stored is not None and stored.access_token != terminal.access_token:
                    self._fresh[terminal.id] = stored
                    return stored
            if self.store is None or not terminal.refresh_token or not terminal.client_name:
                trouble = (
                    f"terminal {terminal.name} {'refused' if refused else 'will refuse'} its access token and "
                    f"paycenter holds no refresh token for it: register it with `paycenter terminal register "
                    f"{terminal.name} --url {terminal.base_url}`"
                )
                if self.store is not None and refused:
                    await self.store.note(terminal.id, trouble=trouble)
                raise TokenRejected(trouble, code="token")
            params = {"name": terminal.client_name, "refreshToken": terminal.refresh_token}
            try:
                data = await self._get(terminal, "revoke", params)
            except ProviderError as exc:
                if not isinstance(exc, TokenRejected) and exc.code != REVOKE_REFUSED:
                    raise  # unreachable, busy: try again later
                trouble = (
                    f"terminal {terminal.name} refused to renew its token ({exc.message}): register it again "
                    f"with `paycenter terminal register {terminal.name} --url {terminal.base_url}`"
                )
                await self.store.note(terminal.id, trouble=trouble)
                raise TokenRejected(trouble, code="token") from exc
            renewed = self.pair(terminal, data, terminal.client_name)
            # This process uses the new pair from now on, whether or not the store takes it yet.
            self._fresh[terminal.id] = renewed
            self._unsaved[terminal.id] = terminal.refresh_token
            await self._save_unsaved(renewed)
            log.info("terminal %s: token renewed, expires %s", terminal.name, renewed.token_expires_at)
            return renewed

    async def _save_unsaved(self, terminal: TerminalRef) -> None:
        replaced = self._unsaved.get(terminal.id)
        if replaced is None or self.store is None:
            return
        try:
            await self.store.save_tokens(terminal.id, replaced=replaced, renewed=self._fresh[terminal.id])
        except Exception:  # the old pair is dead: keep the new one here and store it on the next call
            log.exception("terminal %s: could not store its renewed token; will try again", terminal.name)
            return
        self._unsaved.pop(terminal.id, None)

    async def keep_token(self, terminal: TerminalRef) -> None:
        """Renew an idle terminal's token before it expires (no call would renew it otherwise)."""
        current = self.newest(terminal)
        await self._save_unsaved(current)
        if renewal_due(current, self.clock()):
            await self.renew(current)

    async def start(self, request: AttemptStart) -> Started:
        terminal = request.terminal
        if terminal is None:
            raise ProviderError("no terminal was allocated", retryable=False)
        data = await self.call(terminal, "payment", {"amount": whole_tenge(request.amount), "owncheque": OWN_CHEQUE})
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
        except (*kaspi_http.TRANSPORT_ERRORS, ValueError):
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
            paid_by = str(cheque.get("method") or "").strip().lower()
            return PollResult(
                state=state,
                raw_status=raw,
                provider_txn_id=str(txn),
                amount=amount,
                paid_by=paid_by if paid_by in REFUND_METHODS else None,
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
        await self._cancel(attempt.terminal, {"processId": attempt.provider_ref})

    async def clear(self, terminal: TerminalRef) -> None:
        """Clear whatever operation is stuck on the terminal (bare ``/v2/cancel``, the old system's)."""
        await self._cancel(terminal, None)

    async def _cancel(self, terminal: TerminalRef, params: dict[str, Any] | None) -> None:
        """``/v2/cancel`` where the terminal has it. No independent client knows the call and the
        terminal simulator S answers 404 (kaspi.md §B): whether a terminal has it is learnt from
        its first answer and remembered, never assumed."""
        current = self.newest(terminal)
        supported = self._cancels.get(terminal.id, current.cancel_supported)
        if supported is False:
            raise CancelUnsupported(f"terminal {terminal.name} cannot cancel an operation", retryable=False)
        try:
            await self.call(current, "cancel", params)
        except ProviderError as exc:
            if exc.code != NO_SUCH_PATH:
                raise
            await self._learn_cancel(current, False)
            raise CancelUnsupported(f"terminal {terminal.name} cannot cancel an operation", retryable=False) from exc
        if supported is None:
            await self._learn_cancel(current, True)

    async def _learn_cancel(self, terminal: TerminalRef, supported: bool) -> None:
        self._cancels[terminal.id] = supported
        if self.store is not None:
            try:
                await self.store.note(terminal.id, cancel_supported=supported)
            except Exception:
                log.exception("terminal %s: could not record whether it cancels", terminal.name)

    async def refund(self, leg: RefundLegRef) -> RefundOutcome:
        if leg.terminal is None:
            return RefundOutcome(succeeded=False, error="the terminal that took this payment is not in the pool")
        # Back the way it was paid: a card payment's transactionId is its rrn, and a terminal
        # refunds it only as card (kaspi.md §B; S refuses another method). The setting is for
        # payments recorded before paycenter kept the way.
        method = leg.paid_by if leg.paid_by in REFUND_METHODS else self.refund_method
        params = {
            "method": method,
            "amount": whole_tenge(leg.amount),
            "transactionId": leg.provider_txn_id,
            "owncheque": OWN_CHEQUE,
        }
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
