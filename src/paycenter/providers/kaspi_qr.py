"""Provider ``kaspi_qr``: the Kaspi Pay partner API (QR and pay links), polled for status.

Every protocol detail lives in this module (paths, field names, statuses, error codes), taken
from shared/reference/kaspi.md section A, so it can be corrected in one place from Kaspi's own
document. Kaspi never calls back and has no "expired" status: we expire a try ourselves from
``ExpireDate`` and the scan / confirmation timeouts it announces.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import aiohttp

from paycenter.config import Settings
from paycenter.crypto import reveal
from paycenter.money import reported_minor, to_major_str
from paycenter.providers import kaspi_http
from paycenter.providers.base import (
    AttemptRef,
    AttemptStart,
    NotSent,
    PollResult,
    PollState,
    ProviderError,
    RefundLegRef,
    RefundOutcome,
    ReturnQr,
    Started,
)

log = logging.getLogger(__name__)

# --- protocol ---------------------------------------------------------------------------------

STATUS = {
    "QrTokenCreated": PollState.WAITING,
    "Wait": PollState.ACTIVE,
    "Processed": PollState.SUCCEEDED,
    "Error": PollState.FAILED,
    # Seen in production, not in the document (kaspi-qr-api.md §4 [field]): a link opened but not
    # yet paid is still pending; a cancelled remote invoice is final and unpaid.
    "RemotePaymentCreated": PollState.WAITING,
    "RemotePaymentCanceled": PollState.FAILED,
}

ERRORS = {
    -1501: "Kaspi: device not found (register it with `paycenter kaspi-qr register-device`)",
    -1502: "Kaspi: device is inactive",
    -1601: "Kaspi: purchase not found",
    -99000002: "Kaspi: trade point not found",
    -99000005: "Kaspi: refund above the purchase amount",
    -99000006: "Kaspi: refund error, try again",
    -99000011: "Kaspi: the purchase's status does not allow a refund",
    -99000020: "Kaspi: a partial refund is not possible for this purchase",
    990000028: "Kaspi: wrong amount",
    -999: "Kaspi: service temporarily unavailable",
    -10000: "Kaspi: no client certificate",
}
# Worth asking again: Kaspi is busy or the refund hit a transient error.
RETRYABLE = {-999, -99000006}

# r1 has no refund API at all (kaspi-qr-api.md §1 table, "Refunds by API: none", and §5 "r1").
R1_NO_REFUNDS = (
    "Kaspi QR scheme r1 (the basic scheme with an API key) has no refund API, so paycenter cannot "
    "send this refund. Refund it in the Kaspi Pay app, Returns section, at the trade point where it was "
    "paid: the customer scans the QR on the cashier's screen, the cashier picks the purchase, enters the "
    "amount and confirms. paycenter does not learn of a refund made there: once it is done, an operator "
    "records it on the payment's page in the admin panel (a manual refund), which counts it and sends the "
    "refunded webhook. Schemes r2 and r3 refund through paycenter."
)

# r2 refunds need the customer (kaspi-qr-api.md §5 "r2"): return/create gives a QR they scan in
# Kaspi.kz; return/status says when they did; return/operations lists their latest purchases (at
# most 10); payment/return then takes the QrReturnId. r3 returns directly (§5 "r3").
RETURN_QR_SCHEME = "r2"
RETURN_SCANNED = "CustomerIdentityObtained"  # final: the customer is known (§3 return/status)
RETURN_FAILED = "Error"  # final; "QrTokenCreated" (and anything else): not scanned yet
MAX_OPERATIONS = 10  # return/operations' MaxResult: "default and maximum 10" (§3)


STALE_CONNECTION_TRIES = 3


def _answered(exc: ProviderError) -> int | None:
    """The StatusCode Kaspi answered with, if the error is an answer (not a network failure)."""
    try:
        return int(exc.code) if exc.code is not None else None
    except ValueError:
        return None  # e.g. "http_502": no answer from Kaspi itself


PRODUCT_TYPES = {"gold": "kaspi_gold", "red": "kaspi_red", "credit": "kaspi_credit"}


def method_of(product_type: str | None, loan_term: Any, loan_offer: Any = None) -> str | None:
    """Kaspi's ProductType (with LoanTerm and LoanOfferName) as our payment method code.

    ``Loan`` covers both instalments and credit (kaspi-qr-api.md §3): the offer's name says which
    when it is there; otherwise a loan with a term is an instalment, never a credit by default."""
    if not product_type:
        return None
    kind = product_type.strip().lower()
    if kind == "loan":
        return loan_method(loan_term, loan_offer)
    if "install" in kind or "rassroch" in kind:
        return "kaspi_installment_24" if str(loan_term) == "24" else "kaspi_installment_12"
    return PRODUCT_TYPES.get(kind, f"kaspi_{kind}")


def loan_method(loan_term: Any, loan_offer: Any = None) -> str:
    """A ``Loan`` as instalment or credit: by the offer's name, else a term means an instalment."""
    offer = str(loan_offer or "").lower()
    if "кредит" in offer or "credit" in offer:
        return "kaspi_credit"
    if loan_term or "рассроч" in offer or "install" in offer:
        return "kaspi_installment_24" if str(loan_term) == "24" else "kaspi_installment_12"
    return "kaspi_credit"


