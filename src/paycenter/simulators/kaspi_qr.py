"""Simulator of the Kaspi Pay partner API ("Kaspi QR", kaspi.md section A) as an ASGI app.

paycenter's ``kaspi_qr`` client is written from the same document and tested against this app over real
HTTP, so every protocol detail (paths, field names, statuses, error codes, time format) lives in the
PROTOCOL section right below and can be corrected there once the real document is at hand.

Wire (``{scheme}`` is ``r1``, ``r2`` or ``r3``; every answer is HTTP 200 ``{"StatusCode", "Message", "Data"}``):

    GET  /{scheme}/v01/partner/tradepoints                      -> [{TradePointId, TradePointName}]
    GET  /r3/v01/partner/tradepoints/{OrganizationBin}          (r3's only form; no BIN on r3's other GETs)
    POST /{scheme}/v01/device/register {DeviceId, TradePointId} -> {DeviceToken}
    POST /{scheme}/v01/device/delete {DeviceToken}              -> null (not in kaspi.md; seen in integrations)
    POST /{scheme}/v01/qr/create {DeviceToken, Amount, ExternalId}
                                -> {QrToken, ExpireDate, QrPaymentId, PaymentMethods, QrPaymentBehaviorOptions}
    POST /{scheme}/v01/qr/create-link (same body)
                                -> {PaymentLink, ExpireDate, PaymentId, PaymentMethods, PaymentBehaviorOptions}
    GET  /{scheme}/v01/payment/status/{QrPaymentId}             -> {Status}
    GET  /{scheme}/v02/payment/status/{QrPaymentId}             -> {Status, TransactionId, ProductType, LoanTerm,
                                                                    Amount, StoreName}
    GET  /{r2,r3}/v01/payment/details?QrPaymentId=&DeviceToken= -> {QrPaymentId, TotalAmount,
                                                                   AvailableReturnAmount, TransactionDate}
    POST /r2/v01/return/create {DeviceToken, ExternalId}        -> {QrToken, ExpireDate, QrReturnId,
                                                                    QrReturnBehaviorOptions}
    GET  /r2/v01/return/status/{QrReturnId}                     -> {Status}
    POST /r2/v01/return/operations {DeviceToken, QrReturnId, MaxResult}
                                                                -> [{QrPaymentId, Amount, TransactionDate}]
    POST /r2/v01/payment/return {DeviceToken, QrPaymentId, QrReturnId, Amount}  -> {ReturnOperationId}
    POST /r3/v01/payment/return {DeviceToken, QrPaymentId, Amount, OrganizationBin} -> {ReturnOperationId}
    POST /{scheme}/v01/test/payment/scan|confirm|scanerror|confirmerror {qrPaymentId} -> {StatusCode, message}

Ids (QrPaymentId / PaymentId, QrReturnId, ReturnOperationId, TradePointId) are Int64 JSON numbers, issued
above 2^32 as Kaspi's are (kaspi-qr-api.md §2); a body that sends one as a string is refused.

r1 has no refund calls at all; the return QR calls are r2's alone (kaspi-qr-api.md §1 and §5): a call
outside its schemes answers 404, as a path the scheme does not serve.

r1 wants header ``Api-Key``; r3 wants ``OrganizationBin`` in every POST body (the test/* emulator calls
excepted) and in the trade points' path, none in its other GETs; r2 checks neither (the client
certificate is the TLS server's business, not this app's).

The customer of a return QR (r2) is played by the ``/_sim/returns/{QrReturnId}/scan`` control (or
``Simulator.scan_return``), as ``/_sim/payments/{id}/scan`` plays the payer; ``confirm`` takes the
``customer`` who paid, whose scan then lists that purchase.

Controls for tests (plain JSON, no envelope, no auth) under ``/_sim``: see ``_CONTROL_ROUTES`` and the
``Simulator`` methods of the same names, which in-process tests may call directly (from the event loop
that serves the app).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# ======================================================================================================
# PROTOCOL: everything taken from kaspi.md section A (or assumed where it is silent) lives here.
# ======================================================================================================

SCHEME_BASIC = "r1"  # header Api-Key
SCHEME_STANDARD = "r2"  # client certificate only
SCHEME_ENHANCED = "r3"  # client certificate + OrganizationBin
SCHEMES = frozenset({SCHEME_BASIC, SCHEME_STANDARD, SCHEME_ENHANCED})
API_KEY_SCHEMES = frozenset({SCHEME_BASIC})
BIN_SCHEMES = frozenset({SCHEME_ENHANCED})
# Refunds per scheme (kaspi-qr-api.md §1 table, column "Refunds by API", and §5 "Refund flow per
# scheme"): r1 has none (the cashier refunds in the Kaspi Pay app); r2 only with a return QR the
# customer scans; r3 directly. Always enforced: a lenient simulator let paycenter call payment/return
# on r1 unnoticed (issue 12).
RETURN_QR_SCHEMES = frozenset({SCHEME_STANDARD})  # §3: return/create, return/status, return/operations "(r2)"
DIRECT_RETURN_SCHEMES = frozenset({SCHEME_ENHANCED})  # §5 r3: payment/return with OrganizationBin, no customer
REFUND_SCHEMES = RETURN_QR_SCHEMES | DIRECT_RETURN_SCHEMES  # §3: payment/details, payment/return "(r2, r3; not r1)"

REQUEST_ID_HEADER = b"x-request-id"  # required on every request (kaspi-qr-api.md §2)
API_KEY_HEADER = b"api-key"  # "Api-Key"; HTTP header names are case-insensitive (ASGI gives them lower-case)
VERSION_1 = "v01"
VERSION_2 = "v02"  # only payment/status has a v02

# Operations: the path after /{scheme}/{version}/
OP_TRADEPOINTS = "partner/tradepoints"
OP_DEVICE_REGISTER = "device/register"
OP_DEVICE_DELETE = "device/delete"
OP_QR_CREATE = "qr/create"
OP_LINK_CREATE = "qr/create-link"
OP_STATUS = "payment/status"  # + "/{QrPaymentId}"
OP_DETAILS = "payment/details"
OP_RETURN = "payment/return"
OP_RETURN_CREATE = "return/create"
OP_RETURN_STATUS = "return/status"  # + "/{QrReturnId}"
OP_RETURN_OPERATIONS = "return/operations"
OP_TEST_SCAN = "test/payment/scan"
OP_TEST_CONFIRM = "test/payment/confirm"
OP_TEST_SCAN_ERROR = "test/payment/scanerror"
OP_TEST_CONFIRM_ERROR = "test/payment/confirmerror"
TEST_OPS = frozenset({OP_TEST_SCAN, OP_TEST_CONFIRM, OP_TEST_SCAN_ERROR, OP_TEST_CONFIRM_ERROR})
# Which schemes serve an operation; any other is served on all three.
OPERATION_SCHEMES: dict[str, frozenset[str]] = {
    OP_DETAILS: REFUND_SCHEMES,  # §3 "GET payment/details (r2, r3)"
    OP_RETURN: REFUND_SCHEMES,  # §3 "POST payment/return (r2, r3; not r1)"
    OP_RETURN_CREATE: RETURN_QR_SCHEMES,  # §3 "POST return/create (r2)"
    OP_RETURN_STATUS: RETURN_QR_SCHEMES,  # §3 "GET return/status/{QrReturnId} (r2)"
    OP_RETURN_OPERATIONS: RETURN_QR_SCHEMES,  # §3 "POST return/operations (r2)"
}
BIN_EXEMPT_OPS = TEST_OPS  # the test-host emulator calls are documented with a bare {qrPaymentId} body

# Request fields
F_BIN = "OrganizationBin"
F_DEVICE_ID = "DeviceId"
F_TRADE_POINT_ID = "TradePointId"
F_TRADE_POINT_NAME = "TradePointName"
F_DEVICE_TOKEN = "DeviceToken"
F_AMOUNT = "Amount"
F_EXTERNAL_ID = "ExternalId"
F_QR_PAYMENT_ID = "QrPaymentId"  # payment/return body, payment/details query
F_TEST_PAYMENT_ID = "qrPaymentId"  # test/payment/* body: lower camel case as kaspi.md writes it
F_QR_RETURN_ID = "QrReturnId"  # return/status path, return/operations and r2's payment/return body
F_MAX_RESULT = "MaxResult"  # return/operations: optional, default and maximum 10 (§3)

# Payment statuses. There is no "expired" status: the merchant decides expiry itself.
ST_CREATED = "QrTokenCreated"  # not scanned yet
ST_WAIT = "Wait"  # scanned / link opened, awaiting confirmation
ST_PROCESSED = "Processed"  # paid: the only success
ST_ERROR = "Error"
FINAL_STATUSES = frozenset({ST_PROCESSED, ST_ERROR})
# Return QR statuses (§3 return/status): created and not scanned yet; scanned, the customer is known
# (final); failed (final). There is no "expired" either: the client stops at QrCodeScanWaitTimeout.
RST_CREATED = "QrTokenCreated"
RST_IDENTIFIED = "CustomerIdentityObtained"
RST_ERROR = "Error"
RETURN_FINAL_STATUSES = frozenset({RST_IDENTIFIED, RST_ERROR})
MAX_RESULT = 10  # return/operations: "default and maximum 10" (§3)
# Who pays a purchase when a test does not say: return/operations lists a customer's purchases, so
# every paid purchase belongs to someone.
DEFAULT_CUSTOMER = "customer-1"

# Ids: TradePointId, QrPaymentId, PaymentId, QrReturnId and ReturnOperationId are Int64, sent as JSON
# numbers; "values above 2^32 occur" (kaspi-qr-api.md §2 [field]). Ours start above it, so a client that
# squeezes them into 32 bits fails here and not in production.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ID_FLOOR = 2**32

PAYMENT_METHODS = ("Gold", "Red", "Loan")  # also the ProductType values of v02 status
PAYMENT_LINK_PREFIX = "https://pay.kaspi.kz/pay/"
# Dates (kaspi-qr-api.md §2): ISO 8601 in Kazakhstan time, in forms that vary. The document shows
# "2020-01-16T10:30:00+06" (hour-only offset), "2021-11-3T11:55:14.166+06:00" (unpadded day,
# milliseconds) and "2021-12-08T11:35:48.1566667" (7 fraction digits, no offset); +05:00 appears in the
# field, Kazakhstan being UTC+5 since 2024-03-01 (older examples show +06:00). ``time_form`` picks one;
# ``time_offset`` (hours, 5 or 6) the offset written; the form without an offset is Almaty wall time.
TIME_FORM_SECONDS = "seconds"  # 2026-12-06T14:05:33+05:00
TIME_FORM_MILLIS = "millis"  # 2026-12-06T14:05:33.123+05:00
TIME_FORM_HOUR_OFFSET = "hour-offset"  # 2026-12-06T14:05:33+05
TIME_FORM_UNPADDED = "unpadded"  # 2026-3-6T14:05:33.123+05:00
TIME_FORM_LOCAL_TICKS = "local-ticks"  # 2026-12-06T14:05:33.1234560 (Almaty time)
TIME_FORMS = (TIME_FORM_SECONDS, TIME_FORM_MILLIS, TIME_FORM_HOUR_OFFSET, TIME_FORM_UNPADDED, TIME_FORM_LOCAL_TICKS)
TIME_OFFSETS = (5, 6)
ALMATY = ZoneInfo("Asia/Almaty")
LOAN_TERM_NONE = None  # LoanTerm on v02 when the product is not an installment (real value unknown: null or 0)

MESSAGE_OK = "OK"
# Error codes (kaspi.md) ...
ERR_DEVICE_NOT_FOUND = -1501
ERR_DEVICE_INACTIVE = -1502
ERR_PURCHASE_NOT_FOUND = -1601
ERR_TRADE_POINT_NOT_FOUND = -99000002
ERR_PURCHASE_ID_NOT_FOUND = -99000001  # payment/return: also a purchase not among the QR's customer's (assumed)
ERR_RETURN_ABOVE_AMOUNT = -99000005
ERR_RETURN_ERROR = -99000006  # "retry"; only through inject_error
ERR_RETURN_NOT_ALLOWED = -99000011
ERR_PARTIAL_RETURN_IMPOSSIBLE = -99000020  # only through inject_error
ERR_WRONG_AMOUNT = 990000028  # positive: as kaspi.md has it
ERR_UNAVAILABLE = -999
ERR_NO_CERTIFICATE = -10000
# ... and assumptions: kaspi.md names no code for a wrong Api-Key or OrganizationBin; both are treated as
# the credential failure it does name.
ERR_BAD_API_KEY = ERR_NO_CERTIFICATE
ERR_BAD_BIN = ERR_NO_CERTIFICATE
# Simulator-only codes (not Kaspi's): a malformed request, and a test/payment/* call in the wrong status.
# kaspi-qr-api.md §6 names no code for malformed input (its -999 means "temporarily unavailable, retry",
# which would invite a retry of a request that can never succeed), so a malformed request, e.g. an Int64
# sent as a string, gets ERR_BAD_REQUEST.
ERR_BAD_REQUEST = -1
ERR_WRONG_STATUS = -2

ERROR_MESSAGES: dict[int, str] = {
    ERR_DEVICE_NOT_FOUND: "Device not found",
    ERR_DEVICE_INACTIVE: "Device is inactive",
    ERR_PURCHASE_NOT_FOUND: "Purchase not found",
    ERR_TRADE_POINT_NOT_FOUND: "Trade point not found",
    ERR_PURCHASE_ID_NOT_FOUND: "Purchase with this id not found",
    ERR_RETURN_ABOVE_AMOUNT: "Return amount exceeds the purchase amount",
    ERR_RETURN_ERROR: "Return error, try again",
    ERR_RETURN_NOT_ALLOWED: "Purchase status does not allow a return",
    ERR_PARTIAL_RETURN_IMPOSSIBLE: "Partial return is not possible",
    ERR_WRONG_AMOUNT: "Wrong amount",
    ERR_UNAVAILABLE: "Service temporarily unavailable",
    ERR_NO_CERTIFICATE: "No client certificate",
    ERR_BAD_REQUEST: "Bad request",
    ERR_WRONG_STATUS: "Payment status does not allow this operation",
}


def wire_envelope(code: int, message: str, data: Any) -> dict[str, Any]:
    return {"StatusCode": code, "Message": message, "Data": data}


def wire_time(value: datetime, form: str = TIME_FORM_MILLIS, offset: int = 5) -> str:
    """``value`` as Kaspi writes dates, in one of ``TIME_FORMS`` at UTC+``offset`` hours."""
    if form == TIME_FORM_LOCAL_TICKS:
        local = value.astimezone(ALMATY)
        return f"{local.replace(tzinfo=None).isoformat(timespec='seconds')}.{local.microsecond:06d}0"
    local = value.astimezone(timezone(timedelta(hours=offset)))
    zone = f"+{offset:02d}"
    clock = f"{local:%H:%M:%S}"
    millis = f".{local.microsecond // 1000:03d}"
    if form == TIME_FORM_SECONDS:
        return f"{local:%Y-%m-%d}T{clock}{zone}:00"
    if form == TIME_FORM_HOUR_OFFSET:
        return f"{local:%Y-%m-%d}T{clock}{zone}"
    if form == TIME_FORM_UNPADDED:
        return f"{local.year:04d}-{local.month}-{local.day}T{clock}{millis}{zone}:00"
    return f"{local:%Y-%m-%d}T{clock}{millis}{zone}:00"


def wire_amount(value: Decimal | None) -> int | float | None:
    """Tenge as a JSON number: an integer when whole (the usual case)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def new_qr_token() -> str:
    # Public examples show 41 digits, e.g. "51236903777280167836178166503744993984459".
    return str(10**40 + secrets.randbelow(9 * 10**40))


