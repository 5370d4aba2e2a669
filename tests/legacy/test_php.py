"""An OLD merchant of the PHP system paycenter replaces, in PHP, against a real ``paycenter run``.

``tests/php/old_merchant.php`` (with ``tests/php/LegacyClient.php``) is written from the old API's
wire facts (``legacy-api.md`` in the shared reference), not from paycenter's code: an old merchant's
code must work unchanged against a merchant pinned to API version ``legacy``, without the old
defects. Its webhooks go to ``tests/php/receiver.php`` under ``php -S``, a receiver as the old docs
wrote them (``json_encode(json_decode($raw, true))`` before checking ``X-Webhook-Signature``).

Set-up, all on loopback: the Kaspi QR simulator (``paycenter simulate kaspi-qr``) with a device
registered through ``paycenter kaspi-qr``; ``paycenter run`` (SQLite in a temp dir) with the sandbox
and Kaspi QR enabled and webhooks allowed to 127.0.0.0/8; three merchants from
``paycenter merchant create NAME --api-version legacy --json``: the old shop (its payments are paid
in the sandbox), another shop (for the isolation checks) and a Kaspi shop created with
``--default-provider kaspi_qr`` (its payments start at Kaspi through the old public ``/kaspi``).
Without that last option the Kaspi scenario fails, saying what it needs; the others still run.

The PHP script prints one line per scenario, and each failed check with the last HTTP exchange;
``PAYCENTER_TEST_LEGACY_ALL_CHECKS=1`` lists every failed check, not only each scenario's first.
Waits are on conditions with deadlines. php or its curl extension missing: skipped, or a failure
when ``PAYCENTER_TEST_REQUIRE`` contains ``php`` (as in ``test_docs_examples.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from kit.db import REQUIRED
from kit.served import PAYCENTER, free_port, paycenter_cli, paycenter_run, serving

pytestmark = pytest.mark.slow  # php-cli against a `paycenter run` process

PHP_DIR = Path(__file__).parents[1] / "php"
PHP_TIMEOUT = 120.0  # the whole old-merchant script (it waits on its own deadlines, 20 s each at most)
CLI_TIMEOUT = 60.0


def _php() -> str:
    php = shutil.which("php")
    problem = None
    if php is None:
        problem = "php (php-cli) is not installed"
    elif "curl" not in subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30).stdout.split():
        problem = "php has no curl extension (php-curl)"
    if problem:
        if "php" in REQUIRED:
            pytest.fail(f"{problem}, and PAYCENTER_TEST_REQUIRE asks for php")
        pytest.skip(problem)
    assert php is not None
    return php


def _base_env(**extra: str) -> dict[str, str]:
    """A clean environment: no proxies, no PAYCENTER_ settings of the outer shell."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", **extra)
    return env


async def _cli(*args: str, cwd: Path, env: dict[str, str]) -> str:
    code, out, err = await paycenter_cli(*args, cwd=cwd, env=env, timeout=CLI_TIMEOUT)
    if code != 0:
        pytest.fail(f"`paycenter {' '.join(args)}` exited with {code}:\n{out}{err}")
    return out


async def _legacy_merchant(name: str, *extra: str, cwd: Path, env: dict[str, str]) -> tuple[str | None, str]:
    """(api_token, '') of a new merchant pinned to API version `legacy`, or (None, what went wrong)."""
    args = ("merchant", "create", name, "--api-version", "legacy", *extra, "--json")
    code, out, err = await paycenter_cli(*args, cwd=cwd, env=env, timeout=CLI_TIMEOUT)
    if code != 0:
        return None, f"`paycenter {' '.join(args)}` exited with {code}: {(out + err).strip()}"
    return json.loads(out)["api_token"], ""


