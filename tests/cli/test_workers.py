"""`paycenter api --workers N`: a worker slow to start is waited for, not killed by the supervisor.

uvicorn's supervisor kills a worker that has not answered its health check within
``timeout_worker_healthcheck`` seconds (5 by default), and a new worker answers only once its
main module is imported again (multiprocessing's spawn). ``slow_worker_start.py`` runs the real
`paycenter api` with that import taking SLOW_IMPORT seconds in the workers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from kit.served import free_port, paycenter_cli, serving

pytestmark = pytest.mark.slow  # each worker sleeps SLOW_IMPORT seconds before it can answer

SCRIPT = Path(__file__).with_name("slow_worker_start.py")
# Well past uvicorn's default: its first ping goes 0.5 s after the start and waits 5 s for the
# answer; a first worker that needs this long before it can answer is always killed by then.
SLOW_IMPORT = 8.0
UVICORN_DEFAULT = 5
DEADLINE = 40.0


async def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env |= {
        "PAYCENTER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "PAYCENTER_LOG_LEVEL": "info",  # the supervisor's "Child process [...] died" is an info line
        "SLOW_WORKER_IMPORT": str(SLOW_IMPORT),
    }
    rc, out, err = await paycenter_cli("migrate", cwd=tmp_path, env=env)
    assert rc == 0, out + err
    return env


def _logged(log: Path) -> str:
    return log.read_text(errors="replace")


async def _until_logged(log: Path, text: str, count: int = 1) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while _logged(log).count(text) < count:
        assert loop.time() < deadline, f"{text!r} not logged {count}x within {DEADLINE} s:\n{_logged(log)}"
        await asyncio.sleep(0.1)  # poll interval, bounded by the deadline


async def test_workers_slow_to_import_are_waited_for(tmp_path: Path) -> None:
    env = await _environment(tmp_path)
    port, log = free_port(), tmp_path / "api.log"
    cmd = [sys.executable, str(SCRIPT), "api", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    async with serving(cmd, cwd=tmp_path, env=env, log=log, probe=f"http://127.0.0.1:{port}/healthz"):
        await _until_logged(log, "Application startup complete", count=2)  # both workers serve
    assert "died" not in _logged(log), _logged(log)


async def test_with_uvicorns_default_timeout_they_are_killed(tmp_path: Path) -> None:
    """The failure the option prevents, with the same slow import: what the test above would see."""
    env = await _environment(tmp_path)
    log = tmp_path / "api.log"
    cmd = [sys.executable, str(SCRIPT), "api", "--workers", "2", "--host", "127.0.0.1", "--port", str(free_port()),
           "--worker-healthcheck-timeout", str(UVICORN_DEFAULT)]  # fmt: skip
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        await _until_logged(log, "died")
    finally:
        proc.terminate()  # the supervisor stops its workers (SIGTERM) and exits
        try:
            await asyncio.wait_for(proc.wait(), DEADLINE)
        except TimeoutError:
            proc.kill()
            await proc.wait()