def new_link_token() -> str:
    return secrets.token_hex(8)


def new_device_token() -> str:
    # Public examples show a UUID, e.g. "2be4cc91-5895-48f8-8bc2-86c7bd419b3b".
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def wire_qr_created(p: Payment, sim: Simulator) -> dict[str, Any]:
    return {
        "QrToken": p.token,
        "ExpireDate": sim.wire_time(p.expire_at),
        "QrPaymentId": p.id,
        "PaymentMethods": list(PAYMENT_METHODS),
        "QrPaymentBehaviorOptions": {
            "StatusPollingInterval": sim.polling_interval,
            "QrCodeScanWaitTimeout": sim.scan_wait_timeout,
            "PaymentConfirmationTimeout": sim.confirmation_timeout,
        },
    }


def wire_link_created(p: Payment, sim: Simulator) -> dict[str, Any]:
    return {
        "PaymentLink": PAYMENT_LINK_PREFIX + p.token,
        "ExpireDate": sim.wire_time(p.expire_at),
        "PaymentId": p.id,
        "PaymentMethods": list(PAYMENT_METHODS),
        "PaymentBehaviorOptions": {
            "StatusPollingInterval": sim.polling_interval,
            "LinkActivationWaitTimeout": sim.scan_wait_timeout,
            "PaymentConfirmationTimeout": sim.confirmation_timeout,
        },
    }


