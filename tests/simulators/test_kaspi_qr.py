"""The Kaspi QR simulator over real HTTP on loopback: the protocol of kaspi.md section A, its error codes,
and the controls tests and benchmarks drive it with."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kit.asgi_server import serve
from paycenter.simulators import kaspi_qr
from paycenter.simulators.kaspi_qr import Simulator, SimulatorError, create_app

API_KEY = "test-api-key"
BIN = "123456789012"
T0 = datetime(2025, 3, 1, 7, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class Kaspi:
    """A minimal client for one scheme: adds the Api-Key (r1) or the OrganizationBin (r3)."""

    def __init__(self, http: httpx.AsyncClient, scheme: str, *, api_key: str = API_KEY, bin_: str = BIN) -> None:
        self.http, self.scheme, self.api_key, self.bin = http, scheme, api_key, bin_

    def _headers(self) -> dict[str, str]:
        return {"Api-Key": self.api_key} if self.scheme == "r1" else {}

    async def get(self, path: str, version: str = "v01", **params: Any) -> dict[str, Any]:
        if self.scheme == "r3" and path == "partner/tradepoints":
            path = f"partner/tradepoints/{self.bin}"  # r3's form; its other GETs carry no BIN
        r = await self.http.get(f"/{self.scheme}/{version}/{path}", params=params, headers=self._headers())
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, path: str, body: dict[str, Any], version: str = "v01") -> dict[str, Any]:
        if self.scheme == "r3":
            body = {"OrganizationBin": self.bin, **body}
        r = await self.http.post(f"/{self.scheme}/{version}/{path}", json=body, headers=self._headers())
        assert r.status_code == 200, r.text
        return r.json()

    async def register(self, device_id: str = "till-1", trade_point_id: int = 1) -> str:
        answer = await self.post("device/register", {"DeviceId": device_id, "TradePointId": trade_point_id})
        assert answer["StatusCode"] == 0, answer
        token = answer["Data"]["DeviceToken"]
        assert isinstance(token, str) and token
        return token

    async def create(self, token: str, amount: Any = 1000, external_id: str = "order-1") -> dict[str, Any]:
        answer = await self.post("qr/create", {"DeviceToken": token, "Amount": amount, "ExternalId": external_id})
        assert answer["StatusCode"] == 0, answer
        return answer["Data"]

    async def status(self, payment_id: Any, version: str = "v01") -> dict[str, Any]:
        answer = await self.get(f"payment/status/{payment_id}", version=version)
        assert answer["StatusCode"] == 0, answer
        return answer["Data"]


async def _request_id(request: httpx.Request) -> None:
    # Every request to Kaspi carries its own X-Request-ID (kaspi-qr-api.md §2); a test that means
    # to leave it out sends the header empty.
    if "X-Request-ID" not in request.headers:
        request.headers["X-Request-ID"] = uuid.uuid4().hex
    elif not request.headers["X-Request-ID"]:
        del request.headers["X-Request-ID"]


@asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    app = create_app(**kwargs)
    hooks = {"request": [_request_id]}
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10, event_hooks=hooks) as http:
        yield app.state.sim, http


async def test_every_request_needs_its_own_request_id() -> None:
    async with running() as (sim, http):
        token = sim.register_device()
        body = {"DeviceToken": token, "Amount": 100, "ExternalId": "x"}
        r = await http.post("/r2/v01/qr/create", json=body, headers={"X-Request-ID": ""})
        assert r.status_code == 200 and r.json()["StatusCode"] != 0 and "X-Request-ID" in r.json()["Message"]
        assert sim.payments() == [] and sim.stats()["RequestIdsMissing"] == 1
        ok((await http.post("/r2/v01/qr/create", json=body)).json())
        repeated = {"X-Request-ID": "0" * 32}
        for _ in range(2):
            await http.get("/r2/v01/partner/tradepoints", headers=repeated)
        assert sim.stats()["RequestIdsRepeated"] == 1


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert set(answer) == {"StatusCode", "Message", "Data"}, answer
    assert answer["StatusCode"] == 0, answer
    return answer["Data"]


def error(answer: dict[str, Any], code: int) -> None:
    assert set(answer) == {"StatusCode", "Message", "Data"}, answer
    assert answer["StatusCode"] == code, answer
    assert answer["Data"] is None and answer["Message"]


def emulated(answer: dict[str, Any], code: int = 0) -> None:
    """The test host's emulator answers {StatusCode, message}: lower-case, no Data (kaspi-qr-api.md §3)."""
    assert set(answer) == {"StatusCode", "message"}, answer
    assert answer["StatusCode"] == code and answer["message"], answer


def amounts(details: dict[str, Any]) -> tuple[Any, Any]:
    return details["TotalAmount"], details["AvailableReturnAmount"]


