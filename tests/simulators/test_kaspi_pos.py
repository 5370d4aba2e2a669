"""The Kaspi Smart POS simulator, over real HTTP on loopback (no database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest

from kit.asgi_server import serve
from paycenter.simulators import kaspi_pos as kp
from paycenter.simulators.kaspi_pos import Simulator, create_app

TOKEN = {"T1": "token-T1", "T2": "token-T2", "T3": "token-T3"}
OWN = "the terminal's own token"  # default for `token`: calls carry the terminal's live token


@dataclass
class Pos:
    base: str
    sim: Simulator
    http: httpx.AsyncClient

    async def call(self, terminal: str, path: str, *, token: str | None = OWN, **params: Any) -> tuple[int, dict]:
        token = TOKEN.get(terminal, f"token-{terminal}") if token is OWN else token
        headers = {"accesstoken": token} if token is not None else {}
        r = await self.http.get(f"/terminals/{terminal}{path}", params=params, headers=headers)
        return r.status_code, r.json()

    async def ok(self, terminal: str, path: str, *, token: str | None = OWN, **params: Any) -> dict:
        status, body = await self.call(terminal, path, token=token, **params)
        assert status == 200, body
        assert body["statusCode"] == 0, body
        assert "errorText" not in body
        return body["data"]

    async def error(self, terminal: str, path: str, *, token: str | None = OWN, **params: Any) -> tuple[int, dict]:
        status, body = await self.call(terminal, path, token=token, **params)
        assert body["statusCode"] != 0, body
        assert set(body) == {"statusCode", "errorText"} and body["errorText"], body  # S's error envelope
        return status, body

    async def pay(self, terminal: str, amount: int) -> str:
        data = await self.ok(terminal, "/v2/payment", amount=amount)
        assert isinstance(data["processId"], str) and data["processId"]
        assert data["status"] == "wait"  # kaspi.md §B: an independent client refuses a start without it
        return data["processId"]

    async def status(self, terminal: str, process_id: str) -> dict:
        return await self.ok(terminal, "/v2/status", processId=process_id)

    async def control(self, terminal: str, action: str, expect: int = 200, **body: Any) -> dict:
        r = await self.http.post(f"/_sim/terminals/{terminal}/{action}", json=body)
        assert r.status_code == expect, r.text
        return r.json()

    async def state(self, terminal: str) -> dict:
        r = await self.http.get(f"/_sim/terminals/{terminal}")
        assert r.status_code == 200, r.text
        return r.json()

    async def scan(self, terminal: str, timeout_ms: int) -> dict:
        r = await self.http.get(f"/camera/scan-qr/{terminal}", params={"timeout": timeout_ms})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[str, Simulator]]:
    app = create_app()
    async with serve(app) as base:
        yield base, app.state.sim


@pytest.fixture
async def pos(server: tuple[str, Simulator]) -> AsyncIterator[Pos]:
    base, sim = server
    sim.reset()  # one server for the module; every test starts from idle terminals
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as http:
        yield Pos(base, sim, http)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition with a deadline (the simulator's state changes on the same event loop)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


# -- payments -----------------------------------------------------------------------------------------


async def test_payment_waits_then_succeeds_when_the_payer_confirms(pos: Pos) -> None:
    pid = await pos.pay("T1", 1500)
    data = await pos.status("T1", pid)
    assert data["processId"] == pid
    assert data["status"] == "wait"
    assert data["subStatus"] == kp.SUB_WAIT_USER
    assert set(data) == {"processId", "status", "subStatus"}  # S: no amount, no null keys while waiting
    state = await pos.state("T1")
    assert state["busy"] is True and state["processId"] == pid and state["status"] == "wait"

    confirmed = await pos.control("T1", "confirm", method="kaspi_red")
    assert confirmed["processId"] == pid and confirmed["status"] == "success"

    data = await pos.status("T1", pid)
    assert data["status"] == "success"
    assert data["subStatus"] == kp.SUB_QR_SUCCESS
    assert "amount" not in data  # finished: the amount is in the cheque only (kaspi.md §B, S)
    assert data["transactionId"].isdigit() and data["transactionId"] == confirmed["transactionId"]
    assert data["chequeInfo"]["amount"] == "1500 ₸"
    assert data["chequeInfo"]["method"] == "qr" and data["chequeInfo"]["type"] == "payment"
    assert data["chequeInfo"]["status"] == "Покупка с Kaspi Red. Одобрено"
    assert data["chequeInfo"]["orderNumber"] == data["transactionId"]  # S: a QR's transactionId
    assert data["chequeInfo"]["terminalId"] == pos.sim.terminals["T1"].terminal_id
    assert data["addInfo"] == {"IsOffer": False, "ProductType": "Red", "LoanTerm": 0}

    state = await pos.state("T1")
    assert state["busy"] is False
    assert [op["processId"] for op in state["operations"]] == [pid]
    # The terminal is free again: a new operation gets a new process id and a new transaction id.
    pid2 = await pos.pay("T1", 700)
    assert pid2 != pid
    assert pos.sim.confirm("T1")["transactionId"] != data["transactionId"]


@pytest.mark.parametrize(
    ("method", "product", "term"),
    [
        ("kaspi_gold", "Gold", 0),
        ("kaspi_red", "Red", 0),
        ("kaspi_credit", "Credit", 12),
        ("kaspi_installment_12", "Installment", 12),
        ("kaspi_installment_24", "Installment", 24),
        ("kaspi_kredit", "Credit", 12),
        ("kaspi_rassrochka", "Installment", 12),
    ],
)
async def test_confirm_method_shows_in_add_info(pos: Pos, method: str, product: str, term: int) -> None:
    pid = await pos.pay("T2", 10_000)
    pos.sim.confirm("T2", method=method)
    data = await pos.status("T2", pid)
    assert data["addInfo"] == {"IsOffer": False, "ProductType": product, "LoanTerm": term}
    assert data["chequeInfo"]["method"] == "qr"


async def test_confirm_defaults_to_gold(pos: Pos) -> None:
    pid = await pos.pay("T1", 100)
    await pos.control("T1", "confirm")
    assert (await pos.status("T1", pid))["addInfo"] == {"IsOffer": False, "ProductType": "Gold", "LoanTerm": 0}


async def test_a_card_payment_has_an_rrn_and_can_be_refunded_by_card_only(pos: Pos) -> None:
    """S: a card payment's transactionId is its rrn; the cheque carries the card's mask and the
    authorization code, and (payments only) icc and hostResponseCode."""
    pid = await pos.pay("T1", 900)
    await pos.control("T1", "confirm", chequeMethod="card")
    data = await pos.status("T1", pid)
    assert (data["status"], data["subStatus"]) == ("success", kp.SUB_CARD_SUCCESS)
    cheque = data["chequeInfo"]
    assert cheque["method"] == "card" and cheque["rrn"] == data["transactionId"] and len(cheque["rrn"]) == 12
    assert cheque["cardMask"].startswith("440043******") and len(cheque["authorizationCode"]) == 6
    assert (cheque["icc"], cheque["hostResponseCode"]) == ("Visa Debit", "000")
    assert "orderNumber" not in cheque

    refund = {"amount": 400, "transactionId": data["transactionId"]}
    _, body = await pos.error("T1", "/v2/refund", method="qr", **refund)
    assert body["statusCode"] == kp.ERR_REFUND_METHOD[0]
    rid = (await pos.ok("T1", "/v2/refund", method="card", **refund))["processId"]
    await pos.control("T1", "refund/confirm")
    data = await pos.status("T1", rid)
    assert (data["subStatus"], data["chequeInfo"]["amount"]) == (kp.SUB_CARD_SUCCESS, "- 400 ₸")
    assert data["chequeInfo"]["cardMask"] == cheque["cardMask"] and data["chequeInfo"]["rrn"] != cheque["rrn"]
    assert "icc" not in data["chequeInfo"] and "hostResponseCode" not in data["chequeInfo"]
    await pos.control("T1", "confirm", expect=409, chequeMethod="card")  # nothing to pay
    await pos.pay("T1", 100)
    await pos.control("T1", "confirm", expect=400, chequeMethod="cash")


async def test_payer_pays_a_different_sum(pos: Pos) -> None:
    pid = await pos.pay("T1", 1500)
    await pos.control("T1", "confirm", amount=1000, method="kaspi_gold")
    data = await pos.status("T1", pid)
    assert data["status"] == "success"
    assert "amount" not in data
    assert data["chequeInfo"]["amount"] == "1000 ₸"
    op = (await pos.state("T1"))["operations"][0]
    assert op["amount"] == 1500 and op["paidAmount"] == 1000


async def test_busy_terminal_refuses_a_second_payment_and_cancel_frees_it(pos: Pos) -> None:
    await pos.control("T1", "features", cancel=True)  # the old system's firmware
    pid = await pos.pay("T1", 500)
    _, body = await pos.error("T1", "/v2/payment", amount=800)
    assert (body["statusCode"], body["errorText"]) == (kp.ERR_TERMINAL_BUSY[0], kp.TEXT_BUSY)
    await pos.pay("T2", 800)  # other terminals are independent

    data = await pos.ok("T1", "/v2/cancel", processId=pid)
    assert data["processId"] == pid and data["status"] == "fail"
    data = await pos.status("T1", pid)
    assert data["status"] == "fail" and data["subStatus"] == kp.SUB_CANCELLED
    assert set(data) == {"message", "processId", "status", "subStatus"}  # S's fail
    assert (await pos.state("T1"))["busy"] is False
    # A cancelled operation cannot be cancelled or confirmed again.
    _, body = await pos.error("T1", "/v2/cancel", processId=pid)
    assert body["statusCode"] == kp.ERR_OPERATION_FINISHED[0]
    await pos.control("T1", "confirm", expect=409)
    pid2 = await pos.pay("T1", 800)
    assert pid2 != pid


async def test_cancel_without_process_id_clears_the_terminal(pos: Pos) -> None:
    await pos.control("T3", "features", cancel=True)
    pid = await pos.pay("T3", 500)
    data = await pos.ok("T3", "/v2/cancel")
    assert data["processId"] == pid
    assert (await pos.status("T3", pid))["status"] == "fail"
    assert (await pos.state("T3"))["busy"] is False
    # Clearing an idle terminal is harmless.
    assert (await pos.ok("T3", "/v2/cancel"))["processId"] is None


async def test_a_terminal_without_cancel_answers_404_as_s_does(pos: Pos) -> None:
    """/v2/cancel is in no independent client's contract and S answers 404 (kaspi.md §B)."""
    pid = await pos.pay("T1", 500)
    for params in ({"processId": pid}, {}):
        status, body = await pos.error("T1", "/v2/cancel", **params)
        assert (status, body["statusCode"], body["errorText"]) == (404, 404, kp.TEXT_NO_SUCH_PATH)
    status, body = await pos.error("T1", "/v2/cancel", token=None, processId=pid)
    assert (status, body["statusCode"]) == (401, 401)  # S looks at the token before the path
    status, body = await pos.error("T1", "/v2/reset")  # S's own control, not a terminal call
    assert status == 404
    assert (await pos.status("T1", pid))["status"] == "wait"  # nothing was cancelled


