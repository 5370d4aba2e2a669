"""Contract table for Kaspi Smart POS terminals (issue 12): tests/fixtures/kaspi_pos_contract.json.

Each row is one exchange as the terminal simulator S answers it (shared/reference/kaspi.md §B; no
official document exists). It is replayed (a) against our simulator over real HTTP: after driving
it into the row's state with its controls, the same request must get the same HTTP status, the
same keys at every level, the same JSON types and, but for ids, dates and tokens, the same values;
(b) against our client: a tiny app on loopback answers S's recorded body, the provider method that
makes the request is called, and it must make the request of the row and read the answer as the
row says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kit.asgi_server import serve
from paycenter.config import Settings
from paycenter.providers.base import AttemptRef, AttemptStart, RefundLegRef, TerminalRef
from paycenter.providers.kaspi_pos import KaspiPosProvider
from paycenter.simulators import kaspi_pos as kp

TABLE = json.loads((Path(__file__).parents[1] / "fixtures" / "kaspi_pos_contract.json").read_text(encoding="utf-8"))
ROWS: dict[str, dict[str, Any]] = {row["id"]: row for row in TABLE["exchanges"]}
TERMINAL, TOKEN = "T1", "token-T1"
MISSING = object()


def at(body: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(body, dict) or key not in body:
            return MISSING
        body = body[key]
    return body


def http_status(row: dict[str, Any]) -> int:
    """What we send and serve for S's HTTP status (the table's field "http_status_ours")."""
    response = row["response"]
    return response.get("http_status_ours", response["http_status"])


def assert_like(ours: Any, theirs: Any, varies: set[str], path: str = "") -> None:
    """Same keys at every level and the same JSON types; the same values outside `varies`."""
    assert type(ours) is type(theirs), f"{path or 'body'}: {ours!r} is not of the type of S's {theirs!r}"
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs), f"{path or 'body'}: keys {sorted(ours)} where S has {sorted(theirs)}"
        for key, value in theirs.items():
            assert_like(ours[key], value, varies, f"{path}.{key}" if path else key)
    elif path not in varies:
        assert ours == theirs, f"{path}: {ours!r} where S answers {theirs!r}"


def assert_formats(body: Any, row: dict[str, Any]) -> None:
    """The table's patterns and the row's same-value pairs hold for `body`."""
    for dotted, pattern in TABLE["patterns"].items():
        value = at(body, dotted)
        if value is not MISSING:
            assert isinstance(value, str) and re.fullmatch(pattern, value), f"{dotted}: {value!r} !~ {pattern}"
    for left, right in row["same"]:
        assert at(body, left) == at(body, right) is not MISSING, f"{left} != {right}"


def row_ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


# -- the table itself ---------------------------------------------------------------------------------


def test_the_table_is_consistent() -> None:
    """Every row cites S, reaches a described state, and S's own bodies meet the table's formats;
    every path it exempts exists (a typo there would skip a comparison)."""
    assert len(ROWS) == len(TABLE["exchanges"])  # ids are unique
    for row in TABLE["exchanges"]:
        assert row["source"].startswith("S kaspi_pos_simulator.py "), row["id"]
        assert row["state"] in TABLE["states"], row["id"]
        body = row["response"]["body"]
        assert isinstance(body["statusCode"], int)
        assert (body["statusCode"] == 0) == ("data" in body) == ("errorText" not in body), row["id"]
        assert http_status(row) in (200, 401, 404), row["id"]
        assert row["response"]["http_status"] in (200, body["statusCode"]), row["id"]  # S: the code as status
        for dotted in row["varies"] + [p for pair in row["same"] for p in pair] + row["live"]:
            assert at(body, dotted) is not MISSING or dotted in row["request"]["params"], (row["id"], dotted)
        assert_formats(body, row)
        client = row["client"]
        assert client is not None or row.get("client_note"), row["id"]
        for other in (client or {}).get("with", []) + (client or {}).get("requests", []):
            assert other in ROWS, (row["id"], other)


# -- (a) our simulator --------------------------------------------------------------------------------


class Sim:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def get(self, path: str, params: dict[str, Any], token: str | None) -> httpx.Response:
        headers = {"accesstoken": token} if token is not None else {}
        return await self.http.get(f"/terminals/{TERMINAL}{path}", params=params, headers=headers)

    async def data(self, path: str, token: str | None = TOKEN, **params: Any) -> dict[str, Any]:
        r = await self.get(path, params, token)
        assert r.status_code == 200 and r.json()["statusCode"] == 0, r.text
        return r.json()["data"]

    async def control(self, action: str, **body: Any) -> dict[str, Any]:
        r = await self.http.post(f"/_sim/terminals/{TERMINAL}/{action}", json=body)
        assert r.status_code == 200, r.text
        return r.json()


Step = Callable[[Sim, dict[str, str]], Awaitable[None]]


async def pay(sim: Sim, ids: dict[str, str]) -> None:
    ids["processId"] = (await sim.data("/v2/payment", amount=1500))["processId"]


async def pay_again(sim: Sim, ids: dict[str, str]) -> None:
    await sim.data("/v2/payment", amount=800)


def confirm(cheque_method: str) -> Step:
    async def step(sim: Sim, ids: dict[str, str]) -> None:
        paid = await sim.control("confirm", method="kaspi_gold", chequeMethod=cheque_method)
        ids["transactionId"] = paid["transactionId"]

    return step


def refund(method: str) -> Step:
    async def step(sim: Sim, ids: dict[str, str]) -> None:
        started = await sim.data("/v2/refund", method=method, amount=500, transactionId=ids["transactionId"])
        ids["processId"] = started["processId"]

    return step


def control(action: str, **body: Any) -> Step:
    async def step(sim: Sim, ids: dict[str, str]) -> None:
        await sim.control(action, **body)

    return step


async def register(sim: Sim, ids: dict[str, str]) -> None:
    pair = await sim.data("/v2/register", token=None, name="shop")
    ids["accesstoken"], ids["refreshToken"] = pair["accessToken"], pair["refreshToken"]


# The table's states, reached through the simulator's API and its controls.
STATES: dict[str, list[Step]] = {
    "idle": [],
    "payment_waiting": [pay],
    "paid_qr": [pay, confirm("qr")],
    "paid_card": [pay, confirm("card")],
    "cancelled_by_payer": [pay, control("payer-cancel")],
    "declined": [pay, control("fail", subStatus="QrTransactionFailure")],
    "unknown": [pay, control("mode", mode="unknown")],
    "unknown_paid_qr": [pay, control("mode", mode="unknown"), confirm("qr")],
    "refund_waiting": [pay, confirm("qr"), refund("qr")],
    "refunded_qr": [pay, confirm("qr"), refund("qr"), control("refund/confirm")],
    "refunded_card": [pay, confirm("card"), refund("card"), control("refund/confirm")],
    "paid_qr_then_payment_waiting": [pay, confirm("qr"), pay_again],
    "token_expired": [control("clock", advance=kp.TOKEN_LIFETIME + 1)],
    "registered": [register],
}


def test_every_state_of_the_table_can_be_reached() -> None:
    assert set(STATES) == set(TABLE["states"])


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[tuple[str, kp.Simulator]]:
    app = kp.create_app(terminals={TERMINAL: TOKEN}, camera=False)
    async with serve(app) as base:
        yield base, app.state.sim


@pytest.mark.parametrize("row", TABLE["exchanges"], ids=row_ids(TABLE["exchanges"]))
async def test_our_simulator_answers_as_s(simulator: tuple[str, kp.Simulator], row: dict[str, Any]) -> None:
    base, state = simulator
    state.reset()
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as http:
        sim = Sim(http)
        ids: dict[str, str] = {}
        for step in STATES[row["state"]]:
            await step(sim, ids)
        request = row["request"]
        params = {key: ids[key] if key in row["live"] else value for key, value in request["params"].items()}
        r = await sim.get(request["path"], params, ids.get("accesstoken", TOKEN) if request["accesstoken"] else None)
    assert r.status_code == http_status(row), r.text
    body = r.json()
    assert_like(body, row["response"]["body"], set(row["varies"]))
    assert_formats(body, row)


# -- (b) our client -----------------------------------------------------------------------------------


class Terminal:
    """A tiny terminal on loopback that answers S's recorded bodies and notes what it was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}  # path -> row
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v2/{call:path}", self.answer, methods=["GET"])])

    async def answer(self, request: Request) -> Response:
        path = "/v2/" + request.path_params["call"]
        self.requests.append(
            {"path": path, "params": dict(request.query_params), "accesstoken": "accesstoken" in request.headers}
        )
        row = self.answers.get(path)
        if row is None:
            return Response("not in the table", status_code=500)
        return JSONResponse(row["response"]["body"], status_code=http_status(row))


