"""Kaspi's biller protocol (shared/reference/kaspi.md §C): Kaspi calls us, we answer.

The payer finds the service in the Kaspi app's payments section and types an account number;
Kaspi then calls the merchant's one URL with ``command=check`` (is this account payable, for how
much) and, once the money is taken, ``command=pay``. Kaspi publishes no document of it: every
protocol detail paycenter relies on lives in this module (reading a request, writing a reply,
who may call), each rule with where it comes from, so that it can be corrected from a real
document in one place. ``payments.biller`` decides what to answer; ``api.biller`` is the endpoint.

The provider itself has nothing to start, poll, cancel or refund: no attempt of it is ever live
at a bank, since the payer pays from the Kaspi app and Kaspi tells us.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

from paycenter.config import Settings
from paycenter.crypto import reveal
from paycenter.money import MoneyError, to_major_str, to_minor
from paycenter.providers.base import (
    AttemptRef,
    AttemptStart,
    PollResult,
    ProviderError,
    RefundLegRef,
    RefundOutcome,
    Started,
)
from paycenter.timefmt import ALMATY

NAME = "kaspi_biller"
# kaspi.md §C: the protocol speaks tenge; ``sum`` is major units with a decimal point.
CURRENCY = "KZT"

REFUNDS_REFUSED = (
    "Kaspi's biller protocol has no refund call that paycenter knows of (what is known of it describes "
    "only check and pay), so paycenter cannot send this refund. Return the money in Kaspi's own merchant "
    "cabinet. paycenter does not learn of a refund made there: once it is done, an operator records it on "
    "the payment's page in the admin panel (a manual refund), which counts it and sends the refunded webhook."
)


class Command(enum.StrEnum):
    # kaspi.md §C: ``?command=check&...`` and ``?command=pay&...``.
    CHECK = "check"
    PAY = "pay"


class Result(enum.IntEnum):
    # kaspi.md §C: "0 OK, 1 not found, 2 cancelled/expired, 3 already paid, 4 in progress, 5 other error".
    OK = 0
    NOT_FOUND = 1
    CANCELLED = 2
    ALREADY_PAID = 3
    IN_PROGRESS = 4
    OTHER_ERROR = 5


# --- the request -------------------------------------------------------------------------------

# kaspi.md §C: "txn_id ≤ 20 chars"; SPEC.md: 1-20 digits (every independent implementation reads it
# as an integer, and digits keep it exact under MariaDB's case-insensitive collation).
_TXN_ID = re.compile(r"[0-9]{1,20}\Z", re.ASCII)
# kaspi.md §C: "account = our order/payment reference"; ours are digits (payments.accounts), and a
# merchant's own is digits too; 1-20 (the column's width).
_ACCOUNT = re.compile(r"[0-9]{1,20}\Z", re.ASCII)
# kaspi.md §C: ``sum=10000.00``, decimal major units; at most the tenge's two decimals, no sign,
# exponent, spaces or grouping. Fifteen integer digits is far beyond any tenge amount.
_SUM = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,2})?\Z", re.ASCII)
# kaspi.md §C: ``txn_date=YYYYMMDDHHMMSS``, Kazakhstan local time.
_TXN_DATE = re.compile(r"[0-9]{14}\Z", re.ASCII)
TXN_DATE_FORMAT = "%Y%m%d%H%M%S"
# The names the protocol gives meaning to; each may appear once.
FIELDS = ("command", "txn_id", "account", "sum", "txn_date", "data1")
# No value of the protocol is longer than this; a longer one is refused before any parsing.
_MAX_VALUE = 100


class BadRequest(ValueError):
    """A request the protocol cannot take: answered ``result`` 5 and nothing is written.
    ``txn_id``: Kaspi's id when it was well formed, echoed in the reply."""

    def __init__(self, message: str, *, txn_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.txn_id = txn_id


@dataclass(frozen=True)
class BillerRequest:
    command: Command
    txn_id: str
    account: str
    # Minor units of KZT. On pay the money Kaspi took (> 0); on check a placeholder (kaspi.md §C:
    # "sum on check is a placeholder"), None when not sent.
    amount: int | None
    # Kaspi's time of the pay, read as Almaty local time, as an aware UTC datetime; None if not sent.
    txn_date: datetime | None
    data1: str | None


def _one(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    if not found:
        return None
    if len(found) > 1:
        raise BadRequest(f"{name} is given more than once")
    if len(found[0]) > _MAX_VALUE:
        raise BadRequest(f"{name} is too long")
    return found[0]


def collect(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The request's fields (query string, and a POST's form) by name, every value kept, so that
    a field given twice is refused rather than one of its values picked silently."""
    values: dict[str, list[str]] = {}
    for name, value in items:
        if name in FIELDS:
            values.setdefault(name, []).append(value)
    return values


def parse_sum(text: str) -> int:
    """``sum`` as minor units of KZT (kaspi.md §C: ``10000.00``); zero is allowed here."""
    if _SUM.match(text) is None:
        raise BadRequest("sum must be an amount in tenge such as 10000.00")
    if text.strip("0.") == "":
        return 0
    try:
        return to_minor(text, CURRENCY)
    except MoneyError as exc:
        raise BadRequest(f"sum: {exc}") from None


def parse_txn_date(text: str) -> datetime:
    """``txn_date`` (kaspi.md §C: ``YYYYMMDDHHMMSS``, Kazakhstan local time) as aware UTC. zoneinfo
    knows Almaty's offsets: UTC+6 until 2024-03-01, UTC+5 since."""
    if _TXN_DATE.match(text) is None:
        raise BadRequest("txn_date must be YYYYMMDDHHMMSS")
    try:
        local = datetime.strptime(text, TXN_DATE_FORMAT).replace(tzinfo=ALMATY)
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest("txn_date is not a valid date and time") from None


def parse(values: dict[str, list[str]]) -> BillerRequest:
    """A request's fields (``collect``) as a typed request; ``BadRequest`` for anything malformed."""
    raw_txn = _one(values, "txn_id")
    txn_id = raw_txn if raw_txn is not None and _TXN_ID.match(raw_txn) else None
    try:
        command = _one(values, "command")
        if command not in (Command.CHECK, Command.PAY):
            raise BadRequest("command must be check or pay")
        if txn_id is None:
            raise BadRequest("txn_id must be 1 to 20 digits")
        account = _one(values, "account")
        if account is None or _ACCOUNT.match(account) is None:
            raise BadRequest("account must be 1 to 20 digits")
        # Empty optional values (``sum=`` on check, kaspi.md §C's own template) count as not sent.
        sum_text = _one(values, "sum") or None
        amount = parse_sum(sum_text) if sum_text is not None else None
        if command == Command.PAY and not amount:
            # kaspi.md §C: pay carries the money taken; without it there is nothing to record.
            raise BadRequest("sum must be an amount greater than zero on pay")
        date_text = _one(values, "txn_date") or None
        txn_date = parse_txn_date(date_text) if date_text is not None else None
        return BillerRequest(
            command=Command(command),
            txn_id=txn_id,
            account=account,
            amount=amount,
            txn_date=txn_date,
            data1=_one(values, "data1"),
        )
    except BadRequest as exc:
        exc.txn_id = txn_id
        raise


# --- who may call ------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> list[Network]:
    """``PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS``: comma-separated CIDRs (a bare address is a /32 or
    /128). A wrong one stops the process: an allow-list read wrongly is a door left open or shut."""
    networks = []
    for item in value.split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS: {exc}") from None
    return networks


@dataclass(frozen=True)
class Gate:
    """kaspi.md §C: "No signature: only a source-IP allow-list (configuration) and optionally a
    shared value in data1". The address is the one uvicorn gives as the client's, after
    FORWARDED_ALLOW_IPS let the documented reverse proxy name the real one."""

    networks: list[Network] = field(default_factory=list)
    secret: str = ""

    def address_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone names no other host
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d on a dual-stack socket is the IPv4 client a.b.c.d
        return any(ip in net for net in self.networks if net.version == ip.version)

    def secret_matches(self, data1: list[str] | None) -> bool:
        if not self.secret:
            return True
        if not data1 or len(data1) != 1:
            return False
        return hmac.compare_digest(data1[0].encode("utf-8", "replace"), self.secret.encode("utf-8", "replace"))


# --- the reply ---------------------------------------------------------------------------------

Format = Literal["json", "xml"]
CONTENT_TYPES: dict[str, str] = {
    "json": "application/json; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
}
# The labels of the ``fields`` a successful check shows the payer (kaspi.md §C: "optional fields
# shown to the payer"): who is paid and for what.
FIELD_MERCHANT = "Получатель"
FIELD_DESCRIPTION = "Назначение"

COMMENTS = {
    Result.OK: "OK",
    Result.NOT_FOUND: "account not found",
    Result.CANCELLED: "payment cancelled or expired",
    Result.ALREADY_PAID: "already paid",
    Result.IN_PROGRESS: "payment in progress",
    Result.OTHER_ERROR: "error",
}


@dataclass(frozen=True)
class Reply:
    result: Result
    txn_id: str | None = None  # Kaspi's, echoed
    prv_txn: int | None = None  # our id of the stored pay (pay only)
    amount: int | None = None  # minor units of KZT, written as ``sum``
    comment: str | None = None  # COMMENTS[result] if None
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        return self.comment if self.comment is not None else COMMENTS[self.result]


def forbidden() -> Reply:
    # SPEC.md: refused callers get ``{"result": 5, "comment": "forbidden"}``, nothing echoed.
    return Reply(Result.OTHER_ERROR, comment="forbidden")


def _sum(minor: int) -> str:
    # kaspi.md §C: ``sum=10000.00``; SPEC.md: always two decimals.
    return to_major_str(minor, CURRENCY)


def render(reply: Reply, fmt: Format) -> tuple[bytes, str]:
    """The reply's bytes and Content-Type. kaspi.md §C: "XML or JSON: txn_id, result, sum, comment,
    our id as prv_txn (XML) / prv_txn_id (JSON; send both), optional fields"."""
    return (_json(reply) if fmt == "json" else _xml(reply)), CONTENT_TYPES[fmt]


def _json(reply: Reply) -> bytes:
    # Written by hand: ``sum`` is a number with two decimals (1500.00, SPEC.md), which no float
    # and no JSON encoder writes.
    def text(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    parts = []
    if reply.txn_id is not None:
        parts.append(f'"txn_id": {text(reply.txn_id)}')
    if reply.prv_txn is not None:
        parts.append(f'"prv_txn_id": {int(reply.prv_txn)}')
        parts.append(f'"prv_txn": {int(reply.prv_txn)}')
    parts.append(f'"result": {int(reply.result)}')
    if reply.amount is not None:
        parts.append(f'"sum": {_sum(reply.amount)}')
    parts.append(f'"comment": {text(reply.text)}')
    if reply.fields:
        inner = ", ".join(
            f'"field{i}": {{"name": {text(name)}, "value": {text(value)}}}'
            for i, (name, value) in enumerate(reply.fields, start=1)
        )
        parts.append(f'"fields": {{{inner}}}')
    # A lone surrogate from an old row would not encode: replaced, never a failed reply.
    return ("{" + ", ".join(parts) + "}").encode("utf-8", "replace")


# XML 1.0's characters: anything else (most control characters) may not appear even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: str, *, attribute: bool = False) -> str:
    value = _NOT_XML.sub("\ufffd", value)
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attribute:
        value = value.replace('"', "&quot;").replace("'", "&apos;")
    return value


def _xml(reply: Reply) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<response>']
    if reply.txn_id is not None:
        parts.append(f"<txn_id>{_xml_text(reply.txn_id)}</txn_id>")
    if reply.prv_txn is not None:
        parts.append(f"<prv_txn>{int(reply.prv_txn)}</prv_txn><prv_txn_id>{int(reply.prv_txn)}</prv_txn_id>")
    if reply.amount is not None:
        parts.append(f"<sum>{_sum(reply.amount)}</sum>")
    parts.append(f"<result>{int(reply.result)}</result>")
    parts.append(f"<comment>{_xml_text(reply.text)}</comment>")
    if reply.fields:
        parts.append("<fields>")
        for i, (name, value) in enumerate(reply.fields, start=1):
            parts.append(f'<field{i} name="{_xml_text(name, attribute=True)}">{_xml_text(value)}</field{i}>')
        parts.append("</fields>")
    parts.append("</response>")
    return "".join(parts).encode("utf-8", "replace")


# --- the provider ------------------------------------------------------------------------------


class KaspiBillerProvider:
    """Kaspi calls us (``api.biller``): nothing to start or poll. Holds the endpoint's settings."""

    name: ClassVar[str] = NAME
    pull: ClassVar[bool] = False
    needs_terminal: ClassVar[bool] = False
    max_in_flight: ClassVar[int] = 1
    currencies: ClassVar[tuple[str, ...] | None] = (CURRENCY,)
    poll_every = timedelta(0)  # never polled: Kaspi reports each pay itself
    refunds_refused: str | None = REFUNDS_REFUSED

    def __init__(self, settings: Settings) -> None:
        self.format: Format = settings.kaspi_biller_format
        self.gate = Gate(
            networks=parse_networks(settings.kaspi_biller_allowed_networks),
            secret=reveal(settings.kaspi_biller_secret),
        )

    async def start(self, request: AttemptStart) -> Started:
        raise ProviderError(
            "Kaspi biller payments are paid from the Kaspi app with the payment's account number", retryable=False
        )

    async def poll(self, attempt: AttemptRef) -> PollResult:
        raise ProviderError("Kaspi biller attempts are never polled: Kaspi calls us", retryable=False)

    async def cancel(self, attempt: AttemptRef) -> None:
        return None

    async def refund(self, leg: RefundLegRef) -> RefundOutcome:
        return RefundOutcome(succeeded=False, error=REFUNDS_REFUSED)

    async def poll_refund(self, leg: RefundLegRef) -> RefundOutcome:
        return RefundOutcome(succeeded=False, error=REFUNDS_REFUSED)

    async def close(self) -> None:
        return None