async def test_payer_cancels_at_the_terminal(pos: Pos) -> None:
    pid = await pos.pay("T1", 500)
    await pos.control("T1", "payer-cancel")
    data = await pos.status("T1", pid)
    assert data["status"] == "fail" and data["subStatus"] == kp.SUB_CANCELLED
    assert data["message"] == "Отмена покупки; Покупатель отменил покупку"  # S's text
    assert (await pos.state("T1"))["busy"] is False


async def test_payment_fails(pos: Pos) -> None:
    pid = await pos.pay("T1", 500)
    await pos.control("T1", "fail")
    data = await pos.status("T1", pid)
    assert data["status"] == "fail" and data["subStatus"] == "QrTransactionFailure"
    assert set(data) == {"message", "processId", "status", "subStatus"}
    assert data["message"] == kp.MESSAGE_DECLINED
    assert (await pos.state("T1"))["busy"] is False
    await pos.control("T1", "fail", expect=409)  # nothing in progress any more


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0", kp.TEXT_NOT_POSITIVE),
        ("-5", kp.TEXT_NOT_POSITIVE),
        ("1.5", kp.TEXT_NOT_A_NUMBER),
        ("abc", kp.TEXT_NOT_A_NUMBER),
        ("", kp.TEXT_NOT_A_NUMBER),
        (" 5", kp.TEXT_NOT_A_NUMBER),
        ("1e3", kp.TEXT_NOT_A_NUMBER),
    ],
)
async def test_payment_amount_must_be_a_positive_integer(pos: Pos, amount: str, text: str) -> None:
    _, body = await pos.error("T1", "/v2/payment", amount=amount)
    assert (body["statusCode"], body["errorText"]) == (kp.ERR_INVALID_PARAMETER[0], text)  # S's words
    assert (await pos.state("T1"))["busy"] is False