@pytest.mark.parametrize("scheme", ["r1", "r2", "r3"])
async def test_happy_path(scheme: str) -> None:
    clock = Clock()
    async with running(clock=clock, polling_interval=2, qr_lifetime=300) as (sim, http):
        kaspi = Kaspi(http, scheme)
        assert ok(await kaspi.get("partner/tradepoints")) == [{"TradePointId": 1, "TradePointName": "Main shop"}]
        token = await kaspi.register()
        assert await kaspi.register() == token  # the same device again: the same token

        qr = await kaspi.create(token, amount=1500, external_id="order-42")
        assert set(qr) == {"QrToken", "ExpireDate", "QrPaymentId", "PaymentMethods", "QrPaymentBehaviorOptions"}
        assert isinstance(qr["QrToken"], str) and qr["QrToken"]
        assert isinstance(qr["QrPaymentId"], int)
        assert qr["PaymentMethods"] == ["Gold", "Red", "Loan"]
        assert qr["QrPaymentBehaviorOptions"] == {
            "StatusPollingInterval": 2,
            "QrCodeScanWaitTimeout": 180,
            "PaymentConfirmationTimeout": 65,
        }
        assert qr["ExpireDate"] == "2025-03-01T12:05:00.000+05:00"  # T0 + 300 s in Almaty time, with milliseconds
        assert datetime.fromisoformat(qr["ExpireDate"]) == T0 + timedelta(seconds=300)
        pid = qr["QrPaymentId"]

        assert await kaspi.status(pid) == {"Status": "QrTokenCreated"}
        assert await kaspi.status(pid, "v02") == {
            "Status": "QrTokenCreated",
            "TransactionId": None,
            "ProductType": None,
            "LoanTerm": None,
            "Amount": 1500,
            "StoreName": "Main shop",
        }

        r = await http.post(f"/_sim/payments/{pid}/scan")
        assert r.status_code == 200 and r.json()["Status"] == "Wait"
        assert await kaspi.status(pid) == {"Status": "Wait"}

        r = await http.post(f"/_sim/payments/{pid}/confirm", json={})
        assert r.status_code == 200, r.text
        v2 = await kaspi.status(pid, "v02")
        assert v2["Status"] == "Processed"
        assert isinstance(v2["TransactionId"], str) and v2["TransactionId"]
        assert (v2["Amount"], v2["ProductType"], v2["LoanTerm"], v2["StoreName"]) == (1500, "Gold", None, "Main shop")
        assert await kaspi.status(pid) == {"Status": "Processed"}

        (listed,) = (await http.get("/_sim/payments")).json()
        assert listed["QrPaymentId"] == pid
        assert listed["ExternalId"] == "order-42"
        assert (listed["Amount"], listed["PaidAmount"], listed["Returned"]) == (1500, 1500, 0)
        assert (listed["Status"], listed["ProductType"], listed["TransactionId"]) == (
            "Processed",
            "Gold",
            v2["TransactionId"],
        )
        assert listed["Customer"] == kaspi_qr.DEFAULT_CUSTOMER
        assert sim.payments() == [listed]


async def test_r3_refunds_directly() -> None:
    """r3: payment/details, then payment/return with OrganizationBin and no customer (kaspi-qr-api.md §5)."""
    clock = Clock()
    async with running(clock=clock) as (sim, http):
        kaspi = Kaspi(http, "r3")
        token = await kaspi.register()
        pid = (await kaspi.create(token, amount=1500))["QrPaymentId"]
        sim.scan(pid)
        # Not paid yet: no refund.
        error(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 1}), -99000011)
        sim.confirm(pid)

        details = ok(await kaspi.get("payment/details", QrPaymentId=pid, DeviceToken=token))
        assert details == {
            "QrPaymentId": pid,
            "TotalAmount": 1500,
            "AvailableReturnAmount": 1500,
            "TransactionDate": "2025-03-01T12:00:00.000+05:00",  # with milliseconds, as Kaspi writes it
        }
        first = ok(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 500}))
        assert isinstance(first["ReturnOperationId"], int)
        details = ok(await kaspi.get("payment/details", QrPaymentId=pid, DeviceToken=token))
        assert (details["TotalAmount"], details["AvailableReturnAmount"]) == (1500, 1000)
        error(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 1001}), -99000005)
        rest = ok(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 1000}))
        assert rest["ReturnOperationId"] != first["ReturnOperationId"]
        assert ok(await kaspi.get("payment/details", QrPaymentId=pid, DeviceToken=token))["AvailableReturnAmount"] == 0
        error(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 1}), -99000005)
        assert sim.payments()[0]["Returned"] == 1500
        # QrPaymentId is an Int64: a JSON number, not the id as a string (kaspi-qr-api.md §2).
        as_text = {"DeviceToken": token, "QrPaymentId": str(pid), "Amount": 1}
        error(await kaspi.post("payment/return", as_text), kaspi_qr.ERR_BAD_REQUEST)

        # r3's payment/return has no QrReturnId (§3: its body is DeviceToken, QrPaymentId, Amount,
        # OrganizationBin), and no return QR calls exist on r3.
        other = (await kaspi.create(token))["QrPaymentId"]
        sim.confirm(other)
        body = {"DeviceToken": token, "QrPaymentId": other, "Amount": 1, "QrReturnId": 1}
        error(await kaspi.post("payment/return", body), kaspi_qr.ERR_BAD_REQUEST)
        for path in ("return/create", "return/operations"):
            r = await http.post(f"/r3/v01/{path}", json={"OrganizationBin": BIN, "DeviceToken": token})
            assert r.status_code == 404, path
        assert (await http.get("/r3/v01/return/status/1")).status_code == 404
        assert sim.payment(other).returned == 0


