"""The Kaspi biller simulator (Kaspi's side: it calls the merchant) against a stub merchant endpoint
served over real HTTP on loopback; the stub records what arrives. No database."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kit.asgi_server import serve
from kit.sink import wait_until
from paycenter.simulators.kaspi_biller import KaspiBiller, NoReply, parse_reply
from paycenter.timefmt import ALMATY

PATH = "/kaspi/biller"
TXN_DATE = re.compile(r"^\d{14}$")


@dataclass
class Seen:
    method: str
    params: dict[str, str]
    client: str
    state: str  # the stub's `state` when the request arrived


@dataclass
class Stub:
    """A merchant endpoint. ``script`` holds how to answer the next requests in turn (then ``default``):
    json, json-str (sum as a string), xml, silent (until ``release``), 500, garbage, entity (XML with a DTD)."""

    due: str = "1500.00"
    script: list[str] = field(default_factory=list)
    default: str = "json"
    state: str = "open"
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    barrier_n: int = 0  # hold each pay until this many are in flight at once
    barrier: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    max_in_flight: int = 0
    remember: bool = False  # a repeated txn_id gets the prv id of its first arrival (the same reply)
    prv_of: dict[str, str] = field(default_factory=dict)
    base: str = ""

    @property
    def url(self) -> str:
        return self.base + PATH

    async def handle(self, request: Request) -> Response:
        if request.method == "POST":
            params = {k: str(v) for k, v in (await request.form()).items()}
        else:
            params = dict(request.query_params)
        assert request.client is not None
        self.seen.append(Seen(request.method, params, request.client.host, self.state))
        mode = self.script.pop(0) if self.script else self.default
        txn = params.get("txn_id", "")
        pay = params.get("command") == "pay"
        prv = self.prv_of.setdefault(txn, str(len(self.seen))) if self.remember else str(len(self.seen))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.barrier_n and pay:
                if self.in_flight >= self.barrier_n:
                    self.barrier.set()
                await self.barrier.wait()
            if mode == "silent":
                await self.release.wait()
        finally:
            self.in_flight -= 1
        if mode == "500":
            return Response("upstream broke", status_code=500, media_type="text/plain")
        if mode == "garbage":
            return Response("<html><body>Bad Gateway", media_type="text/html")
        if mode == "entity":
            body = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "0">]><response><result>&e;</result></response>'
            return Response(body, media_type="application/xml")
        if mode == "xml":
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<response><txn_id>{txn}</txn_id>'
                + (f"<prv_txn>{prv}</prv_txn>" if pay else "")
                + f"<sum>{self.due}</sum><result>0</result><comment>OK</comment>"
                + '<fields><field1 name="Магазин">Demo &amp; Co</field1><field2 name="Заказ">№ 7</field2></fields>'
                + "</response>"
            )
            return Response(body, media_type="application/xml; charset=utf-8")
        sum_: Any = self.due if mode == "json-str" else "@SUM@"
        doc: dict[str, Any] = {"txn_id": txn, "result": 0, "sum": sum_, "comment": "OK"}
        if pay:
            doc["prv_txn_id"] = int(prv)
        else:
            doc["fields"] = {"field1": {"name": "Магазин", "value": "Demo"}}
        text = json.dumps(doc, ensure_ascii=False).replace('"@SUM@"', self.due)  # a JSON number, 2 decimals
        return Response(text, media_type="application/json; charset=utf-8")


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    s = Stub()
    app = Starlette(routes=[Route(PATH, s.handle, methods=["GET", "POST"])])
    async with serve(app) as base:
        s.base = base
        try:
            yield s
        finally:
            s.release.set()
            s.barrier.set()


def biller(stub: Stub, **kw: Any) -> KaspiBiller:
    kw.setdefault("retry_wait", 0)
    return KaspiBiller(stub.url, **kw)


# -- what Kaspi sends ---------------------------------------------------------------------------------


async def test_check_sends_kaspis_fields_and_reads_the_due_sum(stub: Stub) -> None:
    async with biller(stub) as kaspi:
        reply = await kaspi.check("123456789")
    [seen] = stub.seen
    assert seen.method == "GET"
    assert list(seen.params) == ["command", "txn_id", "account", "sum"]
    assert seen.params["command"] == "check"
    assert seen.params["account"] == "123456789"
    assert seen.params["sum"] == "0.00"  # a placeholder on check
    assert re.fullmatch(r"[1-9]\d{17}", seen.params["txn_id"])
    assert reply.status == 200 and reply.result == 0 and reply.attempts == 1
    assert reply.txn_id == seen.params["txn_id"]
    assert reply.sum == Decimal("1500.00")
    assert reply.prv_txn is None
    assert reply.fields == {"Магазин": "Demo"}
    assert reply.content_type.startswith("application/json")


async def test_pay_sends_txn_date_in_almaty_and_sum_with_two_decimals(stub: Stub) -> None:
    async with biller(stub, data1="shared") as kaspi:
        before = datetime.now(ALMATY).replace(microsecond=0, tzinfo=None)
        reply = await kaspi.pay("123456789", Decimal("1500"))
        after = datetime.now(ALMATY).replace(tzinfo=None)
        await kaspi.pay("123456789", "99.5", txn_id="42", txn_date=datetime(2026, 1, 1, tzinfo=UTC))
        await kaspi.pay("123456789", 7, txn_id="43", txn_date="20260102030405")
    first, second, third = stub.seen
    assert list(first.params) == ["command", "txn_id", "txn_date", "account", "sum", "data1"]
    assert first.params["command"] == "pay" and first.params["data1"] == "shared"
    assert first.params["sum"] == "1500.00"
    assert TXN_DATE.match(first.params["txn_date"])
    assert before <= datetime.strptime(first.params["txn_date"], "%Y%m%d%H%M%S") <= after  # Almaty wall time
    assert reply.prv_txn == "1" and reply.result == 0 and reply.sum == Decimal("1500.00")
    assert second.params["sum"] == "99.50" and second.params["txn_id"] == "42"
    assert second.params["txn_date"] == "20260101050000"  # midnight UTC is 05:00 in Almaty (UTC+5)
    assert third.params["sum"] == "7.00" and third.params["txn_date"] == "20260102030405"


async def test_fresh_txn_ids_differ_and_fit_20_characters(stub: Stub) -> None:
    async with biller(stub) as kaspi:
        for _ in range(5):
            await kaspi.pay("1", "1")
    ids = {s.params["txn_id"] for s in stub.seen}
    assert len(ids) == 5 and all(len(i) <= 20 and i.isdigit() for i in ids)


async def test_post_sends_the_same_fields_as_a_form(stub: Stub) -> None:
    async with biller(stub, method="POST") as kaspi:
        await kaspi.pay("77", "10", txn_id="9")
    [seen] = stub.seen
    assert seen.method == "POST"
    assert seen.params["command"] == "pay" and seen.params["txn_id"] == "9" and seen.params["sum"] == "10.00"


async def test_local_address_is_the_source_the_merchant_sees(stub: Stub) -> None:
    async with biller(stub, local_address="127.0.0.2") as outside, biller(stub) as inside:
        await outside.check("1")
        await inside.check("1")
    assert [s.client for s in stub.seen] == ["127.0.0.2", "127.0.0.1"]


# -- repeats ------------------------------------------------------------------------------------------


async def test_pay_repeats_the_same_request_after_silence_past_the_timeout(stub: Stub) -> None:
    stub.script = ["silent", "json"]
    async with biller(stub, timeout=0.5, retries=2) as kaspi:
        started = time.monotonic()
        reply = await kaspi.pay("123", "1500.00")
        took = time.monotonic() - started
    assert reply.answered and reply.attempts == 2
    first, second = stub.seen
    assert first.params == second.params  # same txn_id, same txn_date, same sum
    assert took >= 0.5  # the repeat came after the timeout, not before


@pytest.mark.parametrize("bad", ["500", "garbage", "entity"])
async def test_pay_repeats_after_a_non_200_or_unreadable_answer(stub: Stub, bad: str) -> None:
    stub.script = [bad, bad, "json"]
    async with biller(stub, retries=3) as kaspi:
        reply = await kaspi.pay("123", "10")
    assert reply.answered and reply.attempts == 3
    assert len(stub.seen) == 3 and len({json.dumps(s.params, sort_keys=True) for s in stub.seen}) == 1


async def test_pay_gives_up_after_its_retries_with_the_last_answer(stub: Stub) -> None:
    stub.default = "500"
    async with biller(stub, retries=2) as kaspi:
        reply = await kaspi.pay("123", "10")
    assert reply.status == 500 and reply.result is None and reply.attempts == 3
    assert len(stub.seen) == 3


async def test_pay_that_hears_nothing_at_all_raises_no_reply(stub: Stub) -> None:
    stub.default = "silent"
    async with biller(stub, timeout=0.3, retries=1) as kaspi:
        with pytest.raises(NoReply) as caught:
            await kaspi.pay("123", "10")
    assert caught.value.attempts == 2
    await wait_until(lambda: len(stub.seen) == 2, timeout=5, what="both attempts at the stub")


async def test_check_is_sent_once_whatever_the_answer(stub: Stub) -> None:
    stub.script = ["500"]
    async with biller(stub, retries=3) as kaspi:
        reply = await kaspi.check("123")
    assert reply.status == 500 and reply.attempts == 1 and len(stub.seen) == 1


async def test_concurrent_repeats_are_in_flight_at_once(stub: Stub) -> None:
    stub.barrier_n = 20  # nobody is answered until all 20 have arrived: sequential sending would time out
    async with biller(stub, timeout=10, retries=0) as kaspi:
        replies = await kaspi.pay_concurrently("123", "1500", "555", n=20)
    assert len(replies) == 20 and all(r.answered and r.attempts == 1 for r in replies)
    assert stub.max_in_flight == 20 and len(stub.seen) == 20
    assert {json.dumps(s.params, sort_keys=True) for s in stub.seen} == {
        json.dumps(stub.seen[0].params, sort_keys=True)
    }
    assert stub.seen[0].params["txn_id"] == "555"


# -- scenarios ----------------------------------------------------------------------------------------


async def test_check_then_pay_pays_what_the_check_stated(stub: Stub) -> None:
    stub.due = "2500.50"
    async with biller(stub) as kaspi:
        checked, paid = await kaspi.check_then_pay("123")
    assert checked.sum == Decimal("2500.50") and paid.answered
    assert [s.params["command"] for s in stub.seen] == ["check", "pay"]
    assert stub.seen[1].params["sum"] == "2500.50"


@pytest.mark.parametrize(("delta", "sent"), [("1.00", "1501.00"), ("-0.50", "1499.50")])
async def test_wrong_sum_pays_more_or_less_than_checked(stub: Stub, delta: str, sent: str) -> None:
    async with biller(stub) as kaspi:
        await kaspi.wrong_sum("123", delta=delta)
    assert stub.seen[1].params["sum"] == sent


async def test_pay_after_expiry_pays_after_the_account_expired(stub: Stub) -> None:
    async def expire() -> None:
        stub.state = "expired"

    async with biller(stub) as kaspi:
        await kaspi.pay_after_expiry("123", expire)
    assert [(s.params["command"], s.state) for s in stub.seen] == [("check", "open"), ("pay", "expired")]
    assert stub.seen[1].params["sum"] == "1500.00"


async def test_pay_twice_sends_the_same_pay_again(stub: Stub) -> None:
    async with biller(stub) as kaspi:
        first, second = await kaspi.pay_twice("123", "10")
    assert stub.seen[0].params == stub.seen[1].params
    assert first.answered and second.answered


# -- reading replies ----------------------------------------------------------------------------------


async def test_xml_reply_over_http(stub: Stub) -> None:
    stub.default = "xml"
    async with biller(stub) as kaspi:
        reply = await kaspi.pay("123", "1500", txn_id="77")
    assert reply.result == 0 and reply.txn_id == "77" and reply.prv_txn == "1"
    assert reply.sum == Decimal("1500.00") and reply.comment == "OK"
    assert reply.fields == {"Магазин": "Demo & Co", "Заказ": "№ 7"}


async def test_sum_as_a_json_string_over_http(stub: Stub) -> None:
    stub.default = "json-str"
    stub.due = "0.10"
    async with biller(stub) as kaspi:
        reply = await kaspi.check("123")
    assert b'"sum": "0.10"' in reply.body and reply.sum == Decimal("0.10")


def test_sum_as_a_json_number_keeps_its_decimals() -> None:
    reply = parse_reply(200, b'{"result": 0, "sum": 0.1, "prv_txn": 5}', "application/json")
    assert reply.sum == Decimal("0.1") and str(reply.sum) == "0.1"  # not float's 0.1000000000000000055
    assert reply.prv_txn == "5"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"field1": {"name": "FIO", "value": "Ivan"}}, {"FIO": "Ivan"}),  # SPEC.md
        ({"field1": {"@name": "row", "#text": "3"}}, {"row": "3"}),  # XML-to-dict rendering
        ({"field1": "row 3"}, {"field1": "row 3"}),
        ({"FIO": "Ivan"}, {"FIO": "Ivan"}),  # flat
        ([{"name": "FIO", "value": "Ivan"}], {"FIO": "Ivan"}),
    ],
)
def test_json_fields_in_every_shape(fields: Any, expected: dict[str, str]) -> None:
    body = json.dumps({"result": 0, "fields": fields}).encode()
    assert parse_reply(200, body, "application/json").fields == expected


@pytest.mark.parametrize(
    "body",
    [
        b"<response><osmp_txn_id>9</osmp_txn_id><prv_txn_id>4</prv_txn_id><result>3</result></response>",
        b'{"osmp_txn_id": 9, "prv_txn_id": "4", "result": "3"}',
    ],
)
def test_either_id_name_and_result_as_text(body: bytes) -> None:
    reply = parse_reply(200, body)  # no content type: told apart by the first character
    assert (reply.txn_id, reply.prv_txn, reply.result) == ("9", "4", 3)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"OK",
        b"{not json",
        b"[1, 2]",
        b'{"result": true}',
        b"<response><result>zero</result></response>",
        b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><response><result>0</result><c>&e;</c></response>',
    ],
)
def test_unreadable_replies_have_no_result(body: bytes) -> None:
    assert parse_reply(200, body, "").result is None


def test_txn_date_of_a_naive_datetime_is_taken_as_almaty_wall_time() -> None:
    from paycenter.simulators.kaspi_biller import format_txn_date

    assert format_txn_date(datetime(2026, 3, 4, 5, 6, 7)) == "20260304050607"
    aware = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC) + timedelta(hours=1)
    assert format_txn_date(aware) == "20260304110607"


# -- the command: paycenter simulate kaspi-biller -----------------------------------------------------


async def simulate(*args: str) -> tuple[int, str]:
    """Run ``paycenter simulate kaspi-biller ARGS`` as a process; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("paycenter")),
        "simulate",
        "kaspi-biller",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_cli_happy_checks_then_pays_the_stated_sum(stub: Stub) -> None:
    stub.due = "2500.00"
    code, out = await simulate("--url", stub.url, "--account", "123456789", "--data1", "s3")
    assert code == 0, out
    assert [s.params["command"] for s in stub.seen] == ["check", "pay"]
    assert stub.seen[1].params["sum"] == "2500.00" and stub.seen[1].params["data1"] == "s3"
    assert "check: HTTP 200 result=0" in out and "pay: HTTP 200 result=0" in out
    assert '"prv_txn_id": 2' in out  # the raw reply is printed