async def test_payment_without_amount_and_status_of_unknown_process(pos: Pos) -> None:
    _, body = await pos.error("T1", "/v2/payment")
    assert body["statusCode"] == kp.ERR_INVALID_PARAMETER[0]
    _, body = await pos.error("T1", "/v2/status", processId="no-such-process")
    assert body["statusCode"] == kp.ERR_PROCESS_NOT_FOUND[0]
    _, body = await pos.error("T1", "/v2/status")
    assert body["statusCode"] == kp.ERR_INVALID_PARAMETER[0]
    pid = await pos.pay("T1", 100)
    _, body = await pos.error("T2", "/v2/status", processId=pid)  # another terminal's process
    assert body["statusCode"] == kp.ERR_PROCESS_NOT_FOUND[0]


async def test_unknown_status_until_actualize(pos: Pos) -> None:
    pid = await pos.pay("T1", 2500)
    await pos.control("T1", "mode", mode="unknown")
    data = await pos.status("T1", pid)
    assert data == {"message": "Операция отменена", "processId": pid, "status": "unknown", "subStatus": "WaitUser"}
    pos.sim.confirm("T1", method="kaspi_installment_24")
    assert (await pos.status("T1", pid))["status"] == "unknown"  # paid, but the terminal does not know
    assert (await pos.state("T1"))["busy"] is False  # its real state moved on

    data = await pos.ok("T1", "/v2/actualize", processId=pid)
    assert data["status"] == "success" and data["transactionId"]
    assert data["addInfo"] == {"IsOffer": False, "ProductType": "Installment", "LoanTerm": 24}
    assert (await pos.status("T1", pid))["status"] == "success"  # and from now on

    # Operations started while the mode is "unknown" answer unknown too, until actualized.
    pid2 = await pos.pay("T1", 100)
    assert (await pos.status("T1", pid2))["status"] == "unknown"
    assert (await pos.ok("T1", "/v2/actualize", processId=pid2))["status"] == "wait"
    assert (await pos.status("T1", pid2))["status"] == "wait"
    _, body = await pos.error("T1", "/v2/actualize", processId="nope")
    assert body["statusCode"] == kp.ERR_PROCESS_NOT_FOUND[0]

    await pos.control("T1", "mode", mode="normal")
    pid3 = await pos.pay("T2", 100)
    assert (await pos.status("T2", pid3))["status"] == "wait"