async def test_r1_has_no_refund_calls() -> None:
    """r1: "Refunds by API: none" (kaspi-qr-api.md §1); the cashier refunds in the Kaspi Pay app."""
    async with running() as (sim, http):
        token = sim.register_device()
        kaspi = Kaspi(http, "r1")
        pid = (await kaspi.create(token))["QrPaymentId"]
        sim.confirm(pid)
        headers = {"Api-Key": API_KEY}
        calls = [
            http.get("/r1/v01/payment/details", params={"QrPaymentId": pid, "DeviceToken": token}, headers=headers),
            http.post(
                "/r1/v01/payment/return", json={"DeviceToken": token, "QrPaymentId": pid, "Amount": 1}, headers=headers
            ),
            http.post("/r1/v01/return/create", json={"DeviceToken": token}, headers=headers),
            http.get("/r1/v01/return/status/1", headers=headers),
            http.post("/r1/v01/return/operations", json={"DeviceToken": token, "QrReturnId": 1}, headers=headers),
        ]
        for call in calls:
            r = await call
            assert r.status_code == 404 and r.json()["StatusCode"] != 0, r.request.url
        assert sim.payment(pid).returned == 0 and sim.returns() == []


async def test_r2_refunds_through_a_return_qr_the_customer_scans() -> None:
    """r2 (kaspi-qr-api.md §5): return/create -> the customer scans -> return/status says
    CustomerIdentityObtained -> return/operations lists their latest purchases (MaxResult <= 10)
    -> payment/details -> payment/return with QrReturnId."""
    clock = Clock()
    async with running(clock=clock, polling_interval=5, scan_wait_timeout=180, qr_lifetime=300) as (sim, http):
        kaspi = Kaspi(http, "r2")
        token = await kaspi.register()
        bought = []
        for amount in range(100, 1300, 100):  # twelve purchases of one customer, a minute apart
            pid = (await kaspi.create(token, amount=amount))["QrPaymentId"]
            sim.confirm(pid)
            bought.append(pid)
            clock.advance(minutes=1)
        strangers = (await kaspi.create(token, amount=700))["QrPaymentId"]
        sim.confirm(strangers, customer="someone-else")
        newest, oldest = bought[-1], bought[0]

        # Without a return QR, payment/return is refused on r2.
        plain = {"DeviceToken": token, "QrPaymentId": newest, "Amount": 100}
        error(await kaspi.post("payment/return", plain), kaspi_qr.ERR_BAD_REQUEST)

        created = ok(await kaspi.post("return/create", {"DeviceToken": token, "ExternalId": "rfl_1"}))
        assert set(created) == {"QrToken", "ExpireDate", "QrReturnId", "QrReturnBehaviorOptions"}
        assert isinstance(created["QrReturnId"], int) and created["QrToken"].isdigit()
        assert created["QrReturnBehaviorOptions"] == {"QrCodeScanEventPollingInterval": 5, "QrCodeScanWaitTimeout": 180}
        assert datetime.fromisoformat(created["ExpireDate"]) == clock.now + timedelta(seconds=300)
        rid = created["QrReturnId"]
        assert ok(await kaspi.get(f"return/status/{rid}")) == {"Status": "QrTokenCreated"}
        ask = {"DeviceToken": token, "QrReturnId": rid}
        # Not scanned yet: no customer, no operations, no return with it.
        error(await kaspi.post("return/operations", ask), kaspi_qr.ERR_WRONG_STATUS)
        error(await kaspi.post("payment/return", {**plain, "QrReturnId": rid}), kaspi_qr.ERR_WRONG_STATUS)

        r = await http.post(f"/_sim/returns/{rid}/scan", json={})
        assert r.status_code == 200 and r.json()["Status"] == "CustomerIdentityObtained", r.text
        assert r.json()["ExternalId"] == "rfl_1" and r.json()["Customer"] == kaspi_qr.DEFAULT_CUSTOMER
        assert ok(await kaspi.get(f"return/status/{rid}")) == {"Status": "CustomerIdentityObtained"}
        assert (await http.post(f"/_sim/returns/{rid}/scan", json={})).status_code == 409  # final

        listed = ok(await kaspi.post("return/operations", ask))
        assert [x["QrPaymentId"] for x in listed] == bought[::-1][:10]  # newest first, at most 10
        assert listed[0] == {
            "QrPaymentId": newest,
            "Amount": 1200,
            "TransactionDate": wire(T0 + timedelta(minutes=11)),
        }
        assert len(ok(await kaspi.post("return/operations", {**ask, "MaxResult": 50}))) == 10
        three = ok(await kaspi.post("return/operations", {**ask, "MaxResult": 3}))
        assert [x["QrPaymentId"] for x in three] == bought[::-1][:3]
        for bad in (0, -1, "3", True):
            error(await kaspi.post("return/operations", {**ask, "MaxResult": bad}), kaspi_qr.ERR_BAD_REQUEST)
        error(await kaspi.post("return/operations", {**ask, "QrReturnId": str(rid)}), kaspi_qr.ERR_BAD_REQUEST)

        details = ok(await kaspi.get("payment/details", QrPaymentId=newest, DeviceToken=token))
        assert details["AvailableReturnAmount"] == 1200
        done = ok(await kaspi.post("payment/return", {**plain, "QrReturnId": rid}))
        assert isinstance(done["ReturnOperationId"], int)
        assert sim.payment(newest).returned == 100
        assert sim.describe_return(sim.return_qr(rid))["Returns"] == [
            {"ReturnOperationId": done["ReturnOperationId"], "QrPaymentId": newest}
        ]
        # Only the scanning customer's latest ten: not a stranger's purchase, not their eleventh.
        for pid in (strangers, oldest, bought[1]):
            body = {"DeviceToken": token, "QrPaymentId": pid, "Amount": 1, "QrReturnId": rid}
            error(await kaspi.post("payment/return", body), -99000001)
        assert sim.payment(strangers).returned == sim.payment(oldest).returned == 0

        # Another device's return QR is not found for this one; nor an unknown id.
        other = await kaspi.register("till-2")
        error(await kaspi.post("return/operations", {"DeviceToken": other, "QrReturnId": rid}), -1601)
        error(await kaspi.post("payment/return", {**plain, "DeviceToken": token, "QrReturnId": 424242}), -1601)
        error(await kaspi.get("return/status/424242"), -1601)
        error(await kaspi.post("return/create", {"DeviceToken": "no-such"}), -1501)

        # Scanning after the QR's ExpireDate fails on the customer's side; it stays QrTokenCreated.
        late = ok(await kaspi.post("return/create", {"DeviceToken": token}))["QrReturnId"]
        clock.advance(seconds=300)
        assert (await http.post(f"/_sim/returns/{late}/scan", json={})).status_code == 409
        assert ok(await kaspi.get(f"return/status/{late}")) == {"Status": "QrTokenCreated"}
        failed = ok(await kaspi.post("return/create", {"DeviceToken": token}))["QrReturnId"]
        assert (await http.post(f"/_sim/returns/{failed}/fail")).json()["Status"] == "Error"
        assert ok(await kaspi.get(f"return/status/{failed}")) == {"Status": "Error"}
        assert [x["QrReturnId"] for x in (await http.get("/_sim/returns")).json()] == [rid, late, failed]

    clock = Clock()
    async with running(clock=clock, auto_expire=True, scan_wait_timeout=180) as (sim, http):
        kaspi = Kaspi(http, "r2")
        token = await kaspi.register()
        rid = ok(await kaspi.post("return/create", {"DeviceToken": token}))["QrReturnId"]
        clock.advance(seconds=180)
        assert ok(await kaspi.get(f"return/status/{rid}")) == {"Status": "Error"}  # auto_expire, as purchases