def wire_status_v1(p: Payment) -> dict[str, Any]:
    return {"Status": p.status}


def wire_status_v2(p: Payment) -> dict[str, Any]:
    # Before Processed: no TransactionId/ProductType, Amount is the amount asked; after: the amount paid.
    paid = p.status == ST_PROCESSED
    return {
        "Status": p.status,
        "TransactionId": p.transaction_id,
        "ProductType": p.product,
        "LoanTerm": p.loan_term if p.loan_term is not None else LOAN_TERM_NONE,
        "Amount": wire_amount(p.paid_amount if paid else p.amount),
        "StoreName": p.device.trade_point_name,
    }


STATUS_SHAPES: dict[str, Callable[[Payment], dict[str, Any]]] = {VERSION_1: wire_status_v1, VERSION_2: wire_status_v2}


def wire_details(p: Payment, sim: Simulator) -> dict[str, Any]:
    # kaspi-qr-api.md §3: QrPaymentId, TotalAmount, AvailableReturnAmount, TransactionDate. The document
    # does not say what an unpaid purchase answers; here its amount asked and its creation time.
    paid = p.status == ST_PROCESSED
    total = p.paid_amount if paid else p.amount
    return {
        "QrPaymentId": p.id,
        "TotalAmount": wire_amount(total),
        "AvailableReturnAmount": wire_amount(p.available_return()),
        "TransactionDate": sim.wire_time(p.paid_at or p.created_at),
    }


def wire_return_created(r: ReturnQr, sim: Simulator) -> dict[str, Any]:
    # §3 return/create: QrToken, ExpireDate, QrReturnId, QrReturnBehaviorOptions.
    return {
        "QrToken": r.token,
        "ExpireDate": sim.wire_time(r.expire_at),
        "QrReturnId": r.id,
        "QrReturnBehaviorOptions": {
            "QrCodeScanEventPollingInterval": sim.polling_interval,
            "QrCodeScanWaitTimeout": sim.scan_wait_timeout,
        },
    }


def wire_operation(p: Payment, sim: Simulator) -> dict[str, Any]:
    # §3 return/operations: one of the customer's latest purchases.
    return {
        "QrPaymentId": p.id,
        "Amount": wire_amount(p.paid_amount),
        "TransactionDate": sim.wire_time(p.paid_at or p.created_at),
    }


def wire_return(operation_id: int) -> dict[str, Any]:
    return {"ReturnOperationId": operation_id}


# ======================================================================================================
# Simulator state and behaviour
# ======================================================================================================

MODES = frozenset({"normal", "silent", "error"})
DEFAULT_TRADE_POINTS = ({"TradePointId": 1, "TradePointName": "Main shop"},)