async def test_silent_terminal_hangs_until_it_wakes_up(pos: Pos) -> None:
    pid = await pos.pay("T1", 500)
    pos.sim.set_mode("T1", "silent")
    auth = {"accesstoken": TOKEN["T1"]}
    with pytest.raises(httpx.ReadTimeout):
        await pos.http.get("/terminals/T1/v2/status", params={"processId": pid}, headers=auth, timeout=0.3)
    await pos.pay("T2", 100)  # other terminals still answer
    await pos.control("T1", "confirm")  # the payer's side works while the terminal is silent

    pending = asyncio.create_task(
        pos.http.get("/terminals/T1/v2/status", params={"processId": pid}, headers=auth, timeout=10)
    )
    await until(lambda: pos.sim.terminals["T1"].silent_waiters >= 1)
    assert not pending.done()
    await pos.control("T1", "mode", mode="normal")
    r = await asyncio.wait_for(pending, 5)
    assert r.status_code == 200 and r.json()["data"]["status"] == "success"
    await until(lambda: pos.sim.terminals["T1"].silent_waiters == 0)


# -- refunds ------------------------------------------------------------------------------------------


async def paid(pos: Pos, terminal: str, amount: int) -> str:
    pid = await pos.pay(terminal, amount)
    pos.sim.confirm(terminal)
    return (await pos.status(terminal, pid))["transactionId"]


async def test_refund_needs_the_access_token(pos: Pos) -> None:
    txn = await paid(pos, "T1", 1000)
    for token in (None, "", "token-T2", "TOKEN-T1"):
        status, body = await pos.error("T1", "/v2/refund", token=token, method="qr", amount=100, transactionId=txn)
        assert status == 401 and body["statusCode"] == kp.ERR_ACCESS_DENIED[0]
    assert (await pos.state("T1"))["busy"] is False
    assert (await pos.state("T1"))["refunds"] == []