class Store:
    """A TerminalStore that keeps nothing: the provider renews tokens only with a store."""

    async def current(self, terminal_id: str) -> TerminalRef | None:
        return None

    async def save_tokens(self, terminal_id: str, *, replaced: str, renewed: TerminalRef) -> bool:
        return True

    async def note(self, terminal_id: str, **changes: Any) -> None:
        return None


@pytest.fixture(scope="module")
async def terminal() -> AsyncIterator[tuple[str, Terminal]]:
    fake = Terminal()
    async with serve(fake.app) as base:
        yield base, fake


def attempt(terminal: TerminalRef, params: dict[str, str]) -> AttemptRef:
    return AttemptRef(
        attempt_id="att_contract", provider_ref=params["processId"], amount=150000, currency="KZT", terminal=terminal
    )


def leg(terminal: TerminalRef, params: dict[str, str]) -> RefundLegRef:
    return RefundLegRef(
        leg_id="leg_contract",
        amount=int(params.get("amount", "500")) * 100,
        currency="KZT",
        provider_txn_id=params.get("transactionId", ""),
        attempt_ref=None,
        terminal=terminal,
        provider_ref=params.get("processId"),
        paid_by=params.get("method"),  # the way the payment was paid, kept with its operation
    )


Call = Callable[[KaspiPosProvider, TerminalRef, dict[str, str], dict[str, Any]], Awaitable[Any]]
# The provider method that makes each request, called with what the row's request carries.
CALLS: dict[str, Call] = {
    "start": lambda p, t, q, c: p.start(
        AttemptStart(
            attempt_id="att_contract",
            payment_id="P" * 32,
            amount=int(q["amount"]) * 100,
            currency="KZT",
            description="",
            terminal=t,
        )
    ),
    "poll": lambda p, t, q, c: p.poll(attempt(t, q)),
    "cancel": lambda p, t, q, c: p.cancel(attempt(t, q)),
    "refund": lambda p, t, q, c: p.refund(leg(t, q)),
    "poll_refund": lambda p, t, q, c: p.poll_refund(leg(t, q)),
    "device_info": lambda p, t, q, c: p.device_info(t),
    "register": lambda p, t, q, c: p.register(t, q["name"]),
    "renew": lambda p, t, q, c: p.renew(dataclasses.replace(t, client_name=q["name"], refresh_token=q["refreshToken"])),
    "call": lambda p, t, q, c: p.call(t, c["path"], q or None),
}