async def test_cli_amount_and_local_address(stub: Stub) -> None:
    code, out = await simulate("--url", stub.url, "--account", "1", "--amount", "10", "--local-address", "127.0.0.2")
    assert code == 0, out
    assert stub.seen[1].params["sum"] == "10.00"
    assert {s.client for s in stub.seen} == {"127.0.0.2"}


@pytest.mark.parametrize(("remember", "code", "says"), [(True, 0, "same reply"), (False, 1, "DIFFERENT")])
async def test_cli_retries_sends_concurrent_copies_and_compares_their_replies(
    stub: Stub, remember: bool, code: int, says: str
) -> None:
    stub.remember = remember
    stub.barrier_n = 5  # no copy is answered before all 5 are in flight
    got, out = await simulate("--url", stub.url, "--account", "1", "--scenario", "retries", "--concurrent", "5")
    assert got == code, out
    assert says in out
    pays = [s for s in stub.seen if s.params["command"] == "pay"]
    assert len(pays) == 5 and all(p.params == pays[0].params for p in pays)
    assert stub.max_in_flight == 5


async def test_cli_retries_concurrency_is_real(stub: Stub) -> None:
    # A third copy never comes, so the two are held past the timeout: the barrier bites (without repeats,
    # which a held request would count towards the barrier).
    stub.barrier_n = 3
    code, out = await simulate(
        "--url", stub.url, "--account", "1", "--scenario", "retries", "--concurrent", "2", "--timeout", "0.5",
        "--retries", "0",
    )  # fmt: skip
    assert code == 1 and "no answer" in out, out
    assert [s.params["command"] for s in stub.seen] == ["check", "pay", "pay"]