async def test_partial_refunds_confirmed_by_the_customer(pos: Pos) -> None:
    txn = await paid(pos, "T1", 1000)
    refund = {"token": TOKEN["T1"], "method": "qr", "transactionId": txn}

    rid = (await pos.ok("T1", "/v2/refund", amount=600, **refund))["processId"]
    data = await pos.status("T1", rid)
    assert data == {"processId": rid, "status": "wait", "subStatus": kp.SUB_PROCESS_REFUND}
    # A pending refund is an operation: the terminal is busy until the customer answers.
    _, body = await pos.error("T1", "/v2/payment", amount=100)
    assert body["statusCode"] == kp.ERR_TERMINAL_BUSY[0]
    _, body = await pos.error("T1", "/v2/refund", amount=100, **refund)
    assert body["statusCode"] == kp.ERR_TERMINAL_BUSY[0]
    await pos.control("T1", "confirm", expect=409)  # not a payment

    await pos.control("T1", "refund/confirm")
    data = await pos.status("T1", rid)
    assert data["status"] == "success" and "amount" not in data
    assert data["transactionId"] and data["transactionId"] != txn
    assert data["chequeInfo"]["amount"] == "- 600 ₸" and data["chequeInfo"]["method"] == "qr"
    assert (data["chequeInfo"]["type"], data["chequeInfo"]["status"]) == ("refund", "Возврат успешно совершен")
    assert data["addInfo"] == {"IsOffer": False, "ProductType": "Gold", "LoanTerm": 0}  # S: refunds too
    state = await pos.state("T1")
    assert state["busy"] is False
    assert state["operations"][0]["refundedAmount"] == 600 and state["operations"][0]["refundableAmount"] == 400
    assert [(r["processId"], r["status"], r["originalTransactionId"]) for r in state["refunds"]] == [
        (rid, "success", txn)
    ]

    _, body = await pos.error("T1", "/v2/refund", amount=500, **refund)  # only 400 left
    assert body["statusCode"] == kp.ERR_REFUND_EXCEEDS[0]
    assert "400" in body["errorText"]

    # A declined refund gives its amount back.
    rid2 = (await pos.ok("T1", "/v2/refund", amount=400, **refund))["processId"]
    await pos.control("T1", "refund/fail")
    assert (await pos.status("T1", rid2))["status"] == "fail"
    await pos.control("T1", "refund/fail", expect=409)

    rid3 = (await pos.ok("T1", "/v2/refund", amount=400, **refund))["processId"]
    pos.sim.confirm_refund("T1")
    assert (await pos.status("T1", rid3))["status"] == "success"
    _, body = await pos.error("T1", "/v2/refund", amount=1, **refund)
    assert body["statusCode"] == kp.ERR_REFUND_EXCEEDS[0]
    assert pos.sim.terminal("T1")["operations"][0]["refundedAmount"] == 1000


async def test_refund_errors(pos: Pos) -> None:
    txn = await paid(pos, "T1", 1000)
    tok = TOKEN["T1"]
    _, body = await pos.error("T1", "/v2/refund", token=tok, method="qr", amount=1001, transactionId=txn)
    assert body["statusCode"] == kp.ERR_REFUND_EXCEEDS[0]
    _, body = await pos.error("T1", "/v2/refund", token=tok, method="qr", amount=10, transactionId="123")
    assert body["statusCode"] == kp.ERR_TRANSACTION_NOT_FOUND[0]
    _, body = await pos.error("T2", "/v2/refund", token=TOKEN["T2"], method="qr", amount=10, transactionId=txn)
    assert body["statusCode"] == kp.ERR_TRANSACTION_NOT_FOUND[0]  # paid on another terminal
    _, body = await pos.error("T1", "/v2/refund", token=tok, method="card", amount=10, transactionId=txn)
    assert body["statusCode"] == kp.ERR_REFUND_METHOD[0]
    for bad in (
        {"method": "cash", "amount": 10, "transactionId": txn},
        {"method": "qr", "amount": 0, "transactionId": txn},
    ):
        _, body = await pos.error("T1", "/v2/refund", token=tok, **bad)
        assert body["statusCode"] == kp.ERR_INVALID_PARAMETER[0]
    _, body = await pos.error("T1", "/v2/refund", token=tok, method="qr", amount=10)
    assert body["statusCode"] == kp.ERR_INVALID_PARAMETER[0]
    # S's order: the first missing of amount, method, transactionId; then the amount; then the method.
    _, body = await pos.error("T1", "/v2/refund", token=tok, transactionId=txn)
    assert body["errorText"] == "Missing param: amount"
    _, body = await pos.error("T1", "/v2/refund", token=tok, amount=10)
    assert body["errorText"] == "Missing param: method"
    _, body = await pos.error("T1", "/v2/refund", token=tok, method="cash", amount=0, transactionId=txn)
    assert body["errorText"] == kp.TEXT_NOT_POSITIVE
    _, body = await pos.error("T1", "/v2/refund", token=tok, method="cash", amount=10, transactionId=txn)
    assert body["errorText"] == kp.TEXT_BAD_METHOD
    # A failed or unpaid purchase cannot be refunded.
    pid = await pos.pay("T1", 300)
    pos.sim.fail("T1")
    assert pid
    state = await pos.state("T1")
    assert state["refunds"] == [] and state["busy"] is False