def view(result: Any) -> dict[str, Any]:
    """A result as plain JSON values (enums by value, datetimes in ISO 8601)."""
    if isinstance(result, dict):
        return result
    out = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        out[f.name] = value.value if isinstance(value, enum.Enum) else value
        if isinstance(value, datetime):
            out[f.name] = value.isoformat()
    return out


async def replay(base: str, row: dict[str, Any]) -> None:
    """Call the provider method of `row` against the terminal at `base`; check what it makes of it."""
    spec, expect = row["client"], row["client"]["expect"]
    settings = Settings(database_url="sqlite://", _env_file=None)  # type: ignore[call-arg]
    # The day S was last checked against a terminal: its example token pairs are still alive.
    provider = KaspiPosProvider(settings, clock=lambda: datetime(2025, 4, 12, 8, 5, 31, tzinfo=UTC), store=Store())
    ref = TerminalRef(id="trm_contract", name="K1", base_url=base, access_token="9b1f6c0e5a7d4e2f8c3b1a0d9e8f7c6b")
    try:
        try:
            result: Any = await CALLS[spec["method"]](provider, ref, row["request"]["params"], spec)
        except Exception as exc:  # the row names the exception it expects
            assert "raises" in expect, f"{type(exc).__name__}: {exc}"
            assert (type(exc).__name__, getattr(exc, "code", None)) == (expect["raises"], expect["code"]), exc
        else:
            assert "raises" not in expect, f"no {expect.get('raises')}, but {result!r}"
            got = view(result)
            assert {key: got[key] for key in expect} == expect
    finally:
        await provider.close()


CLIENT_ROWS = [row for row in TABLE["exchanges"] if row["client"]]


def with_gaps(rows: list[dict[str, Any]]) -> list[Any]:
    """A row whose client has a known gap fails until it is fixed (strict: a pass must be noticed)."""
    return [
        pytest.param(row, id=row["id"], marks=pytest.mark.xfail(strict=True, reason=row["client"]["gap"]))
        if row["client"].get("gap")
        else pytest.param(row, id=row["id"])
        for row in rows
    ]


@pytest.mark.parametrize("row", with_gaps(CLIENT_ROWS))
async def test_our_client_reads_what_s_answers(terminal: tuple[str, Terminal], row: dict[str, Any]) -> None:
    base, fake = terminal
    spec = row["client"]
    fake.answers = {ROWS[r]["request"]["path"]: ROWS[r] for r in [row["id"], *spec.get("with", [])]}
    fake.requests = []
    await replay(base, row)
    assert fake.requests == [ROWS[r]["request"] for r in spec.get("requests", [row["id"]])]


@contextlib.asynccontextmanager
async def s_wire(row: dict[str, Any]) -> AsyncIterator[str]:
    """A terminal answering as S's http.server does: HTTP/1.0, S's HTTP status, the body, close."""
    head = b"HTTP/1.0 %d \r\nContent-type: application/json\r\n\r\n" % row["response"]["http_status"]
    body = json.dumps(row["response"]["body"]).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


# S's HTTP status where we serve another but an HTTP/1.x client can still read it (999, not 1xx).
S_STATUS_ROWS = [
    row
    for row in CLIENT_ROWS
    if 200 <= row["response"]["http_status"] != http_status(row) and not row["client"].get("with")
]


@pytest.mark.parametrize("row", with_gaps(S_STATUS_ROWS))
async def test_our_client_reads_the_code_whatever_the_http_status(row: dict[str, Any]) -> None:
    """kaspi.md §B: read the body's statusCode whatever the HTTP status (S sends the code as the
    status). N, which takes any status from 400 up for a transport error, would not."""
    async with s_wire(row) as base:
        await replay(base, row)