# Kaspi's dates vary (kaspi-qr-api.md §2): "2020-01-16T10:30:00+06", "2021-11-3T11:55:14.166+06:00",
# "2021-12-08T11:35:48.1566667", "...+05:00". Unpadded fields, any number of fraction digits, an offset
# of hours only, with or without minutes, or none (Kazakhstan time, our assumption).
_KASPI_TIME = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


def parse_time(value: Any) -> datetime | None:
    """A Kaspi date as an aware UTC datetime (to the microsecond, further digits cut); None if unreadable."""
    match = _KASPI_TIME.fullmatch(str(value or "").strip())
    if match is None:
        return None
    *fields, fraction, zone = match.groups()
    zone = (zone or "").replace(":", "").upper()
    microsecond = int((fraction or "")[:6].ljust(6, "0"))
    try:
        if not zone:
            tz: tzinfo = ALMATY  # no offset: Kazakhstan time (kaspi-qr-api.md §2)
        elif zone == "Z":
            tz = UTC
        else:
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:] or 0)))
        # _KASPI_TIME has six groups before the fraction: year, month, day, hour, minute, second.
        year, month, day, hour, minute, second = (int(f or 0) for f in fields)
        return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError):  # a field out of range, an offset of a day or more
        return None


ALMATY = ZoneInfo("Asia/Almaty")
# Longer than any QR lives (scan wait + confirmation: 180 + 65 s in every example, kaspi-qr-api.md §3).
MAX_POLL_INTERVAL = 3600


def poll_interval(value: Any) -> int | None:
    """StatusPollingInterval as whole seconds, rounded up: poll each QR at it, "not faster"
    (kaspi-qr-api.md §4). None when missing, not a number or not positive: the operator's
    PAYCENTER_KASPI_QR_STATUS_INTERVAL applies then."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return min(math.ceil(value), MAX_POLL_INTERVAL)


def _int64(value: str) -> int | str:
    """An id we store as text, sent as the Int64 JSON number Kaspi's ids are (kaspi-qr-api.md §2)."""
    return int(value) if value.isdigit() else value


def tenge(minor: int) -> int | float:
    """Minor units of KZT as the tenge number Kaspi expects (whole tenge in practice)."""
    value = Decimal(minor) / 100
    return int(value) if value == value.to_integral_value() else float(value)


# --- client -----------------------------------------------------------------------------------


def _no_passphrase() -> str:
    # Without this OpenSSL would ask for the key's passphrase on the terminal and hang the worker.
    raise ProviderError(
        "PAYCENTER_KASPI_QR_KEY_FILE is encrypted: store the client key without a passphrase "
        "(openssl pkey -in key.pem -out key-plain.pem), readable only by paycenter",
        retryable=False,
    )


