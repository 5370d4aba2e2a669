"""Simulator of Kaspi Smart POS terminals (local REST API "v2", kaspi.md §B) as one ASGI app.

One app simulates many terminals: terminal ``T`` lives at ``{server}/terminals/{T}``, so its API is
``{server}/terminals/{T}/v2/payment?amount=1500`` and so on. The old system's camera service that read
the payment QR off the terminal screen is at ``{server}/camera/scan-qr/{T}?timeout=10000``. Tests drive
the payer's side through ``/_sim/...`` (JSON, no auth) or the same methods on ``app.state.sim``.

Everything the public document says (or that we had to guess) about the wire protocol is in the
"Protocol" block right below, so it can be corrected from Kaspi's real document in one place.

Behaviour, per terminal (one operation at a time, like the device):
- ``/v2/payment`` starts a payment: status ``wait`` until the payer confirms (by QR or by card),
  fails or cancels (controls), or the merchant cancels (``/v2/cancel``). The terminal is busy while
  it is ``wait``. Every answer has the keys S (kaspi.md §B) gives it, and only those: the contract
  table tests/fixtures/kaspi_pos_contract.json holds S's bodies and tests/providers/test_kaspi_pos_contract.py
  replays them against this simulator.
- ``/v2/refund`` starts a refund of a successful payment *made on this terminal*; it is an operation
  too (the terminal is busy) and stays ``wait`` until the customer confirms in the Kaspi app (control
  ``refund/confirm``) or declines (``refund/fail``). Pending refunds count against what is refundable.
- Tokens, as the terminal simulator S does with its ``--secure`` switch (kaspi.md §B): every call but
  ``/v2/register`` needs a live ``accesstoken``; ``/v2/register?name=`` issues a pair that lives
  ``token_lifetime`` (24 h) by the terminal's own clock, ``/v2/revoke?name=&refreshToken=`` (with
  the current access token) replaces it. A terminal built with a token has it pre-issued, as if
  registered under the client name ``paycenter``. Registration is approved at once, or, in
  registration mode ``manual``, only when the person at the terminal approves (control).
- ``/v2/cancel`` exists only on terminals built with ``cancel=True`` (the old system's firmware);
  otherwise it answers 404 as S does for any path it does not know.
- Mode ``silent``: the terminal's /v2 calls hang until the mode changes (at most ``SILENT_MAX_HANG``).
  Mode ``unknown``: the current (or last) operation and every operation started in this mode answer
  ``status: unknown`` on /v2/status until ``/v2/actualize`` is called for it; the real state moves on.

Controls (JSON, no auth; errors: 404 unknown terminal, 400 bad argument, 409 nothing to act on):
    GET  /_sim/terminals                      list; POST /_sim/terminals {"name", "token", "cancel"?} adds one
    GET  /_sim/terminals/{T}                  {busy, mode, processId, status, amount, operations, refunds, ...}
    POST /_sim/terminals/{T}/confirm          {"amount"?: int tenge, "method"?: "kaspi_gold" | ...,
                                              "chequeAmount"?: str (the cheque's text instead of "<sum> ₸"),
                                              "chequeMethod"?: "qr" | "card" (default qr)}
    POST /_sim/terminals/{T}/fail             {"subStatus"?: str}   (default QrTransactionFailure)
    POST /_sim/terminals/{T}/payer-cancel
    POST /_sim/terminals/{T}/mode             {"mode": "normal" | "silent" | "unknown" | "stuck"}
    POST /_sim/terminals/{T}/refund/confirm   POST /_sim/terminals/{T}/refund/fail
    POST /_sim/terminals/{T}/clock            {"advance": seconds}: the terminal's clock (tokens expire)
    POST /_sim/terminals/{T}/registration     {"mode": "auto" | "manual"}
    POST /_sim/terminals/{T}/approve          POST /_sim/terminals/{T}/deny   (a waiting /v2/register)
    POST /_sim/terminals/{T}/features         {"cancel": bool}
    POST /_sim/reset                          GET /_sim/stats -> {statusCalls, statusCallsByTerminal}
The Python methods on ``Simulator`` must be called on the event loop that serves the app.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# ======================================================================================================
# Protocol (kaspi.md §B). Correct these from the real document; nothing below hard-codes wire details.
# ======================================================================================================

# Paths, relative to a terminal's base URL. All calls are GET.
PATH_PAYMENT = "/v2/payment"
PATH_STATUS = "/v2/status"
PATH_ACTUALIZE = "/v2/actualize"
PATH_CANCEL = "/v2/cancel"
PATH_REFUND = "/v2/refund"
PATH_DEVICEINFO = "/v2/deviceinfo"
PATH_REGISTER = "/v2/register"  # the only call without a token (S; N; kaspi.md §B)
PATH_REVOKE = "/v2/revoke"

# Query parameters.
Q_AMOUNT = "amount"  # whole tenge, a positive integer
Q_PROCESS_ID = "processId"
Q_METHOD = "method"  # refund: one of REFUND_METHODS
Q_TRANSACTION_ID = "transactionId"
Q_NAME = "name"  # register/revoke: the client's name; revoke needs the one it registered with (S: 105)
Q_REFRESH_TOKEN = "refreshToken"

# Header carrying the access token, on every call but register (S checks it on every other path,
# revoke included; N sends it on every call but register and revoke; kaspi.md §B).
H_ACCESS_TOKEN = "accesstoken"

# register/revoke data: {accessToken, refreshToken, expirationDate}; the date is the terminal's
# local time without a zone, "MMM d, yyyy HH:mm:ss" in S and T, "yyyy-MM-dd HH:mm:ss" in T and N.
D_ACCESS_TOKEN = "accessToken"
D_REFRESH_TOKEN = "refreshToken"
D_EXPIRATION_DATE = "expirationDate"
EXPIRY_FORMATS = ("%b %d, %Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")
TOKEN_LIFETIME = 24 * 3600.0  # S: timedelta(hours=24); T assumes about a day
TERMINAL_UTC_OFFSET = 5 * 3600  # a terminal in Kazakhstan keeps local time (UTC+5 since 2024-03-01)
REGISTRATION_WAIT = 30.0  # seconds a /v2/register waits for the person at the terminal (manual mode)

# Response envelope: {"statusCode": 0, "data": {...}} on success, {"statusCode": <code>, "errorText":
# "..."} on error, nothing else (S _handle_error; kaspi.md §B [2+]). The bodies, key by key, are the
# contract table tests/fixtures/kaspi_pos_contract.json (recorded from S).
ENV_STATUS_CODE = "statusCode"
ENV_DATA = "data"
ENV_ERROR_TEXT = "errorText"

# data fields of /v2/payment and /v2/refund.
D_PROCESS_ID = "processId"
# data fields of /v2/status and /v2/actualize, as S answers them (S _handle_status):
#   wait     {processId, status, subStatus}
#   success  {processId, status, subStatus, transactionId, addInfo, chequeInfo}
#   fail     {message, processId, status, subStatus}
#   unknown  {message, processId, status, subStatus}
# There is no data.amount in any of them (the amount is the cheque's text) and no key is sent as null.
D_STATUS = "status"
D_SUB_STATUS = "subStatus"
D_MESSAGE = "message"  # fail and unknown only
D_TRANSACTION_ID = "transactionId"  # success only: chequeInfo.orderNumber (QR) or chequeInfo.rrn (card)
D_CHEQUE_INFO = "chequeInfo"  # success only
# chequeInfo (S): the store's header, then the operation; "amount" is text ("1500 ₸", refunds "- 500 ₸").
CHEQUE_STORE_NAME = "storeName"
CHEQUE_CITY = "city"
CHEQUE_ADDRESS = "address"
CHEQUE_BIN = "bin"
CHEQUE_TERMINAL_ID = "terminalId"
CHEQUE_DATE = "date"  # the terminal's local time, dd.mm.yy HH:MM:SS
CHEQUE_DATE_FORMAT = "%d.%m.%y %H:%M:%S"
CHEQUE_METHOD = "method"
CHEQUE_TYPE = "type"  # "payment" | "refund"
CHEQUE_AMOUNT = "amount"
CHEQUE_ORDER_NUMBER = "orderNumber"  # QR
CHEQUE_CARD_MASK = "cardMask"  # card
CHEQUE_RRN = "rrn"  # card
CHEQUE_AUTH_CODE = "authorizationCode"  # card
CHEQUE_ICC = "icc"  # card payments only (not refunds)
CHEQUE_HOST_RESPONSE_CODE = "hostResponseCode"  # card payments only (not refunds)
CHEQUE_STATUS = "status"  # text for the customer
D_ADD_INFO = "addInfo"  # success only, refunds included (S)
ADD_IS_OFFER = "IsOffer"
ADD_LOAN_TERM = "LoanTerm"
ADD_PRODUCT_TYPE = "ProductType"

# data.status values: the three final/sync values are from the document; any other value means "in
# progress", we use "wait".
STATUS_WAIT = "wait"
STATUS_SUCCESS = "success"
STATUS_FAIL = "fail"
STATUS_UNKNOWN = "unknown"

# data.subStatus values (only "QrTransactionFailure" is in the document; the rest are our choice).
SUB_WAIT_USER = "WaitUser"  # payment shown as QR, waiting for the payer
SUB_PROCESS_REFUND = "ProcessRefund"  # refund waiting for the customer's confirmation in the app
SUB_QR_SUCCESS = "QrTransactionSuccess"
SUB_CARD_SUCCESS = "CardTransactionSuccess"
SUB_QR_FAILURE = "QrTransactionFailure"  # payer's bank/app declined, or the refund was declined
SUB_CARD_FAILURE = "CardTransactionFailure"
SUB_CANCELLED = "ProcessCancelled"  # payer pressed cancel on the terminal, or /v2/cancel

# data.message of fail and unknown. S's own defaults: a fail says the payer cancelled, an unknown
# says "operation cancelled" (S _handle_status). No source gives the text of a declined payment or
# refund: that one is ours.
MESSAGE_CANCELLED = "Отмена покупки; Покупатель отменил покупку"
MESSAGE_DECLINED = "Операция отклонена"
MESSAGE_UNKNOWN = "Операция отменена"

# chequeInfo.method / refund method: how the transaction went through (all simulated payments are QR).
CHEQUE_METHOD_QR = "qr"
CHEQUE_METHOD_CARD = "card"
REFUND_METHODS = (CHEQUE_METHOD_QR, CHEQUE_METHOD_CARD)
SUB_SUCCESS = {CHEQUE_METHOD_QR: SUB_QR_SUCCESS, CHEQUE_METHOD_CARD: SUB_CARD_SUCCESS}
SUB_FAILURE = {CHEQUE_METHOD_QR: SUB_QR_FAILURE, CHEQUE_METHOD_CARD: SUB_CARD_FAILURE}
CHEQUE_TYPE_PAYMENT = "payment"
CHEQUE_TYPE_REFUND = "refund"
# chequeInfo.status: S's texts are for Kaspi Gold and for a refund; the product in the purchase text
# is our extension of S's ("Покупка с Kaspi Gold. Одобрено") to the other products.
CHEQUE_STATUS_PURCHASE = "Покупка с Kaspi {product}. Одобрено"
CHEQUE_STATUS_REFUND = "Возврат успешно совершен"
CARD_MASK_PREFIX = "440043******"  # S: a Kaspi Gold card (Visa), icc "Visa Debit", host response "000"
CARD_ICC = "Visa Debit"
CARD_HOST_RESPONSE_CODE = "000"
# The store's header on the cheque (S prints its own test shop; ours is as made up).
STORE = {
    CHEQUE_STORE_NAME: "Paycenter test shop",
    CHEQUE_CITY: "г. Алматы",
    CHEQUE_ADDRESS: "пр. Абая 1",
    CHEQUE_BIN: "990340001234",
}

# Payment methods (legacy codes) -> addInfo {ProductType, LoanTerm}; LoanTerm in months, 0 = no loan.
PAYMENT_METHODS: dict[str, tuple[str, int]] = {
    "kaspi_gold": ("Gold", 0),
    "kaspi_red": ("Red", 0),
    "kaspi_credit": ("Credit", 12),
    "kaspi_installment_12": ("Installment", 12),
    "kaspi_installment_24": ("Installment", 24),
}
PAYMENT_METHOD_ALIASES = {"kaspi_kredit": "kaspi_credit", "kaspi_rassrochka": "kaspi_installment_12"}
DEFAULT_PAYMENT_METHOD = "kaspi_gold"

# Errors: (statusCode, HTTP status). Business errors come with HTTP 200; a bad token with HTTP 401.
# (S sends every code as the HTTP status too: 107, 999, ... An HTTP/1.1 client cannot read a 1xx
# status as a final answer, and N reads error codes only from answers below 400, so business errors
# here keep HTTP 200; see "http_status_ours" in the contract table.)
# The codes independent clients handle (shared/reference/kaspi.md §B, "Error codes" [2+]): 101
# process not found, 107 previous operation not finished (busy), 999 missing or invalid
# parameter. The negative codes below are this simulator's own, for cases no source names yet.
ERR_INVALID_PARAMETER = (999, 200)
ERR_TERMINAL_BUSY = (107, 200)
ERR_PROCESS_NOT_FOUND = (101, 200)
ERR_OPERATION_FINISHED = (-4, 200)  # /v2/cancel of an operation that already ended
ERR_TRANSACTION_NOT_FOUND = (-5, 200)
ERR_REFUND_EXCEEDS = (-6, 200)
ERR_REFUND_METHOD = (-7, 200)  # refund method differs from the way the purchase was paid
# A missing, unknown or expired token: S answers HTTP 401 with statusCode 401, "Authorization failed".
ERR_ACCESS_DENIED = (401, 401)
ERR_REVOKE_REFUSED = (105, 200)  # revoke with another name or refresh token (S; N handles 105)
ERR_NOT_APPROVED = (-12, 200)  # simulator only: the person at the terminal declined, or nobody answered
# Any path the terminal does not have (S: HTTP 404, statusCode 404), /v2/cancel included unless enabled.
ERR_NO_SUCH_PATH = (404, 404)
TEXT_NO_SUCH_PATH = "Invalid Url. Please, contact developers"
ERR_TERMINAL_NOT_FOUND = (-11, 404)  # simulator only: no such terminal name (a real one would not answer)

# S's error texts (S _handle_payment, _handle_refund, _handle_status, _handle_actualize, ...).
TEXT_BUSY = "Could not register transaction. Last operation was not completed."
TEXT_ACCESS_DENIED = "Authorization failed"
TEXT_MISSING = "Missing param: {name}"
TEXT_NOT_POSITIVE = "Param unvalidated: amount. Must be greater 0"
TEXT_NOT_A_NUMBER = "Param unvalidated: amount. Must be a number"
TEXT_BAD_METHOD = "Param unvalidated: method. Unknown payment method"
TEXT_PROCESS_NOT_FOUND = "Process not found"
TEXT_CANNOT_ACTUALIZE = "This transaction is unable to actualize"

# The old system's camera service: GET {camera}/scan-qr/{id}?timeout=<ms> -> {"success", "qrData"}.
CAMERA_PATH = "/camera/scan-qr/{terminal}"
CAMERA_Q_TIMEOUT = "timeout"
CAMERA_DEFAULT_TIMEOUT_MS = 10_000
CAMERA_MAX_TIMEOUT_MS = 30_000
QR_URL_TEMPLATE = "https://qr.kaspi.kz/{token}"  # the old system turned it into https://pay.kaspi.kz/pay/{token}


# ======================================================================================================
# Simulator
# ======================================================================================================

MODE_NORMAL = "normal"
MODE_SILENT = "silent"
MODE_UNKNOWN = "unknown"
MODE_STUCK = "stuck"  # as unknown, and /v2/actualize cannot re-sync either (answers unknown again)
MODES = (MODE_NORMAL, MODE_SILENT, MODE_UNKNOWN, MODE_STUCK)
ERR_CANNOT_ACTUALIZE = (103, 200)  # actualize of a status that is not unknown (kaspi.md §B, from S)
SILENT_MAX_HANG = 30.0  # seconds a call to a silent terminal hangs at most, then it is answered normally

DEFAULT_TERMINALS = {"T1": "token-T1", "T2": "token-T2", "T3": "token-T3"}
_NAME_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_POSITIVE_INT_RE = re.compile(r"^[0-9]{1,12}$")


class SimulatorError(Exception):
    """A control that does not apply (no such terminal, nothing to confirm, bad argument)."""


class BadArgument(SimulatorError):
    """A control called with a bad argument (HTTP 400 on /_sim)."""


class ProtocolError(Exception):
    """An error the terminal answers on its API."""

    def __init__(self, error: tuple[int, int], text: str) -> None:
        super().__init__(text)
        self.status_code, self.http_status = error
        self.text = text


@dataclass(eq=False)
class Operation:
    process_id: str
    kind: str  # "payment" | "refund"
    amount: int  # requested sum (payment) or refund sum
    terminal_id: str = ""  # the terminal's id, printed on the cheque
    status: str = STATUS_WAIT
    sub_status: str | None = SUB_WAIT_USER
    message: str | None = None  # fail: why
    desynced: bool = False  # answers "unknown" on /v2/status until /v2/actualize
    lost_sub_status: str | None = None  # the subStatus it had when it lost track
    transaction_id: str | None = None  # QR: the cheque's orderNumber; card: its rrn
    paid_amount: int | None = None
    method: str | None = None  # payment: legacy method code; refund: "qr" | "card"
    cheque_method: str | None = None  # "qr" | "card"
    cheque_amount: str | None = None  # printed instead of "<sum> ₸" (control confirm)
    cheque_date: str | None = None  # the terminal's local time when it finished
    card_mask: str | None = None
    auth_code: str | None = None
    qr_data: str | None = None
    refund_of: Operation | None = None  # refund: the purchase it returns money for
    refunded: int = 0  # purchase: sum of confirmed refunds
    reserved: int = 0  # purchase: sum of refunds waiting for confirmation
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def in_progress(self) -> bool:
        return self.status == STATUS_WAIT

    @property
    def refundable(self) -> int:
        if self.kind != "payment" or self.status != STATUS_SUCCESS or self.paid_amount is None:
            return 0
        return self.paid_amount - self.refunded - self.reserved

    @property
    def purchase(self) -> Operation:
        return self.refund_of or self

    def lose_track(self) -> None:
        """From now on the terminal answers ``unknown`` for it, until /v2/actualize."""
        if not self.desynced:
            self.desynced, self.lost_sub_status = True, self.sub_status

    def wire(self) -> dict[str, Any]:
        """data of /v2/status for this operation (as the terminal currently sees it)."""
        if self.desynced:  # S _handle_status (unknown): S's message and the subStatus it had
            return {
                D_MESSAGE: MESSAGE_UNKNOWN,
                D_PROCESS_ID: self.process_id,
                D_STATUS: STATUS_UNKNOWN,
                D_SUB_STATUS: self.lost_sub_status,
            }
        return self.real_wire()

    def real_wire(self) -> dict[str, Any]:
        # Only the keys S sends for each status (S _handle_status); nothing is sent as null.
        head = {D_PROCESS_ID: self.process_id, D_STATUS: self.status, D_SUB_STATUS: self.sub_status}
        if self.status == STATUS_FAIL:
            return {D_MESSAGE: self.message, **head}
        if self.status != STATUS_SUCCESS:
            return head
        product, term = PAYMENT_METHODS.get(self.purchase.method or "", PAYMENT_METHODS[DEFAULT_PAYMENT_METHOD])
        return head | {
            D_TRANSACTION_ID: self.transaction_id,
            # S sends addInfo on refunds too (the purchase's product).
            D_ADD_INFO: {ADD_IS_OFFER: False, ADD_LOAN_TERM: term, ADD_PRODUCT_TYPE: product},
            D_CHEQUE_INFO: self.cheque(product),
        }

    def cheque(self, product: str) -> dict[str, Any]:
        """chequeInfo, key for key as S prints it (S _handle_status, success)."""
        refund = self.kind == "refund"
        amount = self.paid_amount if self.paid_amount is not None else self.amount
        cheque = STORE | {
            CHEQUE_TERMINAL_ID: self.terminal_id,
            CHEQUE_DATE: self.cheque_date,
            CHEQUE_METHOD: self.cheque_method,
            CHEQUE_TYPE: CHEQUE_TYPE_REFUND if refund else CHEQUE_TYPE_PAYMENT,
            # The amount of a finished operation is only here, as text with the tenge sign, refunds
            # with a minus: "1500 ₸", "- 500 ₸"; there is no data.amount (S, kaspi.md §B).
            CHEQUE_AMOUNT: self.cheque_amount or f"{'- ' if refund else ''}{amount} ₸",
        }
        if self.cheque_method == CHEQUE_METHOD_CARD:
            cheque |= {
                CHEQUE_CARD_MASK: self.purchase.card_mask,
                CHEQUE_RRN: self.transaction_id,
                CHEQUE_AUTH_CODE: self.auth_code,
            }
        else:
            cheque[CHEQUE_ORDER_NUMBER] = self.transaction_id
        cheque[CHEQUE_STATUS] = CHEQUE_STATUS_REFUND if refund else CHEQUE_STATUS_PURCHASE.format(product=product)
        if self.cheque_method == CHEQUE_METHOD_CARD and not refund:  # S: card payments only
            cheque |= {CHEQUE_ICC: CARD_ICC, CHEQUE_HOST_RESPONSE_CODE: CARD_HOST_RESPONSE_CODE}
        return cheque

    def snapshot(self) -> dict[str, Any]:
        """The simulator's own view (controls): real state, not what the terminal currently answers."""
        product, term = PAYMENT_METHODS.get(self.method or "", (None, None))
        out: dict[str, Any] = {
            "processId": self.process_id,
            "kind": self.kind,
            "status": self.status,
            "subStatus": self.sub_status,
            "desynced": self.desynced,
            "amount": self.amount,
            "transactionId": self.transaction_id,
            "chequeMethod": self.cheque_method,
            "createdAt": self.created_at,
            "finishedAt": self.finished_at,
        }
        if self.kind == "payment":
            out |= {
                "paidAmount": self.paid_amount,
                "method": self.method,
                "productType": product,
                "loanTerm": term,
                "qrData": self.qr_data,
                "refundedAmount": self.refunded,
                "pendingRefundAmount": self.reserved,
                "refundableAmount": self.refundable,
            }
        else:
            out |= {
                "method": self.method,
                "originalTransactionId": self.refund_of.transaction_id if self.refund_of else None,
            }
        return out