def wire(when: datetime) -> str:
    return kaspi_qr.wire_time(when)


async def test_payment_link_and_test_host_emulator_calls() -> None:
    async with running(scan_wait_timeout=120, confirmation_timeout=60) as (sim, http):
        for scheme in ("r1", "r2", "r3"):
            kaspi = Kaspi(http, scheme)
            token = await kaspi.register(f"till-{scheme}")
            body = {"DeviceToken": token, "Amount": 2500, "ExternalId": "order-7"}
            link = ok(await kaspi.post("qr/create-link", body))
            assert set(link) == {"PaymentLink", "ExpireDate", "PaymentId", "PaymentMethods", "PaymentBehaviorOptions"}
            assert link["PaymentLink"].startswith("https://pay.kaspi.kz/pay/")
            assert len(link["PaymentLink"]) > len("https://pay.kaspi.kz/pay/")
            assert link["PaymentMethods"] == ["Gold", "Red", "Loan"]
            assert link["PaymentBehaviorOptions"] == {
                "StatusPollingInterval": 5,  # the document's value by default (kaspi-qr-api.md §3)
                "LinkActivationWaitTimeout": 120,
                "PaymentConfirmationTimeout": 60,
            }
            assert datetime.fromisoformat(link["ExpireDate"]).utcoffset() == timedelta(hours=5)
            pid = link["PaymentId"]
            assert await kaspi.status(pid) == {"Status": "QrTokenCreated"}

            # The emulator's body is a bare {qrPaymentId}, on r3 too.
            ping = {"qrPaymentId": str(pid)}  # a string here, unlike everywhere else (kaspi-qr-api.md §3)
            emulated(await kaspi.post("test/payment/confirm", ping), kaspi_qr.ERR_WRONG_STATUS)  # not scanned yet
            r = await http.post(f"/{scheme}/v01/test/payment/scan", json=ping, headers=kaspi._headers())
            emulated(r.json())
            assert await kaspi.status(pid) == {"Status": "Wait"}
            emulated(await kaspi.post("test/payment/scan", ping), kaspi_qr.ERR_WRONG_STATUS)
            emulated(await kaspi.post("test/payment/confirm", ping))
            v2 = await kaspi.status(pid, "v02")
            assert (v2["Status"], v2["Amount"], v2["ProductType"]) == ("Processed", 2500, "Gold")

            failing = await kaspi.create(token)
            emulated(await kaspi.post("test/payment/scanerror", {"qrPaymentId": str(failing["QrPaymentId"])}))
            assert await kaspi.status(failing["QrPaymentId"]) == {"Status": "Error"}

            failing = await kaspi.create(token)
            emulated(await kaspi.post("test/payment/confirmerror", {"qrPaymentId": str(failing["QrPaymentId"])}), -2)
            emulated(await kaspi.post("test/payment/scan", {"qrPaymentId": str(failing["QrPaymentId"])}))
            emulated(await kaspi.post("test/payment/confirmerror", {"qrPaymentId": str(failing["QrPaymentId"])}))
            assert await kaspi.status(failing["QrPaymentId"], "v02") == {
                "Status": "Error",
                "TransactionId": None,
                "ProductType": None,
                "LoanTerm": None,
                "Amount": 1000,
                "StoreName": "Main shop",
            }
            emulated(await kaspi.post("test/payment/scan", {"qrPaymentId": "1"}), -1601)
        assert len(sim.payments()) == 9