class KaspiQrClient:
    """The partner API over aiohttp, for one configured scheme (r1, r2 or r3)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.kaspi_qr_base_url:
            raise ProviderError("PAYCENTER_KASPI_QR_BASE_URL is not set", retryable=False)
        self.base = settings.kaspi_qr_base_url.rstrip("/")
        self.scheme = settings.kaspi_qr_scheme
        self.api_key = reveal(settings.kaspi_qr_api_key)
        self.bin = settings.kaspi_qr_organization_bin
        self.timeout = aiohttp.ClientTimeout(
            total=settings.kaspi_timeout, connect=min(settings.kaspi_connect_timeout, settings.kaspi_timeout)
        )
        self._ssl: ssl.SSLContext | bool = True
        if self.scheme in ("r2", "r3"):
            context = ssl.create_default_context(cafile=settings.kaspi_qr_ca_file or None)
            if settings.kaspi_qr_cert_file:
                context.load_cert_chain(
                    settings.kaspi_qr_cert_file, settings.kaspi_qr_key_file or None, password=_no_passphrase
                )
            self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    def _url(self, path: str, version: str = "v01") -> str:
        return f"{self.base}/{self.scheme}/{version}/{path}"

    def _headers(self) -> dict[str, str]:
        # A new X-Request-ID for every HTTP request, 32 hex digits as in the document's example
        # (shared/reference/kaspi-qr-api.md §2).
        headers = {"Content-Type": "application/json", "Accept": "application/json", "X-Request-ID": uuid.uuid4().hex}
        if self.scheme == "r1":
            headers["Api-Key"] = self.api_key
        return headers

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.scheme == "r3":
            return {**body, "OrganizationBin": self.bin}
        return body

    def _params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        # No BIN in r3's GETs: only its trade points take it, as a path segment (kaspi-qr-api.md §3).
        return dict(params or {})

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, connector=kaspi_http.connector(self._ssl))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        version: str = "v01",
    ) -> Any:
        """One call; returns ``Data``. Non-zero ``StatusCode`` is an error even with HTTP 200."""
        session = await self.session()
        # A GET (a status, details) is asked again at once when the server had closed the pooled
        # connection it went out on: a server closes idle keep-alive connections, and the poller
        # comes back to its QRs exactly one StatusPollingInterval later, when several pooled
        # connections may be stale (aiohttp itself retries once, on the next one). Without this a
        # QR waited a whole interval more (bench/latency.py). A POST is never repeated here.
        tries = STALE_CONNECTION_TRIES if method == "GET" else 1
        for left in range(tries - 1, -1, -1):
            try:
                payload = await self._request(session, method, path, body, params, version)
                break
            except aiohttp.ServerDisconnectedError as exc:
                if left:
                    continue
                raise kaspi_http.transport_error(exc, "Kaspi") from exc
            except kaspi_http.TRANSPORT_ERRORS as exc:
                raise kaspi_http.transport_error(exc, "Kaspi") from exc
        if not isinstance(payload, dict):
            raise ProviderError("Kaspi answered something that is not an object")
        code: Any = payload.get("StatusCode")  # whatever JSON Kaspi sent: read by int() below
        if code not in (0, "0"):
            try:
                number = int(code)
            except (TypeError, ValueError):
                number = None
            text = ERRORS.get(number or 0) or f"Kaspi error {code}: {payload.get('Message') or 'no message'}"
            raise ProviderError(text, code=str(code), retryable=number in RETRYABLE or number is None)
        return payload.get("Data")

    # The calls an operator makes once, from the CLI.
    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
        version: str,
    ) -> Any:
        async with session.request(
            method,
            self._url(path, version),
            json=self._body(body) if body is not None else None,
            params=self._params(params),
            headers=self._headers(),  # a new X-Request-ID for every request, a repeat included
        ) as resp:
            if resp.status >= 500:
                raise ProviderError(f"Kaspi answered HTTP {resp.status}", code=f"http_{resp.status}")
            try:
                return await resp.json(content_type=None)
            except ValueError:
                raise kaspi_http.not_an_answer("Kaspi", resp.status, None) from None

    async def trade_points(self) -> list[dict[str, Any]]:
        path = f"partner/tradepoints/{self.bin}" if self.scheme == "r3" else "partner/tradepoints"
        return list(await self.call("GET", path) or [])

    async def register_device(self, device_id: str, trade_point_id: int) -> str:
        data = await self.call("POST", "device/register", body={"DeviceId": device_id, "TradePointId": trade_point_id})
        return str(data["DeviceToken"])


class KaspiQrProvider:
    name: ClassVar[str] = "kaspi_qr"
    pull: ClassVar[bool] = True
    needs_terminal: ClassVar[bool] = False
    max_in_flight: ClassVar[int] = 200
    currencies: ClassVar[tuple[str, ...] | None] = ("KZT",)

    def __init__(self, settings: Settings, *, clock: Any = None) -> None:
        self.client = KaspiQrClient(settings)
        self.device_token = reveal(settings.kaspi_qr_device_token)  # may be given encrypted, as the key
        self.mode = settings.kaspi_qr_mode
        self.clock = clock or (lambda: datetime.now(UTC))
        # The document: poll payment/status every StatusPollingInterval seconds, "not faster"
        # (kaspi-qr-api.md §4; 5 in every example). Each QR's own value, from its creation, is kept
        # with its attempt (Started.poll_interval); this is for a QR that came without one.
        # The operator's override, if any, replaces both (at their own risk: README).
        self.override = settings.kaspi_qr_status_interval_override or None
        self.poll_every = timedelta(seconds=self.override or settings.kaspi_qr_status_interval)
        self.scheme = settings.kaspi_qr_scheme
        self.refunds_refused = R1_NO_REFUNDS if self.scheme == "r1" else None

    async def start(self, request: AttemptStart) -> Started:
        if not self.device_token:
            raise ProviderError("PAYCENTER_KASPI_QR_DEVICE_TOKEN is not set", retryable=False)
        body = {"DeviceToken": self.device_token, "Amount": tenge(request.amount), "ExternalId": request.attempt_id}
        now = self.clock()
        if self.mode == "link":
            data = await self.call_create("qr/create-link", body)
            ref, link, qr = str(data["PaymentId"]), data.get("PaymentLink"), data.get("PaymentLink")
            options = data.get("PaymentBehaviorOptions") or {}
            scan_wait = options.get("LinkActivationWaitTimeout")
        else:
            data = await self.call_create("qr/create", body)
            ref, link, qr = str(data["QrPaymentId"]), None, data.get("QrToken")
            options = data.get("QrPaymentBehaviorOptions") or {}
            scan_wait = options.get("QrCodeScanWaitTimeout")
        deadlines = [d for d in (parse_time(data.get("ExpireDate")),) if d]
        if scan_wait:
            deadlines.append(now + timedelta(seconds=float(scan_wait)))
        confirm = options.get("PaymentConfirmationTimeout")
        return Started(
            provider_ref=ref,
            qr_payload=qr,
            pay_link=link,
            expires_at=min(deadlines) if deadlines else None,
            confirm_timeout=float(confirm) if confirm else None,
            poll_interval=None if self.override else poll_interval(options.get("StatusPollingInterval")),
        )

    async def call_create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = await self.client.call("POST", path, body=body)
        if not isinstance(data, dict):
            raise ProviderError("Kaspi answered a creation without data")
        return data

    async def poll(self, attempt: AttemptRef) -> PollResult:
        data = await self.client.call("GET", f"payment/status/{attempt.provider_ref}", version="v02")
        raw = str((data or {}).get("Status", ""))
        state = STATUS.get(raw)
        if state is None:
            # Any other value: still in progress, never paid and never failed by default
            # (kaspi-qr-api.md §4); the QR's own deadline still ends the try.
            log.warning("Kaspi QR %s: unknown status %r, read as in progress", attempt.provider_ref, raw)
            return PollResult(state=PollState.WAITING, raw_status=raw)
        if state is PollState.SUCCEEDED:
            amount = reported_minor(data.get("Amount"))
            return PollResult(
                state=state,
                raw_status=raw,
                provider_txn_id=str(data.get("TransactionId") or f"qr-{attempt.provider_ref}"),
                amount=amount if amount is not None else attempt.amount,
                payment_method=method_of(data.get("ProductType"), data.get("LoanTerm"), data.get("LoanOfferName")),
            )
        if state is PollState.ACTIVE and attempt.last_status != raw and attempt.confirm_timeout:
            # Just scanned: from now on the payer has the confirmation timeout to confirm.
            deadline = self.clock() + timedelta(seconds=attempt.confirm_timeout)
            return PollResult(state=state, raw_status=raw, expires_at=deadline)
        if state is PollState.FAILED:
            return PollResult(state=state, raw_status=raw, error="Kaspi reported an error for this payment")
        return PollResult(state=state, raw_status=raw)

    async def cancel(self, attempt: AttemptRef) -> None:
        # The partner API has no cancel: an abandoned QR simply lapses at its ExpireDate.
        return None

    async def refund(self, leg: RefundLegRef) -> RefundOutcome:
        if self.refunds_refused:
            # Refused up front by refunds.request; a leg asked before that rule is not sent either.
            return RefundOutcome(succeeded=False, error=self.refunds_refused)
        if not leg.attempt_ref:
            return RefundOutcome(succeeded=False, error="no Kaspi payment id for this operation")
        if self.scheme == RETURN_QR_SCHEME and not leg.return_qr_ref:
            return await self._create_return_qr(leg)
        # QrPaymentId is an Int64 (kaspi-qr-api.md §2): a JSON number, not the string we store.
        body: dict[str, Any] = {"DeviceToken": self.device_token, "QrPaymentId": _int64(leg.attempt_ref)}
        if leg.return_qr_ref:
            body["QrReturnId"] = _int64(leg.return_qr_ref)  # r2: the return QR the customer scanned
        body["Amount"] = tenge(leg.amount)
        try:
            data = await self.client.call("POST", "payment/return", body=body)
        except ProviderError as exc:
            if _answered(exc) in RETRYABLE:
                # Kaspi answered, and its answer is "not done, try again": safe to send again.
                raise NotSent(exc.message, code=exc.code) from None
            if exc.retryable:
                raise  # no answer (network, HTTP 5xx): the refund may have happened
            return RefundOutcome(succeeded=False, error=exc.message)
        return RefundOutcome(succeeded=True, provider_ref=str((data or {}).get("ReturnOperationId", "")) or None)

    async def _create_return_qr(self, leg: RefundLegRef) -> RefundOutcome:
        """r2: the QR the customer scans to allow the refund (return/create); nothing moves yet."""
        now = self.clock()
        try:
            data = await self.call_create("return/create", {"DeviceToken": self.device_token, "ExternalId": leg.leg_id})
        except ProviderError as exc:
            if exc.retryable:
                # A return QR nobody is shown moves no money: asking for another is always safe.
                raise NotSent(exc.message, code=exc.code) from None
            return RefundOutcome(succeeded=False, error=exc.message)
        options = data.get("QrReturnBehaviorOptions") or {}
        deadlines = [d for d in (parse_time(data.get("ExpireDate")),) if d]
        if options.get("QrCodeScanWaitTimeout"):
            deadlines.append(now + timedelta(seconds=float(options["QrCodeScanWaitTimeout"])))
        qr = ReturnQr(
            payload=str(data["QrToken"]),
            ref=str(data["QrReturnId"]),
            expires_at=min(deadlines) if deadlines else None,
        )
        return RefundOutcome(succeeded=None, return_qr=qr, poll_in=self.poll_every)

    async def poll_refund(self, leg: RefundLegRef) -> RefundOutcome:
        if leg.provider_ref or not leg.return_qr_ref:
            return RefundOutcome(succeeded=True, provider_ref=leg.provider_ref)  # returns are immediate
        # r2, the customer's turn: poll return/status until CustomerIdentityObtained, Error or the
        # scan wait is over (kaspi-qr-api.md §4, duty 5), as often as purchases are polled.
        try:
            data = await self.client.call("GET", f"return/status/{leg.return_qr_ref}")
            status = str((data or {}).get("Status", ""))
            if status == RETURN_SCANNED:
                return await self._customer_may_be_refunded(leg)
        except ProviderError as exc:
            if exc.retryable:
                raise  # ask again later
            return RefundOutcome(
                succeeded=False, error=f"{exc.message} (return QR {leg.return_qr_ref}); nothing was returned"
            )
        if status == RETURN_FAILED:
            return RefundOutcome(
                succeeded=False,
                error="Kaspi reported an error for the return QR (the customer's scan failed); nothing was returned. "
                "Refund again to show the customer a new return QR.",
            )
        if leg.return_qr_expires_at and self.clock() >= leg.return_qr_expires_at:
            # This answer was the last status call: still not scanned, so the QR is dead.
            when = leg.return_qr_expires_at.astimezone(ALMATY).strftime("%Y-%m-%d %H:%M:%S")
            return RefundOutcome(
                succeeded=False,
                error=f"The return QR was not scanned before it expired ({when} Almaty time); nothing was "
                "returned. Refund again to show the customer a new return QR.",
            )
        if status != "QrTokenCreated":
            log.warning("Kaspi return QR %s: unknown status %r, read as not scanned yet", leg.return_qr_ref, status)
        return RefundOutcome(succeeded=None, poll_in=self.poll_every)

    async def _customer_may_be_refunded(self, leg: RefundLegRef) -> RefundOutcome:
        """The customer scanned: is this purchase theirs (return/operations), and can Kaspi still
        return this much of it (payment/details)? Then the return may go (``payer_ready``)."""
        body = {
            "DeviceToken": self.device_token,
            "QrReturnId": _int64(leg.return_qr_ref or ""),
            "MaxResult": MAX_OPERATIONS,
        }
        operations = await self.client.call("POST", "return/operations", body=body)
        theirs = {str(op.get("QrPaymentId")) for op in operations or [] if isinstance(op, dict)}
        if leg.attempt_ref not in theirs:
            # Failed, not a new QR on our own: someone the operator did not mean scanned it, or the
            # purchase is older than the customer's last ten, and a new QR would not find it either.
            return RefundOutcome(
                succeeded=False,
                error=f"The customer who scanned the return QR does not have this purchase (Kaspi QrPaymentId "
                f"{leg.attempt_ref}) among their last {MAX_OPERATIONS} Kaspi purchases: another Kaspi account "
                "scanned it, or the purchase is older than their last ten. Nothing was returned. Refund again "
                "and have the customer who paid scan the new QR, or refund in the Kaspi Pay app.",
            )
        _, available = await self.returned(leg.attempt_ref or "")
        if available < leg.amount:
            return RefundOutcome(
                succeeded=False,
                error=f"Kaspi can return only {to_major_str(available, leg.currency)} {leg.currency} of this purchase "
                "(payment/details AvailableReturnAmount); nothing was returned",
            )
        return RefundOutcome(succeeded=None, payer_ready=True)

    async def returned(self, qr_payment_id: str) -> tuple[int, int]:
        """(total, still returnable) of a purchase, in minor units: to check a refund's fate."""
        data = await self.client.call(
            "GET", "payment/details", params={"QrPaymentId": qr_payment_id, "DeviceToken": self.device_token}
        )
        return reported_minor(data.get("TotalAmount")) or 0, reported_minor(data.get("AvailableReturnAmount")) or 0

    async def close(self) -> None:
        await self.client.close()