@dataclass
class Grant:
    """A token pair the terminal issued: to whom (the client name) and until when (terminal clock)."""

    name: str
    refresh_token: str
    expires_at: float


PRE_REGISTERED_NAME = "paycenter"


class Terminal:
    def __init__(self, name: str, token: str, *, cancel: bool = False) -> None:
        self.name = name
        self.built_token, self.built_cancel = token, cancel
        self.token_lifetime = TOKEN_LIFETIME
        self.expiry_format = EXPIRY_FORMATS[0]
        self.waiting_registrations: list[asyncio.Future[bool]] = []
        self.serial = f"KSP{uuid.uuid5(uuid.NAMESPACE_URL, name).int % 10**10:010d}"
        number = uuid.uuid5(uuid.NAMESPACE_DNS, name).int
        self.pos_num = f"{number % 10**6:06d}"
        self.terminal_id = f"{number // 10**6 % 10**8:08d}"
        self.started_at = time.time()
        self.awake = asyncio.Event()  # set unless the terminal is silent
        self.qr_shown = asyncio.Event()  # set while a payment QR is on the screen
        self.reset()

    def now(self) -> float:
        return time.time() + self.clock_offset

    def issue(self, client_name: str) -> dict[str, Any]:
        access, refresh = uuid.uuid4().hex, uuid.uuid4().hex  # S: uuid4().hex for both
        expires = self.now() + self.token_lifetime
        self.grants[access] = Grant(client_name, refresh, expires)
        local = time.gmtime(expires + TERMINAL_UTC_OFFSET)  # local time, written without a zone
        return {
            D_ACCESS_TOKEN: access,
            D_REFRESH_TOKEN: refresh,
            D_EXPIRATION_DATE: time.strftime(self.expiry_format, local),
        }

    def live_grant(self, token: str | None) -> Grant:
        grant = self.grants.get(token) if token else None
        if grant is None or grant.expires_at <= self.now():  # S checks the expiry on every call
            self.rejected_tokens += 1
            raise ProtocolError(ERR_ACCESS_DENIED, TEXT_ACCESS_DENIED)
        return grant

    def reset(self) -> None:
        self.cancel_supported = self.built_cancel
        self.clock_offset = 0.0  # seconds the terminal's clock runs ahead of ours (control "clock")
        self.registration = "auto"
        self.register_calls = self.revoke_calls = self.rejected_tokens = 0
        # Built with a token: as if it had been registered under PRE_REGISTERED_NAME.
        self.grants: dict[str, Grant] = {}
        self.grants[self.built_token] = Grant(
            PRE_REGISTERED_NAME, f"refresh-{self.built_token}", self.now() + self.token_lifetime
        )
        self.mode = MODE_NORMAL
        self.awake.set()
        self.qr_shown.clear()
        self.current: Operation | None = None
        self.ops: dict[str, Operation] = {}
        self.purchases: dict[str, Operation] = {}  # transactionId -> successful payment on this terminal
        self.status_calls = 0
        self.actualize_calls = 0
        self.silent_waiters = 0
        self.camera_waiters = 0

    @property
    def busy(self) -> bool:
        return self.current is not None

    def last(self) -> Operation | None:
        if self.current is not None:
            return self.current
        return next(reversed(self.ops.values()), None)

    def snapshot(self) -> dict[str, Any]:
        op = self.last()
        ops = list(self.ops.values())
        return {
            "name": self.name,
            "busy": self.busy,
            "mode": self.mode,
            "processId": op.process_id if op else None,
            "kind": op.kind if op else None,
            "status": op.status if op else None,
            "subStatus": op.sub_status if op else None,
            "amount": op.amount if op else None,
            "operations": [o.snapshot() for o in ops if o.kind == "payment"],
            "refunds": [o.snapshot() for o in ops if o.kind == "refund"],
            "statusCalls": self.status_calls,
            "actualizeCalls": self.actualize_calls,
            "cancelSupported": self.cancel_supported,
            "liveTokens": sum(1 for g in self.grants.values() if g.expires_at > self.now()),
            "registerCalls": self.register_calls,
            "revokeCalls": self.revoke_calls,
            "rejectedTokens": self.rejected_tokens,
            "waitingRegistrations": len(self.waiting_registrations),
            "silentWaiters": self.silent_waiters,
            "cameraWaiters": self.camera_waiters,
        }