async def test_old_php_merchant_works_unchanged(tmp_path: Path) -> None:
    php = _php()
    sim_port, receiver_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = _base_env(
        PAYCENTER_DATABASE_URL=f"sqlite:///{tmp_path / 'paycenter.db'}",
        PAYCENTER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        PAYCENTER_ENABLED_PROVIDERS="sandbox,kaspi_qr",
        PAYCENTER_KASPI_QR_BASE_URL=sim_url,
        PAYCENTER_KASPI_QR_SCHEME="r1",
        PAYCENTER_KASPI_QR_API_KEY="test-api-key",  # the simulator's
        PAYCENTER_KASPI_QR_STATUS_INTERVAL_OVERRIDE="0.5",  # the simulator asks for 5 s
        PAYCENTER_POLLER_INTERVAL="0.2",
        PAYCENTER_WORKER_POLL_INTERVAL="0.2",
        PAYCENTER_LOG_LEVEL="warning",
    )
    sim = serving(
        [str(PAYCENTER), "simulate", "kaspi-qr", "--port", str(sim_port)],
        cwd=tmp_path,
        env=env,
        log=tmp_path / "simulator.log",
        probe=f"{sim_url}/_sim/payments",
    )
    async with sim:
        # The Kaspi QR set-up as an operator does it: a trade point, a device registered there.
        points = await _cli("kaspi-qr", "trade-points", cwd=tmp_path, env=env)
        trade_point = points.split()[0]
        registered = await _cli("kaspi-qr", "register-device", "--trade-point", trade_point, cwd=tmp_path, env=env)
        match = re.search(r"PAYCENTER_KASPI_QR_DEVICE_TOKEN=(\S+)", registered)
        assert match, registered
        env["PAYCENTER_KASPI_QR_DEVICE_TOKEN"] = match.group(1)

        async with paycenter_run(tmp_path, env) as running:
            (shop, shop_error), (other, other_error), (kaspi, kaspi_error) = await asyncio.gather(
                _legacy_merchant("Old shop", cwd=tmp_path, env=env),
                _legacy_merchant("Other old shop", cwd=tmp_path, env=env),
                _legacy_merchant("Old Kaspi shop", "--default-provider", "kaspi_qr", cwd=tmp_path, env=env),
            )
            if shop is None or other is None:
                pytest.fail(f"could not create the old merchants: {shop_error or other_error}")
            if kaspi is None:
                kaspi_error = (
                    "the Kaspi shop's new payments must start at Kaspi QR (old merchants send no provider), so "
                    f"the test creates it with --default-provider kaspi_qr: {kaspi_error}"
                )

            secret = secrets.token_hex(16)
            receiver_log = tmp_path / "webhooks.jsonl"
            receiver_url = f"http://127.0.0.1:{receiver_port}"
            receiver_env = _base_env(RECEIVER_LOG=str(receiver_log), WEBHOOK_SECRET=secret)
            receiver = serving(
                [php, "-S", f"127.0.0.1:{receiver_port}", str(PHP_DIR / "receiver.php")],
                cwd=tmp_path,
                env=receiver_env,
                log=tmp_path / "receiver.log",
                probe=f"{receiver_url}/",
            )
            async with receiver:
                script_env = _base_env(
                    PAYCENTER_URL=running.base_url,
                    LEGACY_TOKEN=shop,
                    OTHER_TOKEN=other,
                    KASPI_TOKEN=kaspi or "",
                    KASPI_SETUP_ERROR=kaspi_error,
                    KASPI_SIM_URL=sim_url,
                    RECEIVER_URL=receiver_url,
                    RECEIVER_LOG=str(receiver_log),
                    WEBHOOK_SECRET=secret,
                    # 1: every failed check is listed, not only each scenario's first (a diagnostic run)
                    ALL_CHECKS=os.environ.get("PAYCENTER_TEST_LEGACY_ALL_CHECKS", ""),
                )
                proc = await asyncio.create_subprocess_exec(
                    php,
                    str(PHP_DIR / "old_merchant.php"),
                    cwd=tmp_path,
                    env=script_env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                try:
                    out, _ = await asyncio.wait_for(proc.communicate(), PHP_TIMEOUT)
                except TimeoutError:
                    proc.kill()
                    out, _ = await proc.communicate()
                    pytest.fail(f"old_merchant.php ran past {PHP_TIMEOUT} s:\n{out.decode()}")
            output = out.decode()
            assert proc.returncode == 0, (
                f"the old PHP merchant failed (exit {proc.returncode}):\n{output}\n"
                f"--- paycenter run (last 4000 chars):\n{running.output()[-4000:]}"
            )