async def test_cancel_of_a_pending_refund_gives_the_amount_back(pos: Pos) -> None:
    await pos.control("T2", "features", cancel=True)
    txn = await paid(pos, "T2", 1000)
    rid = (await pos.ok("T2", "/v2/refund", token=TOKEN["T2"], method="qr", amount=1000, transactionId=txn))[
        "processId"
    ]
    await pos.ok("T2", "/v2/cancel", processId=rid)
    assert (await pos.status("T2", rid))["status"] == "fail"
    assert pos.sim.terminal("T2")["operations"][0]["refundableAmount"] == 1000


# -- camera, device info, controls, counters ----------------------------------------------------------


async def test_camera_sees_the_qr_only_while_a_payment_is_in_progress(pos: Pos) -> None:
    await pos.control("T1", "features", cancel=True)
    assert (await pos.scan("T1", 50))["success"] is False

    pid = await pos.pay("T1", 500)
    started = time.monotonic()
    shot = await pos.scan("T1", 10_000)
    assert time.monotonic() - started < 2  # answers at once when the QR is there
    assert shot["success"] is True and shot["qrData"].startswith("https://qr.kaspi.kz/")
    assert (await pos.scan("T1", 10_000))["qrData"] == shot["qrData"]
    assert (await pos.state("T1"))["operations"][0]["qrData"] == shot["qrData"]
    assert (await pos.scan("T2", 0))["success"] is False  # another terminal's screen

    await pos.ok("T1", "/v2/cancel", processId=pid)
    assert (await pos.scan("T1", 50))["success"] is False

    # A camera waiting on an empty screen answers as soon as a payment shows its QR: a new, unique one.
    waiting = asyncio.create_task(pos.scan("T1", 10_000))
    await until(lambda: pos.sim.terminals["T1"].camera_waiters == 1)
    await pos.pay("T1", 700)
    shot2 = await asyncio.wait_for(waiting, 5)
    assert shot2["success"] is True and shot2["qrData"] != shot["qrData"]

    pos.sim.confirm("T1")
    assert (await pos.scan("T1", 50))["success"] is False
    r = await pos.http.get("/camera/scan-qr/NOPE", params={"timeout": 10})
    assert r.status_code == 404 and r.json()["success"] is False


async def test_camera_can_be_switched_off() -> None:
    app = create_app(camera=False)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as http:
        await http.get("/terminals/T1/v2/payment", params={"amount": 10})
        assert (await http.get("/camera/scan-qr/T1", params={"timeout": 10})).status_code == 404


async def test_deviceinfo_needs_the_access_token(pos: Pos) -> None:
    data = await pos.ok("T2", "/v2/deviceinfo", token=TOKEN["T2"])
    assert set(data) == {"posNum", "serialNum", "terminalId"}  # kaspi.md §B, strings
    assert all(isinstance(value, str) and value for value in data.values())
    await pos.pay("T2", 100)
    assert await pos.ok("T2", "/v2/deviceinfo", token=TOKEN["T2"]) == data
    status, body = await pos.error("T2", "/v2/deviceinfo", token=None)
    assert status == 401 and body["statusCode"] == kp.ERR_ACCESS_DENIED[0]
    status, _ = await pos.error("T2", "/v2/deviceinfo", token=TOKEN["T1"])
    assert status == 401


async def test_api_is_get_only_and_unknown_terminals_do_not_answer(pos: Pos) -> None:
    r = await pos.http.post("/terminals/T1/v2/payment", params={"amount": 10})
    assert r.status_code == 405
    status, body = await pos.call("NOPE", "/v2/payment", amount=10)
    assert status == 404 and body["statusCode"] != 0


async def test_controls_reject_what_does_not_apply(pos: Pos) -> None:
    await pos.control("T1", "confirm", expect=409)
    await pos.control("T1", "payer-cancel", expect=409)
    await pos.control("T1", "refund/confirm", expect=409)
    await pos.control("NOPE", "confirm", expect=404)
    assert (await pos.http.get("/_sim/terminals/NOPE")).status_code == 404
    await pos.pay("T1", 100)
    await pos.control("T1", "confirm", expect=400, method="visa")
    await pos.control("T1", "confirm", expect=400, amount=0)
    await pos.control("T1", "confirm", expect=400, amount="100")
    await pos.control("T1", "mode", expect=400, mode="asleep")
    assert (await pos.state("T1"))["status"] == "wait"  # nothing happened
    with pytest.raises(kp.SimulatorError):
        pos.sim.confirm("T1", method="visa")
    with pytest.raises(kp.SimulatorError):
        pos.sim.confirm_refund("T1")


