"""Issue 17's done-when: `paycenter listen` as a process against a real `paycenter run` (SQLite
file, a free port) forwards every event to a local receiver with both signatures a real delivery
carries, survives a restart of the server in the middle (events made before, while it is down,
and after: each forwarded exactly once), and stops cleanly on Ctrl-C (SIGINT). `paycenter trigger`
makes one of the events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from kit.asgi_server import serve
from kit.served import PAYCENTER, free_port, paycenter_cli, serving
from kit.sink import Sink, wait_until
from paycenter.app import create_app
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
    base = f"http://127.0.0.1:{port}"
    database_url = f"sqlite:///{workdir / 'paycenter.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env.update(PAYCENTER_DATABASE_URL=database_url, PYTHONUNBUFFERED="1", NO_COLOR="1")
    sink = await Sink().start()
    made: list[str] = []
    listener: asyncio.subprocess.Process | None = None
    try:
        async with (
            paycenter_run(workdir, env, port, "first") as log,
            httpx.AsyncClient(base_url=base, timeout=10, trust_env=False) as http,
        ):
            output = log.read_text()
            token = output.split("Its API token (shown only now, keep it):", 1)[1].split()[0]
            assert token.startswith("pct_"), output
            r = await http.get("/api/webhook-secret", headers={"X-API-Token": token})
            whsec = r.json()["data"]["signing_secret"]
            listen_env = {**env, "PAYCENTER_API_TOKEN": token}
            listener = await asyncio.create_subprocess_exec(
                str(PAYCENTER),
                "listen",
                "--api-url",
                base,
                "--forward-to",
                sink.url("/webhook"),
                "--events",
                "paid,refunded",
                cwd=workdir,
                env=listen_env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            assert listener.stdout is not None
            out = Lines(listener.stdout)
            await wait_until(lambda: bool(out.having("ready")), timeout=30, what=f"listen ready:\n{out}")

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

        listener.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(listener.wait(), timeout=15)
        await asyncio.wait_for(out.task, timeout=5)
        assert code == 0, str(out)
        assert "stopped: 6 events forwarded" in out.lines[-1], str(out)
    finally:
        if listener is not None and listener.returncode is None:
            listener.kill()
            await listener.wait()
        await sink.stop()

    received = sink.at("/webhook")
    bodies = [json.loads(r.body) for r in received]
    assert [b["transaction_id"] for b in bodies] == made, str(out)  # each once, in order, none lost
    assert len({b["event_id"] for b in bodies}) == 6
    verifier = Webhook(whsec)
    for r, body in zip(received, bodies, strict=True):
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert body["event"] == "paid" and headers["x-webhook-event"] == "paid"
        assert verifier.verify(r.body, headers)["event_id"] == body["event_id"] == headers["webhook-id"]
        assert headers["x-webhook-signature"] == hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert headers["user-agent"] == "paycenter-webhooks/1"
    # One line per event, with the local answer.
    forwarded = out.having("-> 200")
    assert len(forwarded) == 6 and all(any(p in line for line in forwarded) for p in made), str(out)


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