class SimulatorError(Exception):
    """A control was refused: ``status`` is the HTTP status /_sim answers with (404 unknown, 409 wrong state)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Device:
    token: str
    device_id: str
    trade_point_id: Any
    trade_point_name: str
    active: bool = True


@dataclass(slots=True)
class Payment:
    id: int
    kind: str  # "qr" | "link"
    device: Device
    external_id: Any
    amount: Decimal
    token: str
    created_at: datetime
    expire_at: datetime
    status: str = ST_CREATED
    scanned_at: datetime | None = None
    paid_at: datetime | None = None
    paid_amount: Decimal | None = None
    product: str | None = None
    loan_term: int | None = None
    transaction_id: str | None = None
    customer: str | None = None  # who paid it: return/operations lists a customer's purchases
    returned: Decimal = Decimal(0)
    returns: list[dict[str, Any]] = field(default_factory=list)

    def available_return(self) -> Decimal:
        if self.status != ST_PROCESSED or self.paid_amount is None:
            return Decimal(0)
        return self.paid_amount - self.returned


@dataclass(slots=True)
class ReturnQr:
    """A return QR (r2): the customer scans it so that the partner may return a purchase of theirs."""

    id: int  # QrReturnId
    device: Device
    external_id: Any
    token: str
    created_at: datetime
    expire_at: datetime
    status: str = RST_CREATED
    customer: str | None = None  # known once scanned
    scanned_at: datetime | None = None
    returns: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Injected:
    code: int
    message: str
    times: int | None  # None: until cleared


def _parse_amount(value: Any) -> Decimal | None:
    """A positive finite JSON number (not a string, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    amount = Decimal(str(value))
    return amount if amount > 0 else None


def _int64(value: Any) -> int | None:
    """An Int64 as the document types it in bodies (kaspi-qr-api.md §2): a JSON integer in range, not a
    string, a float or a bool; else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        return None
    return value


def _not_int64(name: str) -> tuple[int, str]:
    return ERR_BAD_REQUEST, f"{name} must be an Int64 (a JSON number, kaspi-qr-api.md §2)"


def _parse_id(value: Any) -> int | None:
    """An id from a path, a query string or a control (strings there by nature)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class Simulator:
    """In-memory Kaspi QR state. Mutate it from the event loop that serves the app (tests do); ``set_mode``
    alone is also safe from another thread."""

    def __init__(
        self,
        *,
        api_key: str = "test-api-key",
        organization_bin: str = "123456789012",
        trade_points: list[dict[str, Any]] | None = None,
        polling_interval: int = 5,
        scan_wait_timeout: int = 180,
        confirmation_timeout: int = 65,
        qr_lifetime: int = 300,
        clock: Callable[[], datetime] | None = None,
        silent_cap: float = 30.0,
        auto_expire: bool = False,
        id_floor: int = ID_FLOOR,
        time_form: str = TIME_FORM_MILLIS,
        time_offset: int = 5,
    ) -> None:
        self.api_key = api_key
        self.organization_bin = organization_bin
        self.trade_points = [dict(tp) for tp in (trade_points if trade_points is not None else DEFAULT_TRADE_POINTS)]
        # Answered as StatusPollingInterval (5 in every example, kaspi-qr-api.md §3), and the client is to
        # poll each QR at it. Tests set it small (0: none given) or change it between creations.
        self.polling_interval = polling_interval
        self.scan_wait_timeout = scan_wait_timeout
        self.confirmation_timeout = confirmation_timeout
        self.qr_lifetime = qr_lifetime
        self.clock = clock or (lambda: datetime.now(UTC))
        self.silent_cap = silent_cap
        # Kaspi has no expired status; with auto_expire an unscanned payment past its scan wait (or QR
        # lifetime) and a scanned one past its confirmation timeout read as Error. Off by default:
        # paycenter decides expiry itself and must cope with a payment confirmed after that.
        self.auto_expire = auto_expire
        if time_form not in TIME_FORMS or time_offset not in TIME_OFFSETS:
            raise ValueError(f"time_form must be one of {TIME_FORMS} and time_offset one of {TIME_OFFSETS}")
        self.time_form, self.time_offset = time_form, time_offset
        # Ids keep counting across reset() and start at random points above ``id_floor``, so that a reset
        # simulator never hands out an id or TransactionId that an earlier run already stored. Tests pass
        # a floor above 2^53 to catch an id read as a float (which keeps only 53 bits).
        if not 0 <= id_floor <= INT64_MAX - 2**40:
            raise ValueError("id_floor must leave Int64 room above it")
        self._payment_ids = itertools.count(id_floor + secrets.randbelow(2**31))
        self._transaction_ids = itertools.count(7_000_000_000 + secrets.randbelow(2_000_000_000))
        self._return_ids = itertools.count(id_floor + secrets.randbelow(2**31))
        self._return_qr_ids = itertools.count(id_floor + 2**32 + secrets.randbelow(2**31))
        self.devices: dict[str, Device] = {}
        self._reset_state()
        self._mode_event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _reset_state(self) -> None:
        self.payments_by_id: dict[int, Payment] = {}
        self.returns_by_id: dict[int, ReturnQr] = {}
        self.mode = "normal"
        self.payment_modes: dict[int, str] = {}
        self.status_calls = 0
        self.status_calls_by_payment: Counter[int | str] = Counter()
        self.calls: Counter[str] = Counter()  # per operation, every scheme
        self.request_ids: set[bytes] = set()
        self.request_ids_missing = 0
        self.request_ids_repeated = 0
        self.last_bodies: dict[str, dict[str, Any]] = {}  # per operation: the body of its last POST
        self.injected: dict[str, _Injected] = {}
        self._call_waiters: set[asyncio.Event] = set()

    # ---- time -------------------------------------------------------------------------------------

    def now(self) -> datetime:
        value = self.clock()
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def wire_time(self, value: datetime) -> str:
        return wire_time(value, self.time_form, self.time_offset)

    # ---- Python API (the /_sim controls call these) -----------------------------------------------

    def reset(self, *, devices: bool = False) -> None:
        """Forget payments, modes, counters and injected errors (and registered devices if asked)."""
        self._reset_state()
        if devices:
            self.devices.clear()
        self._notify_mode_change()

    def register_device(self, device_id: str = "sim-device", trade_point_id: Any = None) -> str:
        """Register (or find) a device like device/register does; return its DeviceToken."""
        if trade_point_id is None:
            if not self.trade_points:
                raise SimulatorError("no trade points", 404)
            trade_point_id = self.trade_points[0][F_TRADE_POINT_ID]
        tp = self._trade_point(trade_point_id)
        if tp is None:
            raise SimulatorError(f"no trade point {trade_point_id!r}", 404)
        for device in self.devices.values():
            if device.active and device.device_id == device_id and device.trade_point_id == tp[F_TRADE_POINT_ID]:
                return device.token
        device = Device(new_device_token(), device_id, tp[F_TRADE_POINT_ID], str(tp.get(F_TRADE_POINT_NAME, "")))
        self.devices[device.token] = device
        return device.token

    def deactivate_device(self, token: str) -> None:
        device = self.devices.get(token)
        if device is None:
            raise SimulatorError(f"no device {token!r}", 404)
        device.active = False

    def payment(self, payment_id: int | str) -> Payment:
        pid = _parse_id(payment_id)
        p = self.payments_by_id.get(pid) if pid is not None else None
        if p is None:
            raise SimulatorError(f"no payment {payment_id!r}", 404)
        self._expire_if_due(p)
        return p

    def payments(self) -> list[dict[str, Any]]:
        return [self.describe(p) for p in list(self.payments_by_id.values())]

    def describe(self, p: Payment) -> dict[str, Any]:
        self._expire_if_due(p)
        return {
            "QrPaymentId": p.id,
            "Kind": p.kind,
            "ExternalId": p.external_id,
            "Amount": wire_amount(p.amount),
            "Status": p.status,
            "PaidAmount": wire_amount(p.paid_amount),
            "ProductType": p.product,
            "LoanTerm": p.loan_term,
            "TransactionId": p.transaction_id,
            "Returned": wire_amount(p.returned),
            "Returns": [dict(r) for r in p.returns],
            "Customer": p.customer,
            "DeviceToken": p.device.token,
            "ExpireDate": self.wire_time(p.expire_at),
            "StatusCalls": self.status_calls_by_payment.get(p.id, 0),
        }

    def scan(self, payment_id: int | str) -> dict[str, Any]:
        """QrTokenCreated -> Wait (the payer scanned the QR or opened the link)."""
        p = self.payment(payment_id)
        if p.status != ST_CREATED:
            raise SimulatorError(f"payment {p.id} is {p.status}, not {ST_CREATED}")
        p.status = ST_WAIT
        p.scanned_at = self.now()
        return self.describe(p)

    def confirm(
        self,
        payment_id: int | str,
        amount: float | int | Decimal | None = None,
        product: str = "Gold",
        loan_term: int | None = None,
        customer: str = DEFAULT_CUSTOMER,
    ) -> dict[str, Any]:
        """-> Processed with a new TransactionId (scanning first if need be); ``amount`` pays a different sum,
        ``customer`` is who paid (whose return QR scan lists this purchase)."""
        if product not in PAYMENT_METHODS:
            raise SimulatorError(f"product must be one of {', '.join(PAYMENT_METHODS)}", 400)
        if loan_term is not None and (isinstance(loan_term, bool) or not isinstance(loan_term, int)):
            raise SimulatorError("loan_term must be an integer", 400)
        if not isinstance(customer, str) or not customer:
            raise SimulatorError("customer must be a non-empty string", 400)
        paid: Decimal | None
        if amount is None:
            paid = None
        elif isinstance(amount, Decimal):
            paid = amount if amount > 0 else None
        else:
            paid = _parse_amount(amount)
        if amount is not None and paid is None:
            raise SimulatorError("amount must be a positive number", 400)
        p = self.payment(payment_id)
        if p.status in FINAL_STATUSES:
            raise SimulatorError(f"payment {p.id} is already {p.status}")
        now = self.now()
        if p.scanned_at is None:
            p.scanned_at = now
        p.status = ST_PROCESSED
        p.paid_at = now
        p.paid_amount = paid if paid is not None else p.amount
        p.product = product
        p.loan_term = loan_term
        p.transaction_id = str(next(self._transaction_ids))
        p.paid_at = now
        p.customer = customer
        return self.describe(p)

    def fail(self, payment_id: int | str) -> dict[str, Any]:
        """QrTokenCreated or Wait -> Error (the payer declined, or Kaspi failed the payment)."""
        p = self.payment(payment_id)
        if p.status in FINAL_STATUSES:
            raise SimulatorError(f"payment {p.id} is already {p.status}")
        p.status = ST_ERROR
        return self.describe(p)

    def set_status(self, payment_id: int | str, status: str) -> None:
        """Make a purchase report ``status`` as it is, for values outside the document's four
        (seen in production: ``RemotePaymentCreated``, ``RemotePaymentCanceled``; kaspi-qr-api.md §4)."""
        pid = _parse_id(payment_id)
        p = self.payments_by_id.get(pid) if pid is not None else None
        if p is None:
            raise SimulatorError(f"no purchase {payment_id}", 404)
        p.status = status

    def return_qr(self, return_id: int | str) -> ReturnQr:
        rid = _parse_id(return_id)
        r = self.returns_by_id.get(rid) if rid is not None else None
        if r is None:
            raise SimulatorError(f"no return QR {return_id!r}", 404)
        self._expire_return_if_due(r)
        return r

    def returns(self) -> list[dict[str, Any]]:
        return [self.describe_return(r) for r in list(self.returns_by_id.values())]

    def describe_return(self, r: ReturnQr) -> dict[str, Any]:
        self._expire_return_if_due(r)
        return {
            "QrReturnId": r.id,
            "ExternalId": r.external_id,
            "QrToken": r.token,
            "Status": r.status,
            "Customer": r.customer,
            "DeviceToken": r.device.token,
            "ExpireDate": self.wire_time(r.expire_at),
            "Returns": [dict(x) for x in r.returns],
        }

    def scan_return(self, return_id: int | str, customer: str = DEFAULT_CUSTOMER) -> dict[str, Any]:
        """The customer scans the return QR in Kaspi.kz: QrTokenCreated -> CustomerIdentityObtained.
        Refused past the QR's ExpireDate: the scan fails on the customer's side (§3 qr/create's
        ExpireDate, taken to hold for return QRs too)."""
        if not isinstance(customer, str) or not customer:
            raise SimulatorError("customer must be a non-empty string", 400)
        r = self.return_qr(return_id)
        if r.status != RST_CREATED:
            raise SimulatorError(f"return QR {r.id} is {r.status}, not {RST_CREATED}")
        if self.now() >= r.expire_at:
            raise SimulatorError(f"return QR {r.id} expired at {self.wire_time(r.expire_at)}")
        r.status = RST_IDENTIFIED
        r.customer = customer
        r.scanned_at = self.now()
        return self.describe_return(r)

    def fail_return(self, return_id: int | str) -> dict[str, Any]:
        """QrTokenCreated -> Error (the scan failed at Kaspi)."""
        r = self.return_qr(return_id)
        if r.status in RETURN_FINAL_STATUSES:
            raise SimulatorError(f"return QR {r.id} is already {r.status}")
        r.status = RST_ERROR
        return self.describe_return(r)

    def set_mode(self, mode: str | None, payment_id: int | str | None = None) -> None:
        """How status calls answer: "normal"; "silent" (hang until the mode changes, at most ``silent_cap``
        seconds, then -999); "error" (-999 at once). For one payment, or globally: a global change also
        drops every per-payment mode."""
        if mode not in MODES:
            raise SimulatorError(f"mode must be one of {', '.join(sorted(MODES))}", 400)
        if payment_id is None:
            self.mode = mode
            self.payment_modes.clear()
        else:
            pid = _parse_id(payment_id)
            if pid is None:
                raise SimulatorError(f"bad payment id {payment_id!r}", 400)
            self.payment_modes[pid] = mode
        self._notify_mode_change()

    def inject_error(
        self, operation: str | None, code: int | None, *, message: str | None = None, times: int | None = 1
    ) -> None:
        """Make the next ``times`` calls of ``operation`` (e.g. "payment/return", "qr/create",
        "payment/status"; None = until cleared) answer ``code`` after the credential checks."""
        if operation not in ALL_OPERATIONS:
            raise SimulatorError(f"operation must be one of {', '.join(sorted(ALL_OPERATIONS))}", 400)
        if isinstance(code, bool) or not isinstance(code, int) or code == 0:
            raise SimulatorError("code must be a non-zero integer", 400)
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise SimulatorError("times must be a positive integer or null", 400)
        text = message if message is not None else ERROR_MESSAGES.get(code, "Error")
        self.injected[operation] = _Injected(code, text, times)

    def clear_injected(self) -> None:
        self.injected.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "StatusCalls": self.status_calls,
            "StatusCallsByPayment": {str(k): v for k, v in self.status_calls_by_payment.items()},
            "Calls": dict(self.calls),
            "RequestIdsMissing": self.request_ids_missing,
            "RequestIdsRepeated": self.request_ids_repeated,
            "Payments": len(self.payments_by_id),
            "ReturnQrs": len(self.returns_by_id),
            "Mode": self.mode,
            "PaymentModes": {str(k): v for k, v in self.payment_modes.items()},
        }

    async def wait_for_status_calls(self, count: int, payment_id: int | None = None) -> None:
        """Wait until ``count`` status calls (for one payment, or in all) have arrived; bound it with
        ``asyncio.timeout``. Counted on arrival, so a call still hanging in silent mode counts."""
        while (self.status_calls if payment_id is None else self.status_calls_by_payment.get(payment_id, 0)) < count:
            event = asyncio.Event()
            self._call_waiters.add(event)
            try:
                await event.wait()
            finally:
                self._call_waiters.discard(event)

    # ---- internals ----------------------------------------------------------------------------------

    def _notify_mode_change(self) -> None:
        event, self._mode_event = self._mode_event, asyncio.Event()
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            event.set()
        else:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: nobody is waiting
                pass

    def _effective_mode(self, pid: int | None) -> str:
        if self.payment_modes and pid is not None:
            return self.payment_modes.get(pid, self.mode)
        return self.mode

    def _expire_if_due(self, p: Payment) -> None:
        if not self.auto_expire or p.status in FINAL_STATUSES:
            return
        now = self.now()
        if p.status == ST_CREATED:
            due = min(p.created_at + timedelta(seconds=self.scan_wait_timeout), p.expire_at)
        else:
            due = (p.scanned_at or p.created_at) + timedelta(seconds=self.confirmation_timeout)
        if now >= due:
            p.status = ST_ERROR

    def _expire_return_if_due(self, r: ReturnQr) -> None:
        # As purchases: with auto_expire an unscanned return QR past its scan wait (or ExpireDate)
        # reads as Error; by default it stays QrTokenCreated and the client stops asking itself.
        if not self.auto_expire or r.status in RETURN_FINAL_STATUSES:
            return
        if self.now() >= min(r.created_at + timedelta(seconds=self.scan_wait_timeout), r.expire_at):
            r.status = RST_ERROR

    def _trade_point(self, trade_point_id: Any) -> dict[str, Any] | None:
        for tp in self.trade_points:
            if str(tp[F_TRADE_POINT_ID]) == str(trade_point_id):
                return tp
        return None

    def _device(self, token: Any) -> Device | int:
        """The active device for a DeviceToken, or the error code."""
        device = self.devices.get(token) if isinstance(token, str) else None
        if device is None:
            return ERR_DEVICE_NOT_FOUND
        if not device.active:
            return ERR_DEVICE_INACTIVE
        return device

    def _take_injected(self, operation: str) -> _Injected | None:
        injected = self.injected.get(operation)
        if injected is None:
            return None
        if injected.times is not None:
            injected.times -= 1
            if injected.times <= 0:
                del self.injected[operation]
        return injected

    # ---- protocol operations: (scheme, body, query) -> (code, data) -------------------------------

    def op_tradepoints(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        return 0, [
            {F_TRADE_POINT_ID: tp[F_TRADE_POINT_ID], F_TRADE_POINT_NAME: tp.get(F_TRADE_POINT_NAME)}
            for tp in self.trade_points
        ]

    def op_device_register(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        device_id = body.get(F_DEVICE_ID)
        if not isinstance(device_id, str | int) or isinstance(device_id, bool) or str(device_id) == "":
            return ERR_BAD_REQUEST, None
        if _int64(body.get(F_TRADE_POINT_ID)) is None:
            return _not_int64(F_TRADE_POINT_ID)
        if self._trade_point(body.get(F_TRADE_POINT_ID)) is None:
            return ERR_TRADE_POINT_NOT_FOUND, None
        return 0, {F_DEVICE_TOKEN: self.register_device(str(device_id), body.get(F_TRADE_POINT_ID))}

    def op_device_delete(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        device = self._device(body.get(F_DEVICE_TOKEN))
        if isinstance(device, int):
            return device, None
        device.active = False
        return 0, None

    def _create(self, kind: str, body: dict[str, Any]) -> tuple[int, Any]:
        device = self._device(body.get(F_DEVICE_TOKEN))
        if isinstance(device, int):
            return device, None
        amount = _parse_amount(body.get(F_AMOUNT))
        if amount is None:
            return ERR_WRONG_AMOUNT, None
        now = self.now()
        p = Payment(
            id=next(self._payment_ids),
            kind=kind,
            device=device,
            external_id=body.get(F_EXTERNAL_ID),
            amount=amount,
            token=new_qr_token() if kind == "qr" else new_link_token(),
            created_at=now,
            expire_at=now + timedelta(seconds=self.qr_lifetime),
        )
        self.payments_by_id[p.id] = p
        return 0, (wire_qr_created(p, self) if kind == "qr" else wire_link_created(p, self))

    def op_qr_create(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        return self._create("qr", body)

    def op_link_create(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        return self._create("link", body)

    def _own_payment(self, device: Device, payment_id: Any) -> Payment | None:
        pid = _parse_id(payment_id)
        p = self.payments_by_id.get(pid) if pid is not None else None
        if p is None or p.device.token != device.token:  # another device's payment is not found either
            return None
        self._expire_if_due(p)
        return p

    def op_details(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        device = self._device(query.get(F_DEVICE_TOKEN))
        if isinstance(device, int):
            return device, None
        p = self._own_payment(device, query.get(F_QR_PAYMENT_ID))
        if p is None:
            return ERR_PURCHASE_NOT_FOUND, None
        return 0, wire_details(p, self)

    def op_return(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        device = self._device(body.get(F_DEVICE_TOKEN))
        if isinstance(device, int):
            return device, None
        payment_id = _int64(body.get(F_QR_PAYMENT_ID))
        if payment_id is None:
            return _not_int64(F_QR_PAYMENT_ID)
        if F_QR_RETURN_ID in body and _int64(body.get(F_QR_RETURN_ID)) is None:
            return _not_int64(F_QR_RETURN_ID)
        p = self._own_payment(device, payment_id)
        if p is None:
            return ERR_PURCHASE_NOT_FOUND, None
        amount = _parse_amount(body.get(F_AMOUNT))
        if amount is None:
            return ERR_WRONG_AMOUNT, None
        return_qr: ReturnQr | None = None
        if scheme in RETURN_QR_SCHEMES:
            # §3 payment/return, r2 body: QrReturnId is required; §5 r2: only after return/status
            # said CustomerIdentityObtained, for a purchase return/operations listed for that customer.
            if F_QR_RETURN_ID not in body:
                return ERR_BAD_REQUEST, "QrReturnId is required on r2: the customer scans a return QR first"
            return_qr = self._own_return(device, body.get(F_QR_RETURN_ID))
            if return_qr is None:
                return ERR_PURCHASE_NOT_FOUND, "Return QR not found"
            if return_qr.status != RST_IDENTIFIED:
                return ERR_WRONG_STATUS, f"Return QR is {return_qr.status}: the customer has not scanned it"
            if p.id not in {q.id for q in self._customer_operations(device, return_qr.customer)}:
                return ERR_PURCHASE_ID_NOT_FOUND, "Purchase not among the customer's operations"
        elif F_QR_RETURN_ID in body:
            # §3 payment/return, r3 body: DeviceToken, QrPaymentId, Amount, OrganizationBin; no customer.
            return ERR_BAD_REQUEST, "QrReturnId is not part of r3's payment/return"
        if p.status != ST_PROCESSED:
            return ERR_RETURN_NOT_ALLOWED, None
        if amount > p.available_return():
            return ERR_RETURN_ABOVE_AMOUNT, None
        operation_id = next(self._return_ids)
        p.returned += amount
        record = {"ReturnOperationId": operation_id, "Amount": wire_amount(amount)}
        if return_qr is not None:
            record[F_QR_RETURN_ID] = return_qr.id
            return_qr.returns.append({"ReturnOperationId": operation_id, F_QR_PAYMENT_ID: p.id})
        p.returns.append(record)
        return 0, wire_return(operation_id)

    def op_return_create(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        # §3 return/create: DeviceToken req, ExternalId opt.
        device = self._device(body.get(F_DEVICE_TOKEN))
        if isinstance(device, int):
            return device, None
        now = self.now()
        r = ReturnQr(
            id=next(self._return_qr_ids),
            device=device,
            external_id=body.get(F_EXTERNAL_ID),
            token=new_qr_token(),
            created_at=now,
            expire_at=now + timedelta(seconds=self.qr_lifetime),
        )
        self.returns_by_id[r.id] = r
        return 0, wire_return_created(r, self)

    def op_return_status(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        # §3 return/status/{QrReturnId}: codes 0, -999, -10000, -1601; no DeviceToken asked.
        rid = _parse_id(query.get(F_QR_RETURN_ID))
        r = self.returns_by_id.get(rid) if rid is not None else None
        if r is None:
            return ERR_PURCHASE_NOT_FOUND, None
        self._expire_return_if_due(r)
        return 0, {"Status": r.status}

    def op_return_operations(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        # §3 return/operations: DeviceToken req, QrReturnId req, MaxResult opt (default and maximum 10).
        device = self._device(body.get(F_DEVICE_TOKEN))
        if isinstance(device, int):
            return device, None
        return_id = _int64(body.get(F_QR_RETURN_ID))
        if return_id is None:  # required, an Int64 JSON number (§2, §3)
            return _not_int64(F_QR_RETURN_ID)
        r = self._own_return(device, return_id)
        if r is None:
            return ERR_PURCHASE_NOT_FOUND, None
        limit = body.get(F_MAX_RESULT, MAX_RESULT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return ERR_BAD_REQUEST, "MaxResult must be a positive integer"
        if r.status != RST_IDENTIFIED:
            # Before the scan there is no customer whose purchases could be listed.
            return ERR_WRONG_STATUS, f"Return QR is {r.status}: the customer has not scanned it"
        operations = self._customer_operations(device, r.customer)[: min(limit, MAX_RESULT)]
        return 0, [wire_operation(p, self) for p in operations]

    def _own_return(self, device: Device, return_id: Any) -> ReturnQr | None:
        rid = _parse_id(return_id)
        r = self.returns_by_id.get(rid) if rid is not None else None
        if r is None or r.device.token != device.token:  # as purchases: another device's is not found
            return None
        self._expire_return_if_due(r)
        return r

    def _customer_operations(self, device: Device, customer: str | None) -> list[Payment]:
        """The customer's latest 10 paid purchases at the device's trade point, newest first: what
        return/operations can list (it cuts further at MaxResult), and so all payment/return may
        refund with this QR. Assumed: the document says only "the customer's latest purchases";
        returns are possible only within the purchase's trade point (§3 payment/return)."""
        if customer is None:
            return []
        paid = [
            p
            for p in self.payments_by_id.values()
            if p.customer == customer and p.status == ST_PROCESSED and p.device.trade_point_id == device.trade_point_id
        ]
        paid.sort(key=lambda p: (p.paid_at or p.created_at, p.id), reverse=True)
        return paid[:MAX_RESULT]

    def _test_call(self, body: dict[str, Any], expect: str, action: Callable[[int], Any]) -> tuple[int, Any]:
        pid = _parse_id(body.get(F_TEST_PAYMENT_ID))
        p = self.payments_by_id.get(pid) if pid is not None else None
        if p is None:
            return ERR_PURCHASE_NOT_FOUND, None
        self._expire_if_due(p)
        if p.status != expect:
            return ERR_WRONG_STATUS, None
        action(p.id)
        return 0, None

    def op_test_scan(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        return self._test_call(body, ST_CREATED, self.scan)

    def op_test_confirm(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        return self._test_call(body, ST_WAIT, self.confirm)

    def op_test_scan_error(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        return self._test_call(body, ST_CREATED, self.fail)

    def op_test_confirm_error(self, scheme: str, body: dict[str, Any], query: dict[str, Any]) -> tuple[int, Any]:
        return self._test_call(body, ST_WAIT, self.fail)

    async def op_status(self, version: str, payment_id: str) -> tuple[int, Any]:
        pid = _parse_id(payment_id)
        self.status_calls += 1
        self.status_calls_by_payment[pid if pid is not None else payment_id] += 1
        if self._call_waiters:
            for event in self._call_waiters:
                event.set()
        mode = self._effective_mode(pid)
        if mode == "silent":
            deadline = time.monotonic() + self.silent_cap
            while mode == "silent":
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return ERR_UNAVAILABLE, None
                if self._loop is None:
                    self._loop = asyncio.get_running_loop()
                try:
                    await asyncio.wait_for(self._mode_event.wait(), remaining)
                except TimeoutError:
                    return ERR_UNAVAILABLE, None
                mode = self._effective_mode(pid)
        if mode == "error":
            return ERR_UNAVAILABLE, None
        injected = self._take_injected(OP_STATUS)
        if injected is not None:
            return injected.code, injected.message
        p = self.payments_by_id.get(pid) if pid is not None else None
        if p is None:
            return ERR_PURCHASE_NOT_FOUND, None
        if self.auto_expire:
            self._expire_if_due(p)
        return 0, STATUS_SHAPES[version](p)


# (method, operation) -> Simulator method, all under v01
_OPERATIONS: dict[tuple[str, str], Callable[[Simulator, str, dict[str, Any], dict[str, Any]], tuple[int, Any]]] = {
    ("GET", OP_TRADEPOINTS): Simulator.op_tradepoints,
    ("POST", OP_DEVICE_REGISTER): Simulator.op_device_register,
    ("POST", OP_DEVICE_DELETE): Simulator.op_device_delete,
    ("POST", OP_QR_CREATE): Simulator.op_qr_create,
    ("POST", OP_LINK_CREATE): Simulator.op_link_create,
    ("GET", OP_DETAILS): Simulator.op_details,
    ("POST", OP_RETURN): Simulator.op_return,
    ("POST", OP_RETURN_CREATE): Simulator.op_return_create,
    ("GET", OP_RETURN_STATUS): Simulator.op_return_status,
    ("POST", OP_RETURN_OPERATIONS): Simulator.op_return_operations,
    ("POST", OP_TEST_SCAN): Simulator.op_test_scan,
    ("POST", OP_TEST_CONFIRM): Simulator.op_test_confirm,
    ("POST", OP_TEST_SCAN_ERROR): Simulator.op_test_scan_error,
    ("POST", OP_TEST_CONFIRM_ERROR): Simulator.op_test_confirm_error,
}
_OPERATION_METHODS = {op: method for method, op in _OPERATIONS}
ALL_OPERATIONS = frozenset(_OPERATION_METHODS) | {OP_STATUS}

# ======================================================================================================
# HTTP
# ======================================================================================================

_JSON = "application/json; charset=utf-8"


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), status, media_type=_JSON)


def _envelope(code: int, data: Any = None, message: str | None = None, status: int = 200) -> Response:
    if message is None:
        message = MESSAGE_OK if code == 0 else ERROR_MESSAGES.get(code, "Error")
    return _json_response(wire_envelope(code, message, data if code == 0 else None), status)


def _emulator_envelope(code: int, data: Any = None, message: str | None = None, status: int = 200) -> Response:
    if message is None:
        message = MESSAGE_OK if code == 0 else ERROR_MESSAGES.get(code, "Error")
    return _json_response({"StatusCode": code, "message": message}, status)


def _not_found() -> Response:
    return _envelope(ERR_BAD_REQUEST, message="Not found", status=404)


async def _read_json(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _api_key(scope: MutableMapping[str, Any]) -> bytes | None:
    return _header(scope, API_KEY_HEADER)


def _header(scope: MutableMapping[str, Any], wanted: bytes) -> bytes | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]  # ASGI: (name, value) byte pairs
    for name, value in headers:
        if name == wanted:
            return value
    return None


def _query(scope: MutableMapping[str, Any]) -> dict[str, str]:
    raw = scope.get("query_string") or b""
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}


async def _protocol(sim: Simulator, request: Request, parts: list[str]) -> Response:
    """/{scheme}/{version}/{operation...}"""
    scheme, version, tail = parts[0], parts[1], parts[2:]
    method = request.method
    scope = request.scope
    status_call = len(tail) == 3 and tail[0] == "payment" and tail[1] == "status"
    path_bin: str | None = None
    path_id: str | None = None
    if status_call:
        if version not in STATUS_SHAPES:
            return _not_found()
        if method != "GET":
            return _envelope(ERR_BAD_REQUEST, message="Method not allowed", status=405)
        operation = OP_STATUS
    else:
        if version != VERSION_1:
            return _not_found()
        operation = "/".join(tail)
        if scheme in BIN_SCHEMES and len(tail) == 3 and "/".join(tail[:2]) == OP_TRADEPOINTS:
            operation, path_bin = OP_TRADEPOINTS, tail[2]  # GET partner/tradepoints/{OrganizationBin}
        if len(tail) == 3 and "/".join(tail[:2]) == OP_RETURN_STATUS:
            operation, path_id = OP_RETURN_STATUS, tail[2]  # GET return/status/{QrReturnId}
        expected_method = _OPERATION_METHODS.get(operation)
        if expected_method is None or scheme not in OPERATION_SCHEMES.get(operation, SCHEMES):
            return _not_found()
        if method != expected_method:
            return _envelope(ERR_BAD_REQUEST, message="Method not allowed", status=405)
    sim.calls[operation] += 1
    # The test host's emulator answers {StatusCode, message}, lower-case m, no Data (kaspi-qr-api.md §2, §3).
    envelope = _emulator_envelope if operation in TEST_OPS else _envelope

    # Every request carries its own X-Request-ID, a GUID the client generates (document §2).
    request_id = _header(scope, REQUEST_ID_HEADER)
    if not request_id:
        sim.request_ids_missing += 1
        return envelope(ERR_BAD_REQUEST, message="X-Request-ID header is required on every request")
    if request_id in sim.request_ids:
        sim.request_ids_repeated += 1
    sim.request_ids.add(request_id)

    if scheme in API_KEY_SCHEMES and _api_key(scope) != sim.api_key.encode():
        return envelope(ERR_BAD_API_KEY, message="Invalid Api-Key")
    query = _query(scope) if method == "GET" else {}
    if path_id is not None:
        query = {**query, F_QR_RETURN_ID: path_id}
    body: dict[str, Any] = {}
    if method == "POST":
        parsed = await _read_json(request)
        if parsed is None:
            return envelope(ERR_BAD_REQUEST, message="Body must be a JSON object", status=400)
        body = parsed
        sim.last_bodies[operation] = body
    # r3 (kaspi-qr-api.md §3): the BIN goes in every POST body and, of the GETs, only in the trade
    # points' path (partner/tradepoints/{organizationBin}); payment/status, payment/details and
    # health/ping carry none, and the r1/r2 query form of trade points is not r3's.
    if scheme in BIN_SCHEMES and operation not in BIN_EXEMPT_OPS:
        if method == "POST":
            given = body.get(F_BIN)
        elif operation == OP_TRADEPOINTS:
            if path_bin is None:
                return _not_found()
            given = path_bin
        else:
            given = sim.organization_bin
        if given is None or str(given) != sim.organization_bin:
            return envelope(ERR_BAD_BIN, message="OrganizationBin missing or wrong")

    if status_call:
        code, data = await sim.op_status(version, tail[2])
    else:
        injected = sim._take_injected(operation)
        if injected is not None:
            return envelope(injected.code, message=injected.message)
        code, data = _OPERATIONS[(method, operation)](sim, scheme, body, query)
    if code != 0 and isinstance(data, str):
        return envelope(code, message=data)  # an injected error's message
    return envelope(code, data)


# ---- /_sim controls ---------------------------------------------------------------------------------


async def _control(sim: Simulator, request: Request, parts: list[str]) -> Response:
    method = request.method
    body: dict[str, Any] = {}
    if method == "POST":
        parsed = await _read_json(request)
        if parsed is None:
            return _json_response({"error": "body must be a JSON object"}, 400)
        body = parsed
    try:
        return _json_response(_control_dispatch(sim, method, parts, body))
    except SimulatorError as exc:
        return _json_response({"error": str(exc)}, exc.status)


def _control_dispatch(sim: Simulator, method: str, parts: list[str], body: dict[str, Any]) -> Any:
    match (method, parts):
        case ("GET", ["payments"]):
            return sim.payments()
        case ("GET", ["payments", pid]):
            return sim.describe(sim.payment(pid))
        case ("POST", ["payments", pid, "scan"]):
            return sim.scan(pid)
        case ("POST", ["payments", pid, "confirm"]):
            return sim.confirm(
                pid,
                amount=body.get("amount"),
                product=body.get("product", "Gold"),
                loan_term=body.get("loan_term"),
                customer=body.get("customer", DEFAULT_CUSTOMER),
            )
        case ("POST", ["payments", pid, "fail"]):
            return sim.fail(pid)
        case ("GET", ["returns"]):
            return sim.returns()
        case ("GET", ["returns", rid]):
            return sim.describe_return(sim.return_qr(rid))
        case ("POST", ["returns", rid, "scan"]):
            return sim.scan_return(rid, customer=body.get("customer", DEFAULT_CUSTOMER))
        case ("POST", ["returns", rid, "fail"]):
            return sim.fail_return(rid)
        case ("POST", ["mode"]):
            sim.set_mode(body.get("mode"), body.get("payment_id"))
            return {"Mode": sim.mode, "PaymentModes": {str(k): v for k, v in sim.payment_modes.items()}}
        case ("POST", ["inject"]):
            code = body.get("code")
            sim.inject_error(body.get("operation"), code, message=body.get("message"), times=body.get("times", 1))
            return {"Injected": sorted(sim.injected)}
        case ("POST", ["inject", "clear"]):
            sim.clear_injected()
            return {"Injected": []}
        case ("GET", ["devices"]):
            return [
                {"DeviceToken": d.token, "DeviceId": d.device_id, "TradePointId": d.trade_point_id, "Active": d.active}
                for d in sim.devices.values()
            ]
        case ("POST", ["devices", token, "deactivate"]):
            sim.deactivate_device(token)
            return {"DeviceToken": token, "Active": False}
        case ("GET", ["stats"]):
            return sim.stats()
        case ("POST", ["reset"]):
            sim.reset(devices=bool(body.get("devices", False)))
            return {"ok": True}
    raise SimulatorError("no such control", 404)


def create_app(
    *,
    api_key: str = "test-api-key",
    organization_bin: str = "123456789012",
    trade_points: list[dict[str, Any]] | None = None,
    polling_interval: int = 5,
    scan_wait_timeout: int = 180,
    confirmation_timeout: int = 65,
    qr_lifetime: int = 300,
    clock: Callable[[], datetime] | None = None,
    silent_cap: float = 30.0,
    auto_expire: bool = False,
    id_floor: int = ID_FLOOR,
    time_form: str = TIME_FORM_MILLIS,
    time_offset: int = 5,
) -> Starlette:
    """The simulator as a Starlette app; its state is ``app.state.sim`` (a ``Simulator``)."""
    sim = Simulator(
        api_key=api_key,
        organization_bin=organization_bin,
        trade_points=trade_points,
        polling_interval=polling_interval,
        scan_wait_timeout=scan_wait_timeout,
        confirmation_timeout=confirmation_timeout,
        qr_lifetime=qr_lifetime,
        clock=clock,
        silent_cap=silent_cap,
        auto_expire=auto_expire,
        id_floor=id_floor,
        time_form=time_form,
        time_offset=time_offset,
    )

    async def dispatch(request: Request) -> Response:
        parts = request.scope["path"].strip("/").split("/")
        if len(parts) >= 3 and parts[0] in SCHEMES:
            return await _protocol(sim, request, parts)
        if parts[0] == "_sim":
            return await _control(sim, request, parts[1:])
        return _not_found()

    app = Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST"])])
    app.state.sim = sim
    return app
