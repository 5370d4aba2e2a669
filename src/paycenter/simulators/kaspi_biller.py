"""Kaspi's side of the biller protocol (kaspi.md section C): a client that calls a merchant's URL as Kaspi does.

In the biller protocol Kaspi is the client: the payer types an account in the Kaspi app, Kaspi sends
``command=check`` to the merchant's URL, then ``command=pay`` once the money is taken, and repeats a
``pay`` with the same ``txn_id`` until it hears a proper answer. ``KaspiBiller`` plays that part over
real HTTP, so paycenter's endpoint (``providers/kaspi_biller.py``) is tested against requests shaped as
Kaspi's are; the scenario methods produce what Kaspi produces on a bad day (a different sum than
``check`` stated, a pay for an account that expired meanwhile, retries, concurrent retries).

    async with KaspiBiller("http://127.0.0.1:8000/kaspi/biller") as kaspi:
        checked = await kaspi.check("123456789")
        paid = await kaspi.pay("123456789", checked.sum)

Kaspi publishes no biller document. Every protocol rule below says where it comes from: kaspi.md §C
(this project's summary) and independent public merchant implementations of the protocol, named
by language and the class or function that holds the rule (read through the code search index;
none of their code is copied):

- [QPay]   pieceowater-dev/QPay-backend, NestJS ``src/kaspiapi/`` (controller notes taken from
           Kaspi's merchant document, request and response DTOs, ``KaspiResult``).
- [Tast]   a Java Vert.x handler in package ``kz.tastamat.payment`` (``PaymentHandler.kaspi``,
           ``PaymentKaspiResponse``: XML ``<response>`` with txn_id, prv_txn, sum, result, comment).
- [Lara]   a Laravel ``App\\Http\\Controllers\\API\\KaspiController::payment`` (JSON replies).
- [Djan]   a Django REST ``BaseKaspiHalykPaymentView`` (JSON replies; Kaspi and Halyk share it).
- [FApi]   a FastAPI ``KaspiPaymentRepository`` with ``KaspiPaymentPayParam`` (JSON replies), and a
           FastAPI "Kaspi Payment API" README (JSON or XML replies, ``fields`` in JSON).
- [Go]     a Go ``KaspiWebHookRequest`` / ``KaspiWebHookResponse`` (module binsabit/jetinno-kapsi, services).
- [KPhp]   a PHP Kaspi handler answering ``["result" => 0, "txn_id", "prv_txn_id", "sum" => round($sum, 2)]``.
- [Node]   a JS ``readKaspiProviderQuery`` validator, and a Node/Jest Kaspi integration test.
- [OSMP]   the QIWI/OSMP provider protocol Kaspi's is derived from, as ABillS' Perl paysys modules
           and other OSMP handlers quote it (``<fields><field1 name="FIO">..</field1></fields>``).

Where they disagree the simulator says so below, and its reply parser accepts every variant.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Literal
from xml.etree import ElementTree as ET
from xml.parsers import expat

import aiohttp

from paycenter.timefmt import ALMATY

# ======================================================================================================
# PROTOCOL: what Kaspi sends and what it reads back; each rule with its sources.
# ======================================================================================================

# GET with the fields in the query string: kaspi.md §C; [QPay] controller ("Интерфейс должен обрабатывать
# параметры, передаваемые системой методом GET"); [Tast], [Lara], [Djan], [FApi], [Go], [Node] read the
# query. SPEC.md also accepts a form POST ("some integrations post"); ``method="POST"`` sends one.
COMMAND_CHECK = "check"
COMMAND_PAY = "pay"

# txn_id: Kaspi's transaction id, at most 20 characters (kaspi.md §C), digits in practice. [Tast] and [Go]
# read it as a 64-bit integer, [Node] as ``^[0-9]{1,18}$``: an id of 18 digits suits all of them.
TXN_ID_MAX = 20
TXN_ID_DIGITS = 18

# txn_date (pay only): ``YYYYMMDDHHMMSS`` (kaspi.md §C; [QPay] "ГГГГММДДЧЧММСС", example 20110101120005;
# [FApi] and [Djan] ``strptime(txn_date, "%Y%m%d%H%M%S")``; [Node] ``^[0-9]{14}$``), Kazakhstan local
# time (kaspi.md §C). [Go] only reads it as an integer; nobody reads an offset.
TXN_DATE_FORMAT = "%Y%m%d%H%M%S"

# sum: decimal major units with a point and two decimals, ``10000.00`` (kaspi.md §C; [QPay] "дробное
# число с точностью до сотых ... «200.00»"; [FApi] README ``sum=200.00``; [Node] accepts 0-2 decimals).
# On check it is a placeholder the merchant ignores ([QPay]: "в запросе check значение в переменной sum
# является фиктивным"; [Lara] does not even require it); OSMP examples send a sum there, others 0.00.
CHECK_SUM_PLACEHOLDER = "0.00"

# Kaspi waits about 15 s for an answer, then drops the connection and repeats the pay with the same
# txn_id (kaspi.md §C; [QPay]: "скорость ответа не должна превышать 15 секунд, в противном случае система
# разрывает соединение по таймауту"). How long Kaspi waits between repeats, and how many it sends, no
# source says: ``retries`` and ``retry_wait`` are the simulator's own.
KASPI_TIMEOUT = 15.0
# Kaspi may hold 10-15 connections at once to one merchant ([QPay]: "многопоточную коммуникацию до 10-15
# одновременных соединений"): concurrent retries of one pay are possible, not only sequential ones.
KASPI_CONNECTIONS = 15

# result codes (kaspi.md §C; [QPay] ``KaspiResult`` 0..5 with the same meanings; [Lara] 0/1/3/5 and [Djan]
# 0/1/3/5 use them alike). [Tast] answers 4 to an empty account, where the others would say 1 or 5.
RESULT_OK = 0
RESULT_NOT_FOUND = 1
RESULT_CANCELLED = 2
RESULT_ALREADY_PAID = 3
RESULT_IN_PROGRESS = 4
RESULT_OTHER_ERROR = 5

# The reply's element names. Our id: ``prv_txn`` ([Tast] XML, [Lara] JSON, [Node] test JSON, OSMP) or
# ``prv_txn_id`` ([QPay] as the typo ``pry_txn_id``, [Djan], [FApi], [Go] in JSON and XML); kaspi.md §C
# says XML uses the first and JSON the second, SPEC.md sends both: a reader takes either. The echo of
# Kaspi's id is ``txn_id`` in every Kaspi handler; OSMP's ``osmp_txn_id`` is read too.
PRV_TXN_NAMES = ("prv_txn", "prv_txn_id")
TXN_ID_NAMES = ("txn_id", "osmp_txn_id")


def format_sum(amount: Decimal | str | int) -> str:
    """``1500`` -> ``"1500.00"``: the sum as Kaspi writes it (see the PROTOCOL notes on ``sum``)."""
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValueError(f"not a sum: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a sum: {amount!r}")
    return f"{value.quantize(Decimal('0.01')):f}"


def format_txn_date(when: datetime) -> str:
    """A moment as Kaspi's ``txn_date``: Almaty wall time; a naive datetime is taken as Almaty's already."""
    local = when.astimezone(ALMATY) if when.tzinfo is not None else when
    return local.strftime(TXN_DATE_FORMAT)


def new_txn_id() -> str:
    """A fresh Kaspi-like transaction id: 18 digits, the first not 0 (see the PROTOCOL notes on ``txn_id``)."""
    low = 10 ** (TXN_ID_DIGITS - 1)
    return str(low + secrets.randbelow(9 * low))


# ======================================================================================================
# The reply
# ======================================================================================================


@dataclass
class Reply:
    """What the merchant answered to one request (the last one sent, when a pay was repeated).

    ``result`` is None when the body could not be read as a reply (no body, not JSON or XML, no result):
    Kaspi treats that as no answer and repeats a pay.
    """

    status: int
    body: bytes
    content_type: str
    result: int | None = None
    txn_id: str | None = None
    prv_txn: str | None = None
    sum: Decimal | None = None
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    attempts: int = 1  # requests sent for this call (1 + the repeats of a pay)

    @property
    def parsed(self) -> bool:
        return self.result is not None

    @property
    def answered(self) -> bool:
        """An answer Kaspi accepts: HTTP 200 and a readable result (anything else makes it repeat a pay)."""
        return self.status == 200 and self.result is not None


class NoReply(Exception):
    """Nothing came back (timeout or a broken connection) on the last of a call's attempts."""

    def __init__(self, message: str, *, attempts: int, last_reply: Reply | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_reply = last_reply


def parse_reply(status: int, body: bytes, content_type: str = "") -> Reply:
    """Read a merchant's reply, JSON or XML, in every variant the public handlers send (never raises).

    JSON or XML by the Content-Type ([Tast], [OSMP] ``text/xml``; [Lara], [Djan] JSON; SPEC.md
    ``application/json`` / ``application/xml``), else by the first character of the body.
    """
    reply = Reply(status=status, body=body, content_type=content_type)
    kind = content_type.split(";", 1)[0].strip().lower()
    head = body.lstrip()[:1]
    try:
        if "json" in kind or (not kind.endswith("xml") and head in (b"{", b"[")):
            _read_json(reply, body)
        elif kind.endswith("xml") or head == b"<":
            _read_xml(reply, body)
    except (ValueError, TypeError, UnicodeDecodeError, expat.ExpatError):
        reply.result = None
    return reply


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()


def _int(value: Any) -> int | None:
    """``result``: a JSON number (every JSON handler) or text (XML; a JSON string is read too)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _sum(value: Any) -> Decimal | None:
    """``sum``: a JSON number ([Tast] a Double, [KPhp] ``round($sum, 2)``, SPEC.md) or a string ([QPay], [Djan],
    [Go], [Node] test ``"500.00"``), XML text. JSON numbers are parsed as Decimal, never through float."""
    text = _text(value)
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _first(data: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        text = _text(data.get(name))
        if text:
            return text
    return None


def _read_json(reply: Reply, body: bytes) -> None:
    data = json.loads(body.decode("utf-8"), parse_float=Decimal)
    if not isinstance(data, dict):
        return
    reply.result = _int(data.get("result"))
    reply.txn_id = _first(data, TXN_ID_NAMES)
    reply.prv_txn = _first(data, PRV_TXN_NAMES)
    reply.sum = _sum(data.get("sum"))
    reply.comment = _text(data.get("comment"))
    reply.fields = _json_fields(data.get("fields"))


def _json_fields(raw: Any) -> dict[str, str]:
    """``fields`` in JSON, which the handlers shape three ways:
    SPEC.md ``{"field1": {"name": "..", "value": ".."}}``; [FApi] README ``{"field1": {"@name": "row",
    "#text": "3"}}`` (an XML-to-dict rendering) or ``{"field1": "row 3"}``; [Lara] ``{"FIO": ".."}``.
    A list of ``{"name", "value"}`` objects is read too. Returned as name -> value."""
    out: dict[str, str] = {}
    items: list[tuple[str, Any]]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(str(i + 1), v) for i, v in enumerate(raw)]
    else:
        return out
    for key, value in items:
        if isinstance(value, dict):
            name = _text(value.get("name")) or _text(value.get("@name")) or key
            text = _text(value.get("value"))
            if text is None:
                text = _text(value.get("#text"))
            out[name] = text or ""
        else:
            out[key] = _text(value) or ""
    return out


def _safe_xml(body: bytes) -> ET.Element:
    """Parse XML with no DTD at all: a body from the network declares no entities to expand (the
    defusedxml rule, done with expat itself since defusedxml is not a dependency)."""

    def refuse(*_: Any) -> Any:
        raise ValueError("a DTD or entity declaration in a reply is refused")

    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(body, True)
    return builder.close()


def _read_xml(reply: Reply, body: bytes) -> None:
    """XML: ``<response>`` with one element per value ([Tast] ``@XmlRootElement(name = "response")``, OSMP),
    ``<fields><field1 name="FIO">..</field1></fields>`` ([OSMP] as ABillS-style Perl paysys modules render
    it; a public Laravel Blade reply template with ``<txn_id>`` the same) -- the value is the text, its
    label the ``name`` attribute (else the tag)."""
    root = _safe_xml(body)
    values = {child.tag: (child.text or "").strip() for child in root if len(child) == 0}
    reply.result = _int(values.get("result"))
    reply.txn_id = _first(values, TXN_ID_NAMES)
    reply.prv_txn = _first(values, PRV_TXN_NAMES)
    reply.sum = _sum(values.get("sum"))
    reply.comment = values.get("comment")
    fields = root.find("fields")
    if fields is not None:
        for child in fields:
            reply.fields[child.get("name") or child.tag] = (child.text or "").strip()


# ======================================================================================================
# The client
# ======================================================================================================


class KaspiBiller:
    """Kaspi calling one merchant URL: ``check``, ``pay`` (repeated with the same ``txn_id`` until answered),
    concurrent repeats, and the scenarios of issue 16. Use as ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        url: str,
        *,
        data1: str | None = None,
        local_address: str | None = None,
        timeout: float = KASPI_TIMEOUT,
        retries: int = 3,
        retry_wait: float = 1.0,
        method: Literal["GET", "POST"] = "GET",
    ) -> None:
        """``retries``: how many times a pay is sent again after an attempt that was not answered (so at
        most ``1 + retries`` requests); ``retry_wait``: seconds between them; ``timeout``: seconds Kaspi
        waits for one answer; ``local_address``: the address requests leave from (a loopback alias such as
        127.0.0.2 plays a source outside the merchant's allow-list); ``data1``: the shared value, sent on
        every request when set (kaspi.md §C: "optionally a shared value in ``data1``")."""
        if retries < 0 or timeout <= 0 or retry_wait < 0:
            raise ValueError("retries and retry_wait must be >= 0, timeout > 0")
        self.url = url
        self.data1 = data1
        self.local_address = local_address
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self.method = method
        self._session: aiohttp.ClientSession | None = None

    # -- plumbing -------------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # concurrent retries must all be in flight at once, however many a test sends
                local_addr=(self.local_address, 0) if self.local_address else None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KaspiBiller:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _params(self, command: str, txn_id: str, account: str, sum_: str, txn_date: str | None) -> dict[str, str]:
        # The order Kaspi's own examples write them (kaspi.md §C; [FApi] README; OSMP examples).
        params = {"command": command, "txn_id": txn_id}
        if txn_date is not None:
            params["txn_date"] = txn_date
        params["account"] = account
        params["sum"] = sum_
        if self.data1 is not None:
            params["data1"] = self.data1
        return params

    async def send(self, params: Mapping[str, str]) -> Reply:
        """One request with exactly these fields (no repeat): for malformed requests in tests.
        Raises ``NoReply`` on a timeout or a broken connection."""
        http = self._http()
        try:
            if self.method == "GET":
                request = http.get(self.url, params=dict(params))
            else:
                request = http.post(self.url, data=dict(params))
            async with request as response:
                body = await response.read()
                return parse_reply(response.status, body, response.headers.get("Content-Type", ""))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NoReply(f"no answer from {self.url}: {exc!r}", attempts=1) from exc

    # -- the protocol ---------------------------------------------------------------------------------

    async def check(self, account: str, *, txn_id: str | None = None) -> Reply:
        """``command=check``: is ``account`` payable, and for how much (the reply's ``sum``). Sent once:
        a check nobody answers shows the payer an error, there is no money to deliver."""
        return await self.send(
            self._params(COMMAND_CHECK, txn_id or new_txn_id(), account, CHECK_SUM_PLACEHOLDER, None)
        )

    async def pay(
        self,
        account: str,
        amount: Decimal | str | int,
        *,
        txn_id: str | None = None,
        txn_date: datetime | str | None = None,
    ) -> Reply:
        """``command=pay``: the money is taken; repeat the same request (same ``txn_id`` and ``txn_date``)
        while the answer is missing, late, not HTTP 200 or unreadable, at most ``retries`` times. Returns
        the first accepted reply, else the last one heard; raises ``NoReply`` when the last attempt heard
        nothing."""
        when = txn_date if isinstance(txn_date, str) else format_txn_date(txn_date or datetime.now(ALMATY))
        params = self._params(COMMAND_PAY, txn_id or new_txn_id(), account, format_sum(amount), when)
        last: Reply | None = None
        for attempt in range(1, self.retries + 2):
            try:
                reply = await self.send(params)
            except NoReply as exc:
                if attempt > self.retries:
                    raise NoReply(str(exc), attempts=attempt, last_reply=last) from exc
            else:
                reply.attempts = attempt
                if reply.answered or attempt > self.retries:
                    return reply
                last = reply
            if self.retry_wait:
                await asyncio.sleep(self.retry_wait)  # Kaspi's pause between repeats, not a test's wait
        raise AssertionError("unreachable")  # pragma: no cover

    async def pay_concurrently(
        self,
        account: str,
        amount: Decimal | str | int,
        txn_id: str,
        n: int = 20,
        *,
        txn_date: datetime | str | None = None,
    ) -> list[Reply]:
        """``n`` copies of one pay in flight at once, as Kaspi's parallel connections may deliver repeats
        (see KASPI_CONNECTIONS): same ``txn_id``, same ``txn_date``. Each copy repeats like ``pay``."""
        when = txn_date if isinstance(txn_date, str) else format_txn_date(txn_date or datetime.now(ALMATY))
        return list(await asyncio.gather(*(self.pay(account, amount, txn_id=txn_id, txn_date=when) for _ in range(n))))

    # -- scenarios (issue 16) -------------------------------------------------------------------------

    async def check_then_pay(self, account: str, *, amount: Decimal | str | None = None) -> tuple[Reply, Reply]:
        """The payer's path: check, then pay what the check said is due (or ``amount``). The pay is sent
        whatever the check said, so a test sees what the merchant does with it."""
        checked = await self.check(account)
        due = amount if amount is not None else checked.sum
        if due is None:
            raise ValueError(f"the check stated no sum to pay: {checked.body[:200]!r}")
        return checked, await self.pay(account, due)

    async def wrong_sum(self, account: str, *, delta: Decimal | str = "1.00") -> tuple[Reply, Reply]:
        """Check, then pay the stated sum plus ``delta`` (negative: less). The money is taken all the same
        (kaspi.md §C: "record under- or over-payment instead of refusing")."""
        checked = await self.check(account)
        if checked.sum is None:
            raise ValueError(f"the check stated no sum to pay: {checked.body[:200]!r}")
        return checked, await self.pay(account, checked.sum + Decimal(str(delta)))

    async def pay_after_expiry(self, account: str, expire: Callable[[], Awaitable[None]]) -> tuple[Reply, Reply]:
        """Check while the account is payable, let ``expire()`` expire or cancel it (the payer was slow),
        then pay what the check stated: late money the merchant must record."""
        checked = await self.check(account)
        if checked.sum is None:
            raise ValueError(f"the check stated no sum to pay: {checked.body[:200]!r}")
        await expire()
        return checked, await self.pay(account, checked.sum)

    async def pay_twice(
        self, account: str, amount: Decimal | str | int, *, txn_id: str | None = None
    ) -> tuple[Reply, Reply]:
        """One pay and then the same pay again (same ``txn_id`` and ``txn_date``), as Kaspi repeats one
        whose answer it lost: the second must get the first reply, byte for byte, and credit nothing."""
        txn_id = txn_id or new_txn_id()
        when = format_txn_date(datetime.now(ALMATY))
        first = await self.pay(account, amount, txn_id=txn_id, txn_date=when)
        return first, await self.pay(account, amount, txn_id=txn_id, txn_date=when)