async def test_credentials() -> None:
    async with running() as (sim, http):
        token = sim.register_device()
        body = {"DeviceToken": token, "Amount": 100, "ExternalId": "x"}
        # r1: Api-Key missing or wrong -> an error envelope with HTTP 200, and nothing created.
        for headers in ({}, {"Api-Key": "wrong"}, {"Api-Key": API_KEY.upper()}):
            r = await http.post("/r1/v01/qr/create", json=body, headers=headers)
            assert r.status_code == 200
            error(r.json(), -10000)
            r = await http.get("/r1/v01/partner/tradepoints", headers=headers)
            error(r.json(), -10000)
        ok((await http.post("/r1/v01/qr/create", json=body, headers={"api-key": API_KEY})).json())

        # r3: OrganizationBin in every POST body (kaspi-qr-api.md §3).
        for bad in ({}, {"OrganizationBin": "000000000000"}, {"OrganizationBin": None}):
            r = await http.post("/r3/v01/qr/create", json={**body, **bad})
            assert r.status_code == 200
            error(r.json(), -10000)
        # r3: trade points only in the path form; the r1/r2 query form is not r3's.
        assert (await http.get("/r3/v01/partner/tradepoints", params={"OrganizationBin": BIN})).status_code == 404
        good = ok((await http.post("/r3/v01/qr/create", json={**body, "OrganizationBin": BIN})).json())
        # ... and none in payment/status (issue 12: the simulator refused the documented call).
        status = ok((await http.get(f"/r3/v01/payment/status/{good['QrPaymentId']}")).json())
        assert status == {"Status": "QrTokenCreated"}
        assert ok((await http.get(f"/r3/v01/partner/tradepoints/{BIN}")).json())
        error((await http.get("/r3/v01/partner/tradepoints/999999999999")).json(), -10000)
        assert len(sim.payments()) == 2

        # r2: neither (the client certificate is the TLS server's business).
        ok((await http.post("/r2/v01/qr/create", json=body)).json())
        r2 = ok((await http.get(f"/r2/v01/payment/status/{good['QrPaymentId']}")).json())
        assert r2 == {"Status": "QrTokenCreated"}


async def test_error_codes() -> None:
    async with running(trade_points=[{"TradePointId": 7, "TradePointName": "Kiosk"}]) as (sim, http):
        kaspi = Kaspi(http, "r1")
        error(await kaspi.post("device/register", {"DeviceId": "d", "TradePointId": 1}), -99000002)
        error(await kaspi.post("device/register", {"DeviceId": "d", "TradePointId": "nope"}), kaspi_qr.ERR_BAD_REQUEST)
        token = await kaspi.register("d", 7)

        for create in ("qr/create", "qr/create-link"):
            error(await kaspi.post(create, {"DeviceToken": "no-such", "Amount": 100, "ExternalId": "x"}), -1501)
            error(await kaspi.post(create, {"Amount": 100, "ExternalId": "x"}), -1501)
            for amount in (0, -5, "100", None, True, 0.0):
                body = {"DeviceToken": token, "Amount": amount, "ExternalId": "x"}
                error(await kaspi.post(create, body), 990000028)
        assert sim.payments() == []

        error(await kaspi.get("payment/status/123456"), -1601)
        error(await kaspi.get("payment/status/abc"), -1601)
        r3 = Kaspi(http, "r3")  # the refund calls: r1 has none (kaspi-qr-api.md §1)
        error(await r3.get("payment/details", QrPaymentId=123456, DeviceToken=token), -1601)
        error(await r3.get("payment/details", QrPaymentId=123456, DeviceToken="no-such"), -1501)
        error(await r3.post("payment/return", {"DeviceToken": token, "QrPaymentId": 123456, "Amount": 1}), -1601)

        pid = (await kaspi.create(token, amount=1000))["QrPaymentId"]
        sim.confirm(pid)
        for amount in (0, -1, "5"):
            body = {"DeviceToken": token, "QrPaymentId": pid, "Amount": amount}
            error(await r3.post("payment/return", body), 990000028)
        # Another device's payment is not found for this one.
        other = await kaspi.register("other", 7)
        error(await r3.get("payment/details", QrPaymentId=pid, DeviceToken=other), -1601)
        error(await r3.post("payment/return", {"DeviceToken": other, "QrPaymentId": pid, "Amount": 1}), -1601)

        # An inactive device: -1502.
        ok(await kaspi.post("device/delete", {"DeviceToken": other}))
        error(await kaspi.post("qr/create", {"DeviceToken": other, "Amount": 1, "ExternalId": "x"}), -1502)
        assert (await http.post(f"/_sim/devices/{token}/deactivate")).status_code == 200
        error(await kaspi.post("qr/create", {"DeviceToken": token, "Amount": 1, "ExternalId": "x"}), -1502)

        # Malformed requests and unknown paths: the simulator's own answers, not Kaspi codes.
        r = await http.post("/r1/v01/qr/create", content=b"{not json", headers={"Api-Key": API_KEY})
        assert r.status_code == 400 and r.json()["StatusCode"] != 0
        r = await http.get("/r1/v01/qr/create", headers={"Api-Key": API_KEY})
        assert r.status_code == 405
        for path in ("/r1/v01/payment/nothing", "/r1/v02/qr/create", "/r1/v03/payment/status/1", "/r9/v01/x/y"):
            r = await http.get(path, headers={"Api-Key": API_KEY})
            assert r.status_code == 404 and r.json()["StatusCode"] != 0, path