async def test_status_calls_are_counted_and_terminals_can_be_added(pos: Pos) -> None:
    pid = await pos.pay("T1", 100)
    for _ in range(3):
        await pos.status("T1", pid)
    await pos.error("T1", "/v2/status", processId="nope")  # not served
    pos.sim.add_terminal("K9", "token-K9")
    r = await pos.http.post("/_sim/terminals", json={"name": "K10", "token": "token-K10"})
    assert r.status_code == 200
    assert (await pos.http.post("/_sim/terminals", json={"name": "K10", "token": "x"})).status_code == 409
    for name in ("K9", "K10"):
        pid_k = await pos.pay(name, 50)
        await pos.status(name, pid_k)
        assert (await pos.ok(name, "/v2/deviceinfo", token=f"token-{name}"))["serialNum"] == pos.sim.get(name).serial
    assert pos.sim.status_calls == 5
    assert pos.sim.status_calls_by_terminal == {"T1": 3, "K9": 1, "K10": 1}
    stats = (await pos.http.get("/_sim/stats")).json()
    assert stats == {"statusCalls": 5, "statusCallsByTerminal": {"T1": 3, "K9": 1, "K10": 1}}

    assert (await pos.http.post("/_sim/reset")).status_code == 200
    assert pos.sim.status_calls == 0
    state = await pos.state("T1")
    assert state["busy"] is False and state["operations"] == [] and state["processId"] is None
    assert "K10" in pos.sim.terminals  # terminals survive a reset


@pytest.mark.slow  # over 2 s: make test runs it, make test-fast does not
async def test_many_terminals_polled_in_parallel() -> None:
    app = create_app(terminals={})
    sim: Simulator = app.state.sim
    names = [f"P{i}" for i in range(1000)]
    for name in names:
        sim.add_terminal(name, f"tok-{name}")
    async with serve(app) as base, aiohttp.ClientSession(base) as http:

        async def get(name: str, path: str, **params: Any) -> dict:
            async with http.get(f"/terminals/{name}{path}", params=params, headers={"accesstoken": f"tok-{name}"}) as r:
                body = await r.json()
            assert body["statusCode"] == 0, body
            return body["data"]

        pids = [d["processId"] for d in await asyncio.gather(*(get(n, "/v2/payment", amount=100) for n in names))]
        assert len(set(pids)) == len(names)
        for name in names[::2]:
            sim.confirm(name)
        started = time.monotonic()
        answers = await asyncio.gather(*(get(n, "/v2/status", processId=p) for n, p in zip(names, pids, strict=True)))
        elapsed = time.monotonic() - started
    assert [a["status"] for a in answers] == ["success" if i % 2 == 0 else "wait" for i in range(len(names))]
    assert sim.status_calls == len(names)
    assert all(count == 1 for count in sim.status_calls_by_terminal.values())
    assert elapsed < 5, f"1,000 status calls took {elapsed:.2f} s"  # generous: about 0.3 s here


async def test_our_client_reads_a_busy_terminal_as_not_sent(pos: Pos) -> None:
    """107, "previous operation not finished" (every independent client; kaspi.md §B): nothing was
    done, so the payer is offered another terminal. Issue 12: we knew only our own -2, and a busy
    terminal became a provider error."""
    from paycenter.config import Settings
    from paycenter.providers.base import AttemptStart, NotSent, TerminalRef
    from paycenter.providers.kaspi_pos import KaspiPosProvider

    await pos.pay("T1", 500)
    provider = KaspiPosProvider(Settings(database_url="sqlite://", _env_file=None))  # type: ignore[call-arg]
    terminal = TerminalRef(id="trm_1", name="T1", base_url=f"{pos.base}/terminals/T1", access_token=TOKEN["T1"])
    start = AttemptStart(
        attempt_id="att_1", payment_id="P" * 32, amount=80000, currency="KZT", description="", terminal=terminal
    )
    try:
        with pytest.raises(NotSent) as refused:
            await provider.start(start)
    finally:
        await provider.close()
    assert refused.value.code == "busy" and "busy" in refused.value.message


async def test_actualize_answers_only_for_an_unknown_status(pos: Pos) -> None:
    """S answers 103 to /v2/actualize of a known status (kaspi.md §B)."""
    pid = await pos.pay("T1", 500)
    _, body = await pos.error("T1", "/v2/actualize", processId=pid)
    assert body["statusCode"] == kp.ERR_CANNOT_ACTUALIZE[0] == 103
    await pos.control("T1", "mode", mode="unknown")
    assert (await pos.status("T1", pid))["status"] == "unknown"
    assert (await pos.ok("T1", "/v2/actualize", processId=pid))["status"] == "wait"
    await pos.control("T1", "mode", mode="stuck")
    assert (await pos.ok("T1", "/v2/actualize", processId=pid))["status"] == "unknown"
    assert (await pos.ok("T1", "/v2/actualize", processId=pid))["status"] == "unknown"


