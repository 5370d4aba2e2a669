"""Issue 17's done-when: `paycenter listen` as a process against a real `paycenter run` (SQLite
file, a free port) forwards every event to a local receiver with both signatures a real delivery
carries, survives a restart of the server in the middle (events made before, while it is down,
and after: each forwarded exactly once), and stops cleanly on Ctrl-C (SIGINT). `paycenter trigger`
makes one of the events. A local receiver that cannot be reached yet gets its events once it is
up, in order (retried with backoff), and one that never comes back is given up on, said so."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from kit.asgi_server import serve
from kit.served import PAYCENTER, free_port, paycenter_cli, serving
from kit.sink import Received, Sink, wait_until
from paycenter.api import events as stream_api
from paycenter.app import create_app
from paycenter.cli import listen
from paycenter.config import Settings
from paycenter.payments.models import Event

pytestmark = pytest.mark.slow  # `paycenter run` twice, `paycenter listen`, `paycenter trigger`

SECRET = "listen_secret"


class Lines:
    """What a process prints, line by line, as it comes."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            self.lines.append(raw.decode().rstrip("\n"))

    def having(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def __str__(self) -> str:
        return "\n".join(self.lines)


@contextlib.asynccontextmanager
async def paycenter_run(workdir: Path, env: dict[str, str], port: int, name: str) -> AsyncIterator[Path]:
    log = workdir / f"{name}.log"
    base = f"http://127.0.0.1:{port}"
    cmd = [str(PAYCENTER), "run", "--port", str(port)]
    probe = f"{base}/healthz"
    async with serving(cmd, cwd=workdir, env=env, log=log, probe=probe, ready=lambda r: r.status_code == 200):
        yield log


async def start_listen(
    workdir: Path, base: str, forward_to: str, env: dict[str, str], *options: str
) -> tuple[asyncio.subprocess.Process, Lines]:
    """`paycenter listen` as a process (``env`` with the token), awaited until it is ready."""
    process = await asyncio.create_subprocess_exec(
        str(PAYCENTER),
        "listen",
        "--api-url",
        base,
        "--forward-to",
        forward_to,
        *options,
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    out = Lines(process.stdout)
    await wait_until(lambda: bool(out.having("ready")), timeout=30, what=f"listen ready:\n{out}")
    return process, out


async def interrupt(process: asyncio.subprocess.Process, out: Lines, *, within: float = 15) -> int:
    """Ctrl-C: the exit code, once the process has ended and all it printed is read."""
    process.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(process.wait(), timeout=within)
    await asyncio.wait_for(out.task, timeout=5)
    return code


async def kill(process: asyncio.subprocess.Process | None) -> None:
    if process is not None and process.returncode is None:
        process.kill()
        await process.wait()


def signed_bodies(received: list[Received], whsec: str) -> list[dict[str, Any]]:
    """The bodies of ``paid`` events received, each checked as a receiver checks it: the Standard
    Webhooks signature with ``whsec`` and ``X-Webhook-Signature`` with the payment's secret."""
    bodies = [json.loads(r.body) for r in received]
    verifier = Webhook(whsec)
    for r, body in zip(received, bodies, strict=True):
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert body["event"] == "paid" and headers["x-webhook-event"] == "paid"
        assert verifier.verify(r.body, headers)["event_id"] == body["event_id"] == headers["webhook-id"]
        assert headers["x-webhook-signature"] == hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert headers["user-agent"] == "paycenter-webhooks/1"
    return bodies


def first_run(workdir: Path, port: int) -> tuple[str, dict[str, str]]:
    """The base URL of a `paycenter run` on ``port`` in ``workdir``, and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env.update(PAYCENTER_DATABASE_URL=f"sqlite:///{workdir / 'paycenter.db'}", PYTHONUNBUFFERED="1", NO_COLOR="1")
    return f"http://127.0.0.1:{port}", env


@contextlib.asynccontextmanager
async def first_paycenter_run(
    workdir: Path, env: dict[str, str], port: int
) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    """The first `paycenter run` in ``workdir``: a client of it, the API token it printed (of the
    merchant it made) and that merchant's whsec_ secret."""
    async with (
        paycenter_run(workdir, env, port, "first") as log,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as http,
    ):
        output = await asyncio.to_thread(log.read_text)
        token = output.split("Its API token (shown only now, keep it):", 1)[1].split()[0]
        assert token.startswith("pct_"), output
        r = await http.get("/api/webhook-secret", headers={"X-API-Token": token})
        yield http, token, str(r.json()["data"]["signing_secret"])


async def pay(http: httpx.AsyncClient, token: str) -> str:
    """A payment made and paid as a merchant's server and its payer would: one `paid` event."""
    r = await http.post(
        "/api/payment/init",
        json={"amount": 500, "currency": "KZT", "description": "listen", "webhook_secret": SECRET},
        headers={"X-API-Token": token},
    )
    assert r.status_code == 201, r.text
    payment_id = str(r.json()["data"]["transaction_id"])
    r = await http.post(f"/pay/{payment_id}/sandbox", data={"action": "pay"})
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers
    return payment_id


async def test_listen_forwards_every_event_once_across_a_server_restart(tmp_path: Path) -> None:
    workdir = tmp_path
    port = free_port()
    base, env = first_run(workdir, port)
    database_url = env["PAYCENTER_DATABASE_URL"]
    sink = await Sink().start()
    made: list[str] = []
    listener: asyncio.subprocess.Process | None = None
    try:
        async with first_paycenter_run(workdir, env, port) as (http, token, whsec):
            listen_env = {**env, "PAYCENTER_API_TOKEN": token}
            listener, out = await start_listen(
                workdir, base, sink.url("/webhook"), listen_env, "--events", "paid,refunded"
            )

            # Before the restart.
            made += [await pay(http, token), await pay(http, token)]
            await wait_until(lambda: len(sink.received) >= 2, timeout=15, what=f"two events forwarded:\n{out}")
        # The server is down (stopped by SIGTERM): the listener notices and keeps trying.
        await wait_until(lambda: bool(out.having("connection lost")), timeout=15, what=f"listen noticing:\n{out}")

        # While it is down: events made by another process on the same database.
        settings = Settings(database_url=database_url, run_worker=False, _env_file=None)  # type: ignore[call-arg]
        app = create_app(settings)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pay.test") as other:
                made += [await pay(other, token), await pay(other, token)]
        finally:
            await app.state.ctx.db.dispose()

        async with (
            paycenter_run(workdir, env, port, "second"),
            httpx.AsyncClient(base_url=base, timeout=10, trust_env=False) as http,
        ):
            # After: `paycenter trigger` and the API.
            code, stdout, stderr = await paycenter_cli(
                "trigger", "paid", "--api-url", base, "--webhook-secret", SECRET, cwd=workdir, env=listen_env
            )
            assert code == 0, stderr
            made.append(stdout.strip())
            assert len(made[-1]) == 32, stdout
            made.append(await pay(http, token))
            # The last one made arrives last (events stream in the order they were made): any
            # repeat of an earlier one would have come before it.
            await wait_until(
                lambda: any(json.loads(r.body)["transaction_id"] == made[-1] for r in sink.received),
                timeout=30,
                what=f"the last event forwarded:\n{out}",
            )
            assert len(out.having("reconnected")) >= 1, str(out)

        assert await interrupt(listener, out) == 0, str(out)
        assert "stopped: 6 events forwarded" in out.lines[-1], str(out)
    finally:
        await kill(listener)
        await sink.stop()

    bodies = signed_bodies(sink.at("/webhook"), whsec)
    assert [b["transaction_id"] for b in bodies] == made, str(out)  # each once, in order, none lost
    assert len({b["event_id"] for b in bodies}) == 6
    # One line per event, with the local answer.
    forwarded = out.having("-> 200")
    assert len(forwarded) == 6 and all(any(p in line for line in forwarded) for p in made), str(out)


async def test_listen_retries_a_receiver_not_up_yet_in_order_and_gives_up_in_time(tmp_path: Path) -> None:
    """The developer's receiver is not listening when the events come (connection refused): listen
    tries the first again with backoff, the next waiting, and once the receiver is up it gets both,
    once each, in order, signed. Ctrl-C during a retry's wait ends listen at once (exit 0). With a
    short --retry-for an event is given up on, said so, and the next one goes on."""
    port = free_port()
    base, env = first_run(tmp_path, port)
    receiver = free_port()  # nothing listens there yet
    sink = Sink(port=receiver)
    listener: asyncio.subprocess.Process | None = None
    try:
        async with first_paycenter_run(tmp_path, env, port) as (http, token, whsec):
            listen_env = {**env, "PAYCENTER_API_TOKEN": token}
            listener, out = await start_listen(tmp_path, base, sink.url("/webhook"), listen_env)
            first, second = await pay(http, token), await pay(http, token)

            # Refused twice (at once, then 1 s later): the second event is not tried meanwhile.
            await wait_until(
                lambda: len(out.having("try 3 in 2.0 s")) == 1, timeout=15, what=f"two refused tries:\n{out}"
            )
            tries = out.having(first)
            assert len(tries) == 2 and all("failed (ClientConnectorError" in line for line in tries), str(out)
            assert not out.having(second), str(out)

            await sink.start()  # the receiver is up: its next try (within 2 s) gets through, in order
            await wait_until(lambda: len(sink.received) >= 2, timeout=15, what=f"both events forwarded:\n{out}")
            bodies = signed_bodies(sink.at("/webhook"), whsec)
            assert [b["transaction_id"] for b in bodies] == [first, second], str(out)
            assert len(out.having("-> 200")) == 2, str(out)

            # The receiver goes away again; Ctrl-C while an event waits for its next try.
            await sink.stop()
            third = await pay(http, token)
            await wait_until(lambda: bool(out.having("try 4 in 4.0 s")), timeout=15, what=f"a 4 s wait:\n{out}")
            asked = time.monotonic()
            assert await interrupt(listener, out, within=10) == 0, str(out)
            assert time.monotonic() - asked < 2, f"not stopped at once:\n{out}"  # not after the 4 s wait
            assert "NOT DELIVERED: stopped before try 4" in out.lines[-2] and third in out.lines[-2], str(out)
            assert "stopped: 2 events forwarded, 1 not delivered" in out.lines[-1], str(out)

            # --retry-for 2: tries at 0, 1 and 2 s, then the event is given up on; the next goes on.
            listener, out = await start_listen(tmp_path, base, sink.url("/webhook"), listen_env, "--retry-for", "2")
            lost = await pay(http, token)
            await wait_until(lambda: bool(out.having("NOT DELIVERED")), timeout=15, what=f"given up:\n{out}")
            assert [line for line in out.having(lost) if "failed" in line][-1].endswith(
                "after 3 tries in 2 s; going on"
            )
            sink = Sink(port=receiver)
            await sink.start()
            after = await pay(http, token)
            await wait_until(lambda: bool(sink.received), timeout=15, what=f"the next event forwarded:\n{out}")
            assert [b["transaction_id"] for b in signed_bodies(sink.received, whsec)] == [after], str(out)
            assert await interrupt(listener, out) == 0, str(out)
            assert "stopped: 1 events forwarded, 1 not delivered" in out.lines[-1], str(out)
    finally:
        await kill(listener)
        await sink.stop()


# `paycenter run` gives open responses this long to end (uvicorn's timeout_graceful_shutdown) once
# asked to stop; an events stream never ends by itself, so it ends the streams at once instead.
GRACEFUL_TIMEOUT = 20.0
STOP_DEADLINE = 8.0  # from SIGTERM to the stream's end and the process's exit


async def test_sigterm_ends_an_open_stream_at_once(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env.update(PAYCENTER_DATABASE_URL=f"sqlite:///{tmp_path / 'paycenter.db'}", PYTHONUNBUFFERED="1", NO_COLOR="1")
    log = tmp_path / "server.log"
    cmd = [str(PAYCENTER), "run", "--port", str(port)]
    probe = f"{base}/healthz"
    assert STOP_DEADLINE < GRACEFUL_TIMEOUT / 2
    async with (
        serving(cmd, cwd=tmp_path, env=env, log=log, probe=probe, ready=lambda r: r.status_code == 200) as server,
        httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http,
    ):
        token = log.read_text().split("Its API token (shown only now, keep it):", 1)[1].split()[0]
        async with http.stream("GET", "/api/events/stream", headers={"X-API-Token": token}) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 10) == "retry: 1000"  # the stream is open
            server.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_DEADLINE):
                    async for _ in lines:  # to its end, which the server writes (no reset)
                        pass
                    code = await server.wait()
            except TimeoutError:
                pytest.fail(f"not stopped {STOP_DEADLINE} s after SIGTERM:\n{log.read_text()}")
    assert code in (0, -signal.SIGTERM), log.read_text()  # uvicorn ends by raising the signal again


@pytest.fixture
async def served(app) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


def _cli_env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    return {**env, "PAYCENTER_API_TOKEN": token, "NO_COLOR": "1"}


async def test_trigger_makes_each_event_it_names(db, merchant, served, tmp_path: Path) -> None:
    made = {}
    for event in ("partially_paid", "cancelled", "refunded"):
        code, stdout, stderr = await paycenter_cli(
            "trigger", event, "--api-url", served, cwd=tmp_path, env=_cli_env(merchant.token)
        )
        assert code == 0, stderr
        made[event] = stdout.strip()
    async with db.reading() as session:
        for event, payment_id in made.items():
            types = list(await session.scalars(select(Event.type).where(Event.payment_id == payment_id)))
            assert types[-1] == event, (event, types)
    code, _, stderr = await paycenter_cli("trigger", "paid", "--api-url", served, cwd=tmp_path, env=_cli_env("pct_x"))
    assert code == 1 and "401" in stderr, stderr


async def test_listen_gives_up_on_a_refused_token(served, tmp_path: Path) -> None:
    code, stdout, stderr = await paycenter_cli(
        "listen", "--api-url", served, "--forward-to", "http://127.0.0.1:9/hook", cwd=tmp_path, env=_cli_env("pct_no")
    )
    assert code == 1 and "HTTP 401" in stderr and "Invalid or revoked API token" in stderr, stderr
    assert "stopped: 0 events forwarded" in stdout


async def test_a_stream_read_blocked_by_retries_is_resumed_without_loss_or_repeat(
    client, merchant, served, monkeypatch
) -> None:
    """While an event's retries wait, listen reads nothing from the stream, for longer than its read
    timeout (here 1 s instead of 45, with the server's heartbeats every 0.2 s instead of 15).
    Heartbeats still arriving keep the connection: no reconnect. Without them the read timeout
    fires during the wait, with the next event already received: once the held event is delivered
    listen reconnects from the position after it, and gets that next event, once, in order."""
    monkeypatch.setattr(listen, "READ_TIMEOUT", 1.0)
    monkeypatch.setattr(listen, "FIRST_RETRY", 0.5)  # tries at 0, 0.5, 1.5, 3.5 s, ...
    monkeypatch.setattr(stream_api, "HEARTBEAT_INTERVAL", 0.2)
    lines: list[str] = []
    monkeypatch.setattr(listen, "_out", lines.append)

    def printed(text: str) -> list[str]:
        return [line for line in lines if text in line]

    r = await client.get("/api/webhook-secret", headers=merchant.headers)
    whsec = r.json()["data"]["signing_secret"]
    receiver = free_port()  # nothing listens there yet
    sink = first = Sink(port=receiver)
    listener = listen.Listener(served, merchant.token, sink.url("/webhook"), None, retry_for=30)
    stop = asyncio.Event()
    running = asyncio.create_task(listener.run(stop))
    try:
        await wait_until(lambda: bool(printed("ready")), timeout=10, what=f"listen ready: {lines}")

        # Heartbeats flowing: blocked 1.5 s and more (retries of the first), the stream stays.
        made = [await pay(client, merchant.token), await pay(client, merchant.token)]
        await wait_until(
            lambda: any("in 2.0 s" in x for x in printed(made[0])), timeout=10, what=f"1.5 s of retries: {lines}"
        )
        await sink.start()
        await wait_until(lambda: len(sink.received) == 2, timeout=10, what=f"both delivered: {lines}")
        assert not printed("connection lost"), lines

        # No heartbeats: the read timeout fires while the third event's retries wait (3.5 s), the
        # fourth received behind it.
        await sink.stop()
        monkeypatch.setattr(stream_api, "HEARTBEAT_INTERVAL", 3600.0)
        made += [await pay(client, merchant.token), await pay(client, merchant.token)]
        await wait_until(
            lambda: any("in 4.0 s" in x for x in printed(made[2])), timeout=15, what=f"3.5 s of retries: {lines}"
        )
        monkeypatch.setattr(stream_api, "HEARTBEAT_INTERVAL", 0.2)
        sink = Sink(port=receiver)
        await sink.start()
        await wait_until(lambda: len(sink.received) == 2, timeout=15, what=f"both delivered after: {lines}")
    finally:
        stop.set()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await sink.stop()
    bodies = signed_bodies([*first.received, *sink.received], whsec)
    # Each once (the third not resent after the reconnect), in order, the fourth not skipped.
    assert [b["transaction_id"] for b in bodies] == made, lines
    third_ok, lost = printed(f"{made[2]}  ")[-1], printed("connection lost")
    assert "-> 200" in third_ok and len(lost) == 1 and "Timeout" in lost[0], lines
    assert lines.index(third_ok) < lines.index(lost[0]) < lines.index(printed(made[3])[0]), lines
    assert len(printed("-> 200")) == 4 and listener.forwarded == 4, lines
