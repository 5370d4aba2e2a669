"""`paycenter run` as a real process on a free loopback port, for tests that need the whole product
(browser tests, the docs' examples): started in its own folder, awaited until /healthz answers,
stopped (SIGTERM, then SIGKILL) when the block ends."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PAYCENTER = Path(sys.executable).with_name("paycenter")
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    base_url: str
    log: Path  # everything the process printed

    def output(self) -> str:
        return self.log.read_text()


@asynccontextmanager
async def serving(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    probe: str,
    ready: Callable[[httpx.Response], bool] = lambda _r: True,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A server process (``cmd``), awaited until ``probe`` (a URL) answers as ``ready`` says, with
    everything it prints in ``log``; stopped (SIGTERM, then SIGKILL) when the block ends, unless it
    has exited by then. Yields the process."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            while True:
                if proc.returncode is not None:
                    pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{_read(log)}")
                try:
                    if ready(await http.get(probe)):
                        break
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    pytest.fail(f"`{' '.join(cmd)}` did not answer {probe} within {START_TIMEOUT} s:\n{_read(log)}")
                await asyncio.sleep(0.1)  # poll interval, bounded by the deadline above
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


@asynccontextmanager
async def paycenter_run(workdir: Path, env: dict[str, str]) -> AsyncIterator[Running]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = workdir / "server.log"
    cmd = [str(PAYCENTER), "run", "--port", str(port)]
    async with serving(
        cmd, cwd=workdir, env=env, log=log, probe=f"{base_url}/healthz", ready=lambda r: r.status_code == 200
    ):
        yield Running(base_url, log)


async def paycenter_cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120.0) -> tuple[int, str, str]:
    """Run one `paycenter` command to its end, as an operator would; (exit code, stdout, stderr).

    ``env`` is the whole environment (callers start from the outer one without PAYCENTER_*);
    ``cwd`` should be a temp folder, so no stray .env or ./paycenter.db is picked up."""
    proc = await asyncio.create_subprocess_exec(
        str(PAYCENTER),
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()