# -- tokens (kaspi.md §B: /v2/register, /v2/revoke; S with --secure) ---------------------------------


CALLS = {
    "/v2/payment": {"amount": 100},
    "/v2/status": {"processId": "x"},
    "/v2/actualize": {"processId": "x"},
    "/v2/refund": {"method": "qr", "amount": 1, "transactionId": "x"},
    "/v2/deviceinfo": {},
    "/v2/revoke": {"name": "paycenter", "refreshToken": "refresh-token-T1"},
}


@pytest.mark.parametrize("path", list(CALLS))
async def test_every_call_but_register_needs_a_live_token(pos: Pos, path: str) -> None:
    for token in (None, "", "token-T2", "TOKEN-T1", "token-T1x"):
        status, body = await pos.error("T1", path, token=token, **CALLS[path])
        assert (status, body["statusCode"], body["errorText"]) == (401, 401, "Authorization failed")
    await pos.control("T1", "clock", advance=kp.TOKEN_LIFETIME + 1)  # the built token's day is over
    status, body = await pos.error("T1", path, **CALLS[path])
    assert (status, body["statusCode"]) == (401, 401)
    assert (await pos.state("T1"))["busy"] is False  # nothing was done


async def test_register_then_revoke_replaces_the_pair(pos: Pos) -> None:
    pair = await pos.ok("T2", "/v2/register", token=None, name="shop")
    assert set(pair) == {"accessToken", "refreshToken", "expirationDate"}
    # S's format, the terminal's local time without a zone, a day ahead.
    expires = time.strptime(pair["expirationDate"], "%b %d, %Y %H:%M:%S")
    assert 23 * 3600 < time.mktime(expires) - time.mktime(time.gmtime()) - kp.TERMINAL_UTC_OFFSET <= 24 * 3600 + 5
    token, refresh = pair["accessToken"], pair["refreshToken"]
    assert (await pos.ok("T2", "/v2/deviceinfo", token=token))["serialNum"]
    assert (await pos.ok("T2", "/v2/deviceinfo"))["serialNum"]  # other clients' tokens live on

    _, body = await pos.error("T2", "/v2/revoke", token=token, name="other", refreshToken=refresh)
    assert body["statusCode"] == 105
    _, body = await pos.error("T2", "/v2/revoke", token=token, name="shop", refreshToken="refresh-token-T2")
    assert body["statusCode"] == 105
    _, body = await pos.error("T2", "/v2/revoke", token=token, name="shop")
    assert body["statusCode"] == 999
    renewed = await pos.ok("T2", "/v2/revoke", token=token, name="shop", refreshToken=refresh)
    assert renewed["accessToken"] != token and renewed["refreshToken"] != refresh
    status, _ = await pos.error("T2", "/v2/deviceinfo", token=token)
    assert status == 401  # the old token died with the revoke
    assert (await pos.ok("T2", "/v2/deviceinfo", token=renewed["accessToken"]))["serialNum"]
    # An expired token cannot be renewed either (S checks expiry before every call but register).
    await pos.control("T2", "clock", advance=kp.TOKEN_LIFETIME)
    status, _ = await pos.error(
        "T2", "/v2/revoke", token=renewed["accessToken"], name="shop", refreshToken=renewed["refreshToken"]
    )
    assert status == 401
    state = await pos.state("T2")
    assert (state["registerCalls"], state["revokeCalls"], state["liveTokens"]) == (1, 5, 0)


async def test_register_waits_for_the_person_at_the_terminal(pos: Pos) -> None:
    await pos.control("T3", "registration", mode="manual")
    _, body = await pos.error("T3", "/v2/register", token=None)
    assert body["statusCode"] == 999  # no name
    waiting = asyncio.create_task(pos.call("T3", "/v2/register", token=None, name="shop"))
    await until(lambda: pos.sim.terminals["T3"].waiting_registrations != [])
    assert not waiting.done()
    await pos.control("T3", "deny")
    status, body = await asyncio.wait_for(waiting, 5)
    assert body["statusCode"] == kp.ERR_NOT_APPROVED[0] and "data" not in body

    waiting = asyncio.create_task(pos.call("T3", "/v2/register", token=None, name="shop"))
    await until(lambda: pos.sim.terminals["T3"].waiting_registrations != [])
    await pos.control("T3", "approve")
    status, body = await asyncio.wait_for(waiting, 5)
    assert status == 200 and body["data"]["accessToken"]
    await pos.control("T3", "approve", expect=409)  # nobody waits now