@pytest.mark.parametrize(
    ("form", "offset", "written"),
    [
        # kaspi-qr-api.md §2: milliseconds with a full offset, +05:00 in the field, +06:00 in the document.
        ("millis", 5, "2025-03-01T12:05:00.123+05:00"),
        ("millis", 6, "2025-03-01T13:05:00.123+06:00"),
        ("seconds", 5, "2025-03-01T12:05:00+05:00"),
        ("hour-offset", 6, "2025-03-01T13:05:00+06"),  # as "2020-01-16T10:30:00+06"
        ("unpadded", 6, "2025-3-1T13:05:00.123+06:00"),  # as "2021-11-3T11:55:14.166+06:00"
        ("local-ticks", 6, "2025-03-01T12:05:00.1234560"),  # as "2021-12-08T11:35:48.1566667", Almaty time
    ],
)
async def test_expire_date_in_each_of_kaspis_forms(form: str, offset: int, written: str) -> None:
    clock = Clock(T0 + timedelta(microseconds=123456))
    async with running(clock=clock, qr_lifetime=300, time_form=form, time_offset=offset) as (_sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        assert (await kaspi.create(token))["ExpireDate"] == written
        link = ok(await kaspi.post("qr/create-link", {"DeviceToken": token, "Amount": 1, "ExternalId": "l"}))
        assert link["ExpireDate"] == written
    with pytest.raises(ValueError):
        Simulator(time_offset=4)


@pytest.mark.parametrize("scheme", ["r3"])  # the only scheme refunding without a customer (§5)
async def test_ids_are_int64_numbers_above_2_32_and_a_string_id_is_refused(scheme: str) -> None:
    """kaspi-qr-api.md §2: QrPaymentId, PaymentId, ReturnOperationId and TradePointId are Int64, sent as
    JSON numbers, and values above 2^32 occur. Before: ids below 2^32, and "123" taken for 123."""
    async with running() as (sim, http):
        kaspi = Kaspi(http, scheme)
        body = {"DeviceId": "till", "TradePointId": "1"}
        answer = await kaspi.post("device/register", body)
        error(answer, kaspi_qr.ERR_BAD_REQUEST)
        assert "TradePointId" in answer["Message"] and sim.devices == {}
        token = await kaspi.register("till", 1)

        qr = await kaspi.create(token, amount=1000)
        link = ok(await kaspi.post("qr/create-link", {"DeviceToken": token, "Amount": 1000, "ExternalId": "l"}))
        for pid in (qr["QrPaymentId"], link["PaymentId"]):
            assert type(pid) is int and 2**32 < pid < 2**63
        pid = qr["QrPaymentId"]
        sim.confirm(pid)

        for wrong in (str(pid), float(pid), None, True):
            answer = await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": wrong, "Amount": 100})
            error(answer, kaspi_qr.ERR_BAD_REQUEST)
            assert "QrPaymentId" in answer["Message"]
        assert sim.describe(sim.payment(pid))["Returned"] == 0  # nothing went back for a refused call

        done = ok(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 100}))
        assert type(done["ReturnOperationId"]) is int and 2**32 < done["ReturnOperationId"] < 2**63
        assert sim.describe(sim.payment(pid))["Returned"] == 100


async def test_ids_above_2_53_keep_every_digit_on_the_wire() -> None:
    """Int64 ids past 2^53 (where a double drops digits) cross the wire and come back exact."""
    async with running(id_floor=2**62) as (sim, http):
        kaspi = Kaspi(http, "r3")
        token = await kaspi.register()
        body = {"DeviceToken": token, "Amount": 5, "OrganizationBin": kaspi.bin}
        r = await http.post("/r3/v01/qr/create", json=body, headers=kaspi._headers())
        pid = ok(r.json())["QrPaymentId"]
        assert pid > 2**62 and f'"QrPaymentId":{pid},' in r.text  # a bare number, every digit
        assert await kaspi.status(pid) == {"Status": "QrTokenCreated"}
        sim.confirm(pid)
        ok(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 5}))
        assert sim.describe(sim.payment(pid))["Returned"] == 5
    with pytest.raises(ValueError):
        Simulator(id_floor=2**63 - 5)  # no Int64 room left above it


async def test_pay_a_different_sum_and_installments() -> None:
    async with running() as (sim, http):
        kaspi = Kaspi(http, "r3")
        token = await kaspi.register()
        pid = (await kaspi.create(token, amount=1000))["QrPaymentId"]
        r = await http.post(f"/_sim/payments/{pid}/confirm", json={"amount": 700, "product": "Red"})
        assert r.status_code == 200 and r.json()["PaidAmount"] == 700 and r.json()["Amount"] == 1000
        v2 = await kaspi.status(pid, "v02")
        assert (v2["Status"], v2["Amount"], v2["ProductType"]) == ("Processed", 700, "Red")
        assert amounts(ok(await kaspi.get("payment/details", QrPaymentId=pid, DeviceToken=token))) == (700, 700)
        error(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 701}), -99000005)
        ok(await kaspi.post("payment/return", {"DeviceToken": token, "QrPaymentId": pid, "Amount": 350.5}))
        assert ok(await kaspi.get("payment/details", QrPaymentId=pid, DeviceToken=token))["AvailableReturnAmount"] == (
            349.5
        )

        loan = (await kaspi.create(token, amount=240000))["QrPaymentId"]
        r = await http.post(f"/_sim/payments/{loan}/confirm", json={"product": "Loan", "loan_term": 12})
        assert r.status_code == 200, r.text
        v2 = await kaspi.status(loan, "v02")
        assert (v2["Amount"], v2["ProductType"], v2["LoanTerm"]) == (240000, "Loan", 12)

        # Every payment gets its own TransactionId.
        third = (await kaspi.create(token))["QrPaymentId"]
        sim.confirm(third)
        ids = {p["TransactionId"] for p in sim.payments()}
        assert len(ids) == 3 and None not in ids