async def test_cli_wrong_sum_and_twice(stub: Stub) -> None:
    code, out = await simulate("--url", stub.url, "--account", "1", "--scenario", "wrong-sum", "--delta", "-0.50")
    assert code == 0, out
    assert stub.seen[1].params["sum"] == "1499.50"
    stub.seen.clear()
    stub.remember = True
    code, out = await simulate("--url", stub.url, "--account", "1", "--scenario", "twice")
    assert code == 0, out
    assert [s.params["command"] for s in stub.seen] == ["check", "pay", "pay"]
    assert stub.seen[1].params == stub.seen[2].params
    assert "2 replies, 1 distinct bodies" in out


async def test_cli_reports_silence_and_refusals(stub: Stub) -> None:
    stub.default = "silent"
    code, out = await simulate("--url", stub.url, "--account", "1", "--timeout", "0.3", "--retries", "0")
    assert code == 1 and "no answer" in out, out
    stub.default = "500"
    code, out = await simulate("--url", stub.url, "--account", "1", "--amount", "5", "--retries", "1")
    assert code == 1 and "HTTP 500" in out, out
    assert [s.params["command"] for s in stub.seen[-3:]] == ["check", "pay", "pay"]  # the pay was repeated


async def test_cli_bad_arguments() -> None:
    code, out = await simulate("--account", "1")
    assert code == 2 and "--url" in out
    code, out = await simulate("--url", "http://127.0.0.1:9/x", "--account", "1", "--scenario", "nope")
    assert code == 2 and "happy" in out
    code, out = await simulate("--url", "http://127.0.0.1:9/x", "--account", "1", "--amount", "abc")
    assert code == 1 and "not a sum" in out