class Simulator:
    """In-memory state of all simulated terminals, and the payer's controls."""

    def __init__(self, terminals: dict[str, str] | None = None, *, cancel: bool = False) -> None:
        self.terminals: dict[str, Terminal] = {}
        self.status_calls = 0
        self._ids: set[str] = set()
        for name, token in (DEFAULT_TERMINALS if terminals is None else terminals).items():
            self.add_terminal(name, token, cancel=cancel)

    # -- terminals --------------------------------------------------------------------------------

    def add_terminal(self, name: str, token: str, *, cancel: bool = False) -> Terminal:
        if not _NAME_RE.match(name):
            raise BadArgument(f"bad terminal name {name!r}")
        if name in self.terminals:
            raise SimulatorError(f"terminal {name!r} exists")
        term = self.terminals[name] = Terminal(name, token, cancel=cancel)
        return term

    def get(self, name: str) -> Terminal:
        term = self.terminals.get(name)
        if term is None:
            raise SimulatorError(f"no terminal {name!r}")
        return term

    def reset(self) -> None:
        """Forget every operation, mode, token issued and counter; keep the terminals as built."""
        for term in self.terminals.values():
            term.reset()
        self.status_calls = 0

    @property
    def status_calls_by_terminal(self) -> dict[str, int]:
        return {name: t.status_calls for name, t in self.terminals.items() if t.status_calls}

    def stats(self) -> dict[str, Any]:
        return {"statusCalls": self.status_calls, "statusCallsByTerminal": self.status_calls_by_terminal}

    # -- ids --------------------------------------------------------------------------------------

    def _unique_digits(self, count: int) -> str:
        while True:
            tid = str(10 ** (count - 1) + secrets.randbelow(9 * 10 ** (count - 1)))
            if tid not in self._ids:
                self._ids.add(tid)
                return tid

    def _take(self, op: Operation, cheque_method: str) -> None:
        """The transaction's ids, as S makes them: a QR one has an order number, a card one an rrn
        and an authorization code; either is the transactionId (S _handle_status; kaspi.md §B)."""
        op.cheque_method = cheque_method
        if cheque_method == CHEQUE_METHOD_CARD:
            op.transaction_id = self._unique_digits(12)  # rrn
            op.auth_code = f"{secrets.randbelow(10**6):06d}"
            if op.kind == "payment":
                op.card_mask = f"{CARD_MASK_PREFIX}{secrets.randbelow(10**4):04d}"
        else:
            op.transaction_id = self._unique_digits(15)  # orderNumber

    # -- the terminal's API -----------------------------------------------------------------------

    @staticmethod
    def _required(params: dict[str, str | None]) -> None:
        """999 for the first missing parameter, in S's order and words."""
        for name, value in params.items():
            if value is None:
                raise ProtocolError(ERR_INVALID_PARAMETER, TEXT_MISSING.format(name=name))

    @staticmethod
    def _amount(raw: str) -> int:
        if _POSITIVE_INT_RE.match(raw.removeprefix("-")) is None:
            raise ProtocolError(ERR_INVALID_PARAMETER, TEXT_NOT_A_NUMBER)
        if raw.startswith("-") or int(raw) <= 0:
            raise ProtocolError(ERR_INVALID_PARAMETER, TEXT_NOT_POSITIVE)
        return int(raw)

    def _op(self, term: Terminal, process_id: str | None) -> Operation:
        self._required({Q_PROCESS_ID: process_id})
        op = term.ops.get(process_id or "")
        if op is None:
            raise ProtocolError(ERR_PROCESS_NOT_FOUND, TEXT_PROCESS_NOT_FOUND)
        return op

    def _start(self, term: Terminal, op: Operation) -> Operation:
        op.terminal_id = term.terminal_id
        if term.mode in (MODE_UNKNOWN, MODE_STUCK):
            op.lose_track()
        term.ops[op.process_id] = op
        term.current = op
        return op

    def _finish(self, term: Terminal, op: Operation, status: str, sub_status: str | None) -> None:
        op.status = status
        op.sub_status = sub_status
        op.finished_at = time.time()
        op.cheque_date = time.strftime(CHEQUE_DATE_FORMAT, time.gmtime(term.now() + TERMINAL_UTC_OFFSET))
        if status == STATUS_FAIL:
            op.message = MESSAGE_CANCELLED if sub_status == SUB_CANCELLED else MESSAGE_DECLINED
        if term.current is op:
            term.current = None
            term.qr_shown.clear()
        purchase = op.refund_of
        if purchase is not None:
            purchase.reserved -= op.amount
            if status == STATUS_SUCCESS:
                purchase.refunded += op.amount

    def api_payment(self, term: Terminal, amount_raw: str | None) -> dict[str, Any]:
        self._required({Q_AMOUNT: amount_raw})
        amount = self._amount(amount_raw or "")
        if term.busy:
            raise ProtocolError(ERR_TERMINAL_BUSY, TEXT_BUSY)
        op = Operation(process_id=str(uuid.uuid4()), kind="payment", amount=amount)
        op.qr_data = QR_URL_TEMPLATE.format(token=secrets.token_hex(12))
        self._start(term, op)
        term.qr_shown.set()
        # {processId, status: "wait"}: kaspi.md §B [2+]; client N rejects a start without status.
        return {D_PROCESS_ID: op.process_id, D_STATUS: op.status}

    def api_status(self, term: Terminal, process_id: str | None) -> dict[str, Any]:
        op = self._op(term, process_id)
        term.status_calls += 1
        self.status_calls += 1
        return op.wire()

    def api_actualize(self, term: Terminal, process_id: str | None) -> dict[str, Any]:
        op = self._op(term, process_id)
        term.actualize_calls += 1
        if not op.desynced:  # "only while status is unknown": S answers 103 otherwise (kaspi.md §B)
            raise ProtocolError(ERR_CANNOT_ACTUALIZE, TEXT_CANNOT_ACTUALIZE)
        if term.mode != MODE_STUCK:
            op.desynced = False
        return op.wire()

    def api_cancel(self, term: Terminal, process_id: str | None) -> dict[str, Any]:
        if not term.cancel_supported:  # in no independent contract; S answers 404 (kaspi.md §B)
            raise ProtocolError(ERR_NO_SUCH_PATH, TEXT_NO_SUCH_PATH)
        if not process_id:  # the old system's "clear whatever is stuck" (L)
            op = term.current
            if op is not None:
                self._finish(term, op, STATUS_FAIL, SUB_CANCELLED)
            return {D_PROCESS_ID: op.process_id if op else None, D_STATUS: op.status if op else None}
        op = self._op(term, process_id)
        if not op.in_progress:
            raise ProtocolError(ERR_OPERATION_FINISHED, f"Process {process_id} has already ended ({op.status})")
        self._finish(term, op, STATUS_FAIL, SUB_CANCELLED)
        return {D_PROCESS_ID: op.process_id, D_STATUS: op.status}

    def api_refund(
        self,
        term: Terminal,
        method: str | None,
        amount_raw: str | None,
        transaction_id: str | None,
    ) -> dict[str, Any]:
        # S's checks, in S's order (S _handle_refund); then ours, which S does not make.
        self._required({Q_AMOUNT: amount_raw, Q_METHOD: method, Q_TRANSACTION_ID: transaction_id})
        amount = self._amount(amount_raw or "")
        if method not in REFUND_METHODS:
            raise ProtocolError(ERR_INVALID_PARAMETER, TEXT_BAD_METHOD)
        if term.busy:
            raise ProtocolError(ERR_TERMINAL_BUSY, TEXT_BUSY)
        purchase = term.purchases.get(transaction_id or "")
        if purchase is None:
            raise ProtocolError(ERR_TRANSACTION_NOT_FOUND, f"Transaction {transaction_id} not found")
        if method != purchase.cheque_method:
            raise ProtocolError(
                ERR_REFUND_METHOD, f"Transaction {transaction_id} was paid by {purchase.cheque_method}, not {method}"
            )
        if amount > purchase.refundable:
            raise ProtocolError(
                ERR_REFUND_EXCEEDS,
                f"Refund amount {amount} exceeds the amount available for refund ({purchase.refundable})",
            )
        op = Operation(process_id=str(uuid.uuid4()), kind="refund", amount=amount, sub_status=SUB_PROCESS_REFUND)
        op.method = op.cheque_method = method
        op.refund_of = purchase
        purchase.reserved += amount
        self._start(term, op)
        return {D_PROCESS_ID: op.process_id, D_STATUS: op.status}  # as /v2/payment (kaspi.md §B)

    def api_deviceinfo(self, term: Terminal) -> dict[str, Any]:
        # {posNum, serialNum, terminalId}, all strings, and nothing more (kaspi.md §B [2+]); the
        # fields this simulator used to add (model, battery, busy, ...) were its own invention.
        return {"posNum": term.pos_num, "serialNum": term.serial, "terminalId": term.terminal_id}

    async def api_register(self, term: Terminal, name: str | None) -> dict[str, Any]:
        """A new token pair for client ``name``, once the person at the terminal approves."""
        term.register_calls += 1
        if not name:
            raise ProtocolError(ERR_INVALID_PARAMETER, TEXT_MISSING.format(name=Q_NAME))  # S
        if term.registration == "manual":
            decided: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            term.waiting_registrations.append(decided)
            try:
                approved = await asyncio.wait_for(asyncio.shield(decided), REGISTRATION_WAIT)
            except TimeoutError:
                approved = False
            finally:
                if decided in term.waiting_registrations:
                    term.waiting_registrations.remove(decided)
            if not approved:
                raise ProtocolError(ERR_NOT_APPROVED, "Registration was not approved on the terminal")
        return term.issue(name)

    def api_revoke(self, term: Terminal, name: str | None, refresh: str | None, token: str | None) -> dict[str, Any]:
        """Replace the caller's pair (S's checks, in S's order); the old access token dies."""
        term.revoke_calls += 1
        if not name:
            raise ProtocolError(ERR_INVALID_PARAMETER, TEXT_MISSING.format(name=Q_NAME))
        if not refresh:
            raise ProtocolError(ERR_INVALID_PARAMETER, f"Param unvalidated: {Q_REFRESH_TOKEN}. It's empty")
        grant = term.live_grant(token)
        if grant.name != name:
            raise ProtocolError(ERR_REVOKE_REFUSED, "Revoke Error. Wrong name")
        if not secrets.compare_digest(grant.refresh_token.encode(), refresh.encode()):
            raise ProtocolError(ERR_REVOKE_REFUSED, "Revoke Error. Wrong refresh token")
        del term.grants[cast(str, token)]  # live_grant refused a missing token
        return term.issue(name)

    # -- the payer's side (controls) --------------------------------------------------------------

    def _current(self, name: str, kind: str) -> tuple[Terminal, Operation]:
        term = self.get(name)
        op = term.current
        if op is None or op.kind != kind:
            raise SimulatorError(f"no {kind} in progress on terminal {name!r}")
        return term, op

    def terminal(self, name: str) -> dict[str, Any]:
        return self.get(name).snapshot()

    def confirm(
        self,
        name: str,
        amount: int | None = None,
        method: str = DEFAULT_PAYMENT_METHOD,
        cheque_amount: str | None = None,
        cheque_method: str = CHEQUE_METHOD_QR,
    ) -> dict[str, Any]:
        """The payer pays the current payment (optionally a different sum) with `method`.
        ``cheque_amount``: the cheque's amount text instead of "<sum> ₸", for the other shapes a
        terminal's firmware may print (grouped digits, decimals, text nobody can read).
        ``cheque_method``: "qr" (the Kaspi app scanned the QR) or "card" (a card at the terminal)."""
        method = PAYMENT_METHOD_ALIASES.get(method, method)
        if method not in PAYMENT_METHODS:
            raise BadArgument(f"unknown method {method!r}; one of {', '.join(PAYMENT_METHODS)}")
        if cheque_method not in REFUND_METHODS:
            raise BadArgument(f"unknown cheque method {cheque_method!r}; one of {', '.join(REFUND_METHODS)}")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0):
            raise BadArgument("amount must be a positive integer (tenge)")
        term, op = self._current(name, "payment")
        op.paid_amount = op.amount if amount is None else amount
        op.method = method
        self._take(op, cheque_method)
        op.cheque_amount = cheque_amount
        term.purchases[cast(str, op.transaction_id)] = op  # _take gave the operation its id
        self._finish(term, op, STATUS_SUCCESS, SUB_SUCCESS[cheque_method])
        return op.snapshot()

    def fail(self, name: str, sub_status: str = SUB_QR_FAILURE) -> dict[str, Any]:
        term, op = self._current(name, "payment")
        self._finish(term, op, STATUS_FAIL, sub_status)
        return op.snapshot()

    def payer_cancel(self, name: str) -> dict[str, Any]:
        return self.fail(name, SUB_CANCELLED)

    def confirm_refund(self, name: str) -> dict[str, Any]:
        term, op = self._current(name, "refund")
        method = op.cheque_method or CHEQUE_METHOD_QR
        self._take(op, method)
        self._finish(term, op, STATUS_SUCCESS, SUB_SUCCESS[method])
        return op.snapshot()

    def fail_refund(self, name: str) -> dict[str, Any]:
        term, op = self._current(name, "refund")
        self._finish(term, op, STATUS_FAIL, SUB_FAILURE[op.cheque_method or CHEQUE_METHOD_QR])
        return op.snapshot()

    def advance_clock(self, name: str, seconds: Any) -> dict[str, Any]:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise BadArgument("advance must be a number of seconds >= 0")
        term = self.get(name)
        term.clock_offset += float(seconds)
        return term.snapshot()

    def set_registration(self, name: str, mode: Any) -> dict[str, Any]:
        if mode not in ("auto", "manual"):
            raise BadArgument("mode must be auto or manual")
        term = self.get(name)
        term.registration = mode
        return term.snapshot()

    def decide_registration(self, name: str, approved: bool) -> dict[str, Any]:
        """The person at the terminal answers the oldest waiting registration request."""
        term = self.get(name)
        waiting = [f for f in term.waiting_registrations if not f.done()]
        if not waiting:
            raise SimulatorError(f"no registration waits on terminal {name!r}")
        waiting[0].set_result(approved)
        return term.snapshot()

    def set_features(self, name: str, cancel: Any) -> dict[str, Any]:
        if not isinstance(cancel, bool):
            raise BadArgument("cancel must be true or false")
        term = self.get(name)
        term.cancel_supported = cancel
        return term.snapshot()

    def set_mode(self, name: str, mode: str) -> dict[str, Any]:
        if mode not in MODES:
            raise BadArgument(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        term = self.get(name)
        term.mode = mode
        if mode == MODE_SILENT:
            term.awake.clear()
        else:
            term.awake.set()
        if mode in (MODE_UNKNOWN, MODE_STUCK) and (op := term.last()) is not None:
            op.lose_track()
        return term.snapshot()

    # -- HTTP plumbing ----------------------------------------------------------------------------

    async def wait_awake(self, term: Terminal) -> None:
        """A silent terminal does not answer: hang until it wakes up (at most SILENT_MAX_HANG)."""
        if term.mode != MODE_SILENT:
            return
        term.silent_waiters += 1
        try:
            await asyncio.wait_for(term.awake.wait(), SILENT_MAX_HANG)
        except TimeoutError:
            pass
        finally:
            term.silent_waiters -= 1

    async def scan_qr(self, term: Terminal, timeout_ms: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            op = term.current
            if op is not None and op.kind == "payment" and op.in_progress and op.qr_data:
                return {"success": True, "qrData": op.qr_data}
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {"success": False, "error": "QR code not found on the terminal screen"}
            term.camera_waiters += 1
            try:
                await asyncio.wait_for(term.qr_shown.wait(), remaining)
            except TimeoutError:
                pass
            finally:
                term.camera_waiters -= 1


# ======================================================================================================
# ASGI app
# ======================================================================================================


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({ENV_STATUS_CODE: 0, ENV_DATA: data})


def _err(exc: ProtocolError) -> JSONResponse:
    # S _handle_error: {"errorText", "statusCode"} and nothing else (no data, no message).
    return JSONResponse({ENV_ERROR_TEXT: exc.text, ENV_STATUS_CODE: exc.status_code}, status_code=exc.http_status)


def _control_error(exc: SimulatorError, status: int = 409) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=status)


def create_app(*, terminals: dict[str, str] | None = None, camera: bool = True, cancel: bool = False) -> Starlette:
    """An ASGI app simulating `terminals` (name -> access token); state at ``app.state.sim``.
    ``cancel``: the terminals answer /v2/cancel (the old system's firmware; none by default)."""
    sim = Simulator(terminals, cancel=cancel)

    async def v2(request: Request) -> JSONResponse:
        term = sim.terminals.get(request.path_params["terminal"])
        if term is None:
            return _err(ProtocolError(ERR_TERMINAL_NOT_FOUND, "No such terminal"))
        if term.mode == MODE_SILENT:
            await sim.wait_awake(term)
        path = "/v2/" + request.path_params["call"]
        q, token = request.query_params, request.headers.get(H_ACCESS_TOKEN)
        try:
            if path == PATH_REGISTER:
                return _ok(await sim.api_register(term, q.get(Q_NAME)))
            if path == PATH_REVOKE:
                return _ok(sim.api_revoke(term, q.get(Q_NAME), q.get(Q_REFRESH_TOKEN), token))
            # Every other call needs a live token (S, "--secure"), an unknown path too: S checks the
            # token before it looks at the path, so a path it lacks is 401 without one, 404 with one.
            term.live_grant(token)
            handler = api.get(path)
            if handler is None:
                raise ProtocolError(ERR_NO_SUCH_PATH, TEXT_NO_SUCH_PATH)
            return _ok(handler(term, q))
        except ProtocolError as exc:
            return _err(exc)

    api = {
        PATH_PAYMENT: lambda t, q: sim.api_payment(t, q.get(Q_AMOUNT)),
        PATH_STATUS: lambda t, q: sim.api_status(t, q.get(Q_PROCESS_ID)),
        PATH_ACTUALIZE: lambda t, q: sim.api_actualize(t, q.get(Q_PROCESS_ID)),
        PATH_CANCEL: lambda t, q: sim.api_cancel(t, q.get(Q_PROCESS_ID)),
        PATH_REFUND: lambda t, q: sim.api_refund(t, q.get(Q_METHOD), q.get(Q_AMOUNT), q.get(Q_TRANSACTION_ID)),
        PATH_DEVICEINFO: lambda t, q: sim.api_deviceinfo(t),
    }
    routes = [Route("/terminals/{terminal}/v2/{call:path}", v2, methods=["GET"])]

    async def scan_qr(request: Request) -> JSONResponse:
        term = sim.terminals.get(request.path_params["terminal"])
        if term is None:
            return JSONResponse({"success": False, "error": "Camera not found"}, status_code=404)
        raw = request.query_params.get(CAMERA_Q_TIMEOUT, "")
        timeout_ms = int(raw) if _POSITIVE_INT_RE.match(raw) else CAMERA_DEFAULT_TIMEOUT_MS
        return JSONResponse(await sim.scan_qr(term, min(timeout_ms, CAMERA_MAX_TIMEOUT_MS)))

    if camera:
        routes.append(Route(CAMERA_PATH, scan_qr, methods=["GET"]))

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        data = await request.json()
        if not isinstance(data, dict):
            raise BadArgument("body must be a JSON object")
        return data

    def control(action: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                data = await body(request)
            except ValueError:
                return _control_error(SimulatorError("body must be JSON"), 400)
            except SimulatorError as exc:
                return _control_error(exc, 400)
            name = request.path_params.get("terminal")
            if name is not None and name not in sim.terminals:
                return _control_error(SimulatorError(f"no terminal {name!r}"), 404)
            try:
                return JSONResponse(action(name, data))
            except BadArgument as exc:
                return _control_error(exc, 400)
            except SimulatorError as exc:
                return _control_error(exc)

        return endpoint

    def add_terminal(_name: str | None, data: dict[str, Any]) -> dict[str, Any]:
        name, token, can_cancel = data.get("name"), data.get("token"), data.get("cancel", False)
        if not isinstance(name, str) or not isinstance(token, str) or not token or not isinstance(can_cancel, bool):
            raise BadArgument("body needs name and token (strings), and cancel (boolean) if any")
        return sim.add_terminal(name, token, cancel=can_cancel).snapshot()

    def reset(_name: str | None, _data: dict[str, Any]) -> dict[str, Any]:
        sim.reset()
        return {"ok": True}

    def confirm(name: str, data: dict[str, Any]) -> dict[str, Any]:
        cheque = data.get("chequeAmount")
        return sim.confirm(
            name,
            amount=data.get("amount"),
            method=data.get("method") or DEFAULT_PAYMENT_METHOD,
            cheque_amount=cheque if isinstance(cheque, str) else None,
            cheque_method=data.get("chequeMethod") or CHEQUE_METHOD_QR,
        )

    def fail(name: str, data: dict[str, Any]) -> dict[str, Any]:
        sub_status = data.get("subStatus")
        return sim.fail(name, sub_status if isinstance(sub_status, str) and sub_status else SUB_QR_FAILURE)

    def set_mode(name: str, data: dict[str, Any]) -> dict[str, Any]:
        mode = data.get("mode")
        return sim.set_mode(name, mode if isinstance(mode, str) else "")

    async def list_terminals(request: Request) -> JSONResponse:
        return JSONResponse(
            {"terminals": [{"name": t.name, "busy": t.busy, "mode": t.mode} for t in sim.terminals.values()]}
        )

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(sim.stats())

    t = "/_sim/terminals/{terminal}"
    routes += [
        Route("/_sim/terminals", list_terminals, methods=["GET"]),
        Route("/_sim/terminals", control(add_terminal), methods=["POST"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", control(reset), methods=["POST"]),
        Route(t, control(lambda name, data: sim.terminal(name)), methods=["GET"]),
        Route(t + "/confirm", control(confirm), methods=["POST"]),
        Route(t + "/fail", control(fail), methods=["POST"]),
        Route(t + "/payer-cancel", control(lambda name, data: sim.payer_cancel(name)), methods=["POST"]),
        Route(t + "/mode", control(set_mode), methods=["POST"]),
        Route(t + "/refund/confirm", control(lambda name, data: sim.confirm_refund(name)), methods=["POST"]),
        Route(t + "/refund/fail", control(lambda name, data: sim.fail_refund(name)), methods=["POST"]),
        Route(t + "/clock", control(lambda name, data: sim.advance_clock(name, data.get("advance"))), methods=["POST"]),
        Route(
            t + "/registration",
            control(lambda name, data: sim.set_registration(name, data.get("mode"))),
            methods=["POST"],
        ),
        Route(t + "/approve", control(lambda name, data: sim.decide_registration(name, True)), methods=["POST"]),
        Route(t + "/deny", control(lambda name, data: sim.decide_registration(name, False)), methods=["POST"]),
        Route(
            t + "/features", control(lambda name, data: sim.set_features(name, data.get("cancel"))), methods=["POST"]
        ),
    ]
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app