async def test_controls_refuse_what_cannot_happen() -> None:
    async with running() as (sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        pid = (await kaspi.create(token))["QrPaymentId"]
        assert (await http.post("/_sim/payments/999/scan")).status_code == 404
        assert (await http.post("/_sim/payments/abc/confirm", json={})).status_code == 404
        assert (await http.post(f"/_sim/payments/{pid}/confirm", json={"product": "Platinum"})).status_code == 400
        assert (await http.post(f"/_sim/payments/{pid}/confirm", json={"amount": -1})).status_code == 400
        assert (await http.post(f"/_sim/payments/{pid}/confirm", json={"amount": "5"})).status_code == 400
        assert (await http.post("/_sim/mode", json={"mode": "sleepy"})).status_code == 400
        assert (await http.post("/_sim/nothing")).status_code == 404
        assert await kaspi.status(pid) == {"Status": "QrTokenCreated"}  # untouched by the refused calls

        # Confirm straight from QrTokenCreated (the scan is implied); then nothing moves a final payment.
        assert (await http.post(f"/_sim/payments/{pid}/confirm")).status_code == 200
        for action in ("scan", "confirm", "fail"):
            r = await http.post(f"/_sim/payments/{pid}/{action}")
            assert r.status_code == 409, (action, r.text)
        failed = (await kaspi.create(token))["QrPaymentId"]
        assert (await http.post(f"/_sim/payments/{failed}/fail")).json()["Status"] == "Error"
        assert await kaspi.status(failed) == {"Status": "Error"}
        with pytest.raises(SimulatorError):
            sim.confirm(failed)

        # Reset forgets payments but keeps devices unless told.
        assert (await http.post("/_sim/reset")).status_code == 200
        assert (await http.get("/_sim/payments")).json() == []
        error(await kaspi.get(f"payment/status/{pid}"), -1601)
        new_pid = (await kaspi.create(token))["QrPaymentId"]
        assert new_pid not in (pid, failed)  # ids keep counting across a reset
        assert (await http.post("/_sim/reset", json={"devices": True})).status_code == 200
        error(await kaspi.post("qr/create", {"DeviceToken": token, "Amount": 1, "ExternalId": "x"}), -1501)


async def test_error_mode_answers_minus_999() -> None:
    async with running() as (sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        a = (await kaspi.create(token))["QrPaymentId"]
        b = (await kaspi.create(token))["QrPaymentId"]

        assert (await http.post("/_sim/mode", json={"mode": "error", "payment_id": a})).status_code == 200
        error(await kaspi.get(f"payment/status/{a}"), -999)
        error(await kaspi.get(f"payment/status/{a}", version="v02"), -999)
        assert await kaspi.status(b) == {"Status": "QrTokenCreated"}

        await http.post("/_sim/mode", json={"mode": "error"})
        error(await kaspi.get(f"payment/status/{b}"), -999)
        error(await kaspi.get("payment/status/424242"), -999)  # even an unknown payment: the service is down
        await http.post("/_sim/mode", json={"mode": "normal"})
        assert await kaspi.status(a) == {"Status": "QrTokenCreated"}
        assert await kaspi.status(b) == {"Status": "QrTokenCreated"}

        sim.set_mode("error", b)
        error(await kaspi.get(f"payment/status/{b}"), -999)
        sim.set_mode("normal", b)
        assert await kaspi.status(b) == {"Status": "QrTokenCreated"}


async def test_silent_mode_hangs_until_normal() -> None:
    async with running() as (sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        quiet = (await kaspi.create(token))["QrPaymentId"]
        other = (await kaspi.create(token))["QrPaymentId"]
        r = await http.post("/_sim/mode", json={"mode": "silent", "payment_id": quiet})
        assert r.status_code == 200

        headers = {"Api-Key": API_KEY}
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"/r1/v01/payment/status/{quiet}", headers=headers, timeout=0.3)
        assert await kaspi.status(other) == {"Status": "QrTokenCreated"}  # only that payment is silent

        pending = asyncio.create_task(http.get(f"/r1/v02/payment/status/{quiet}", headers=headers, timeout=10))
        async with asyncio.timeout(5):
            await sim.wait_for_status_calls(2, quiet)  # the call has arrived and is hanging
        sim.confirm(quiet)  # state may move while it hangs; the answer reflects the moment it is released
        assert not pending.done()
        assert (await http.post("/_sim/mode", json={"mode": "normal"})).status_code == 200
        async with asyncio.timeout(5):
            answer = (await pending).json()
        assert ok(answer)["Status"] == "Processed"
        assert sim.status_calls_by_payment[quiet] == 2


async def test_silent_mode_released_from_another_thread_and_capped() -> None:
    async with running(silent_cap=0.5) as (sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        pid = (await kaspi.create(token))["QrPaymentId"]
        sim.set_mode("silent")
        pending = asyncio.create_task(kaspi.get(f"payment/status/{pid}"))
        async with asyncio.timeout(5):
            await sim.wait_for_status_calls(1, pid)
        await asyncio.to_thread(sim.set_mode, "normal")
        async with asyncio.timeout(5):
            assert ok(await pending) == {"Status": "QrTokenCreated"}

        # Nothing hangs forever: past the cap a silent call answers -999.
        sim.set_mode("silent", pid)
        async with asyncio.timeout(5):
            error(await kaspi.get(f"payment/status/{pid}"), -999)
        sim.set_mode("normal")


async def test_status_calls_are_counted() -> None:
    async with running() as (sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        a = (await kaspi.create(token))["QrPaymentId"]
        b = (await kaspi.create(token))["QrPaymentId"]
        for _ in range(3):
            await kaspi.status(a)
        await kaspi.status(b, "v02")
        await asyncio.gather(*(kaspi.status(b) for _ in range(20)))
        assert sim.status_calls == 24
        assert (sim.status_calls_by_payment[a], sim.status_calls_by_payment[b]) == (3, 21)
        stats = (await http.get("/_sim/stats")).json()
        assert stats["StatusCalls"] == 24
        assert stats["StatusCallsByPayment"] == {str(a): 3, str(b): 21}
        assert stats["Calls"]["qr/create"] == 2
        listed = {p["QrPaymentId"]: p["StatusCalls"] for p in (await http.get("/_sim/payments")).json()}
        assert listed == {a: 3, b: 21}
        # Calls refused for a wrong Api-Key were not served.
        await http.get(f"/r1/v01/payment/status/{a}", headers={"Api-Key": "wrong"})
        assert sim.status_calls == 24
        await http.post("/_sim/reset")
        assert sim.status_calls == 0 and not sim.status_calls_by_payment


async def test_injected_errors() -> None:
    async with running() as (sim, http):
        kaspi = Kaspi(http, "r3")
        token = await kaspi.register()
        pid = (await kaspi.create(token))["QrPaymentId"]
        sim.confirm(pid)
        r = await http.post("/_sim/inject", json={"operation": "payment/return", "code": -99000006})
        assert r.status_code == 200, r.text
        body = {"DeviceToken": token, "QrPaymentId": pid, "Amount": 100}
        error(await kaspi.post("payment/return", body), -99000006)
        ok(await kaspi.post("payment/return", body))  # once only
        assert sim.payments()[0]["Returned"] == 100

        sim.inject_error("qr/create", -999, times=None)
        for _ in range(2):
            error(await kaspi.post("qr/create", {"DeviceToken": token, "Amount": 5, "ExternalId": "x"}), -999)
        assert (await http.post("/_sim/inject/clear")).status_code == 200
        await kaspi.create(token)
        assert (await http.post("/_sim/inject", json={"operation": "nope", "code": 1})).status_code == 400


async def test_no_expiry_by_default_and_auto_expire_when_asked() -> None:
    clock = Clock()
    async with running(clock=clock, scan_wait_timeout=180, confirmation_timeout=65, qr_lifetime=300) as (sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        pid = (await kaspi.create(token))["QrPaymentId"]
        clock.advance(hours=2)
        # Kaspi has no expired status; paycenter decides expiry, and a late payment still goes through.
        assert await kaspi.status(pid) == {"Status": "QrTokenCreated"}
        sim.confirm(pid)
        assert await kaspi.status(pid) == {"Status": "Processed"}

    clock = Clock()
    async with running(clock=clock, auto_expire=True, scan_wait_timeout=180, confirmation_timeout=65) as (sim, http):
        kaspi = Kaspi(http, "r1")
        token = await kaspi.register()
        unscanned = (await kaspi.create(token))["QrPaymentId"]
        scanned = (await kaspi.create(token))["QrPaymentId"]
        sim.scan(scanned)
        clock.advance(seconds=64)
        assert await kaspi.status(scanned) == {"Status": "Wait"}
        clock.advance(seconds=1)
        assert await kaspi.status(scanned) == {"Status": "Error"}
        assert await kaspi.status(unscanned) == {"Status": "QrTokenCreated"}
        clock.advance(seconds=180 - 65)
        assert await kaspi.status(unscanned) == {"Status": "Error"}
        assert (await http.post(f"/_sim/payments/{unscanned}/confirm")).status_code == 409


async def test_python_api_without_http() -> None:
    sim = Simulator(clock=Clock())
    token = sim.register_device("till")
    code, data = sim.op_qr_create("r1", {"DeviceToken": token, "Amount": 990, "ExternalId": "e"}, {})
    assert code == 0
    pid = data["QrPaymentId"]
    assert sim.scan(pid)["Status"] == "Wait"
    with pytest.raises(SimulatorError):
        sim.scan(pid)
    paid = sim.confirm(pid, amount=1000, product="Loan", loan_term=24)
    assert (paid["Status"], paid["PaidAmount"], paid["LoanTerm"]) == ("Processed", 1000, 24)
    sim.set_mode("silent", pid)
    assert sim.payment_modes == {pid: "silent"}
    sim.set_mode("normal")
    assert sim.payment_modes == {} and sim.mode == "normal"
    with pytest.raises(SimulatorError) as exc:
        sim.fail(123)
    assert exc.value.status == 404
    assert [p["QrPaymentId"] for p in sim.payments()] == [pid]
