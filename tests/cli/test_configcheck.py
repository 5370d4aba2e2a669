"""``paycenter config check`` and ``config show``, run as the installed console script.

Each case starts from a configuration that passes (a migrated database, an https public URL, Kaspi
QR fully configured, a secret key) and breaks one thing, so the one line that names it is the only
complaint. SQLite always; PostgreSQL and MariaDB too when their test servers are configured (see
conftest). The two long tables of single broken settings run the same command tree in this
process (typer's runner): a fresh interpreter per case costs ~2 s of CPU, for nothing they test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from kit.certs import _certificate
from kit.db import REQUIRED, SERVER_URLS, _drop_server_database, _fresh_server_database
from kit.served import paycenter_cli
from paycenter import configcheck
from paycenter.cli import app as cli_app
from paycenter.config import Settings
from paycenter.db import Database, create_engine, utcnow
from paycenter.jobs.models import WorkerHeartbeat
from paycenter.migrate import alembic_config, upgrade

pytestmark = pytest.mark.slow  # `paycenter config check` as a process, per case

BACKENDS = ["sqlite"] + [name for name, url in SERVER_URLS.items() if url or name in REQUIRED]
ROOT = Path(__file__).resolve().parents[2]

API_KEY = "kaspi-api-key-do-not-print-0123456789"
DEVICE_TOKEN = "device-token-do-not-print-9876543210"
SECRET_KEY = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()
GOOD = {
    "PAYCENTER_SECRET_KEYS": SECRET_KEY,
    "PAYCENTER_PUBLIC_URL": "https://pay.example.kz",
    "PAYCENTER_ENABLED_PROVIDERS": "kaspi_qr",
    "PAYCENTER_KASPI_QR_BASE_URL": "https://mtokentest.kaspi.kz:8545",
    "PAYCENTER_KASPI_QR_SCHEME": "r1",
    "PAYCENTER_KASPI_QR_API_KEY": API_KEY,
    "PAYCENTER_KASPI_QR_DEVICE_TOKEN": DEVICE_TOKEN,
}
FINDING = re.compile(r"^(ERROR|WARNING|NOTE|OK) +(.*)$")


def sealed(value: str, key: str) -> str:
    """A setting given encrypted, as `paycenter secrets encrypt` prints it."""
    return "fernet:" + Fernet(key.encode()).encrypt(value.encode()).decode()


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def lines(self, level: str) -> list[str]:
        return [m.group(2) for line in self.out.splitlines() if (m := FINDING.match(line)) and m.group(1) == level]

    def problems(self) -> list[str]:
        """Errors and warnings, each as "LEVEL PAYCENTER_X: message"."""
        return [f"{level} {line}" for level in ("ERROR", "WARNING") for line in self.lines(level)]

    def explain(self) -> str:
        return f"exit {self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


# Subprocesses at once: the machine may have two cores, and each start imports the whole app.
_SPAWN = asyncio.Semaphore(2)


async def paycenter(*args: str, cwd: Path, env: dict[str, str]) -> Run:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    full.update(NO_COLOR="1", COLUMNS="200")
    full.update(env)
    async with _SPAWN:
        return Run(*await paycenter_cli(*args, cwd=cwd, env=full))


def invoke(*args: str, cwd: Path, env: dict[str, str]) -> Run:
    """The same command in this process, with exactly ``env`` for PAYCENTER_* and ``cwd`` for ``.env``."""
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PAYCENTER_")}
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli_app, list(args), env={**cleared, **env})
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


@dataclass
class Installation:
    database_url: str
    cwd: Path

    @property
    def backend(self) -> str:
        return make_url(self.database_url).get_backend_name()

    def env(self, **overrides: str) -> dict[str, str]:
        return {**GOOD, "PAYCENTER_DATABASE_URL": self.database_url, **overrides}

    async def check(self, *args: str, **overrides: str) -> Run:
        return await paycenter("config", "check", *args, cwd=self.cwd, env=self.env(**overrides))

    def check_here(self, *args: str, **overrides: str) -> Run:
        return invoke("config", "check", *args, cwd=self.cwd, env=self.env(**overrides))

    async def execute(self, sql: str) -> None:
        engine = create_engine(self.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()


async def _empty_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        path = tmp_path / "paycenter.db"
        sqlite3.connect(path).close()  # an empty file: reachable, no schema
        yield f"sqlite:///{path}"
        return
    server_url = SERVER_URLS[backend]
    if not server_url:
        pytest.fail(f"{backend} is required (PAYCENTER_TEST_REQUIRE) but its URL is not set")
    url = await _fresh_server_database(backend, server_url)
    try:
        yield url
    finally:
        await _drop_server_database(server_url, url)


@pytest.fixture(params=BACKENDS)
async def empty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Installation]:
    """A reachable database with no schema, on each backend."""
    async for url in _empty_database(request.param, tmp_path):
        yield Installation(url, tmp_path)


@pytest.fixture(params=BACKENDS)
async def installed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Installation]:
    """A migrated database, on each backend."""
    async for url in _empty_database(request.param, tmp_path):
        await upgrade(url)
        yield Installation(url, tmp_path)


@pytest.fixture
async def sqlite_installed(tmp_path: Path) -> Installation:
    url = f"sqlite:///{tmp_path / 'paycenter.db'}"
    await upgrade(url)
    return Installation(url, tmp_path)


def _head_and_previous() -> tuple[str, str]:
    script = ScriptDirectory.from_config(alembic_config())
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    return head, previous


# --- the database ------------------------------------------------------------------------------


async def test_a_good_configuration_passes(installed: Installation) -> None:
    run = await installed.check()
    assert run.rc == 0, run.explain()
    assert run.problems() == [], run.explain()
    assert run.out.rstrip().splitlines()[-1].startswith("passed: 0 errors"), run.explain()
    assert any("reachable, schema at the newest revision" in line for line in run.lines("OK")), run.explain()
    assert "OK       PAYCENTER_PUBLIC_URL: payment links start with https://pay.example.kz/pay/" in run.out
    assert "Traceback" not in run.err

    # The variants in this process (the console script itself was run above).
    as_json = json.loads((await asyncio.to_thread(installed.check_here, "--json")).out)
    assert as_json["ok"] is True and as_json["errors"] == 0 and as_json["warnings"] == 0
    assert {f["level"] for f in as_json["findings"]} <= {"ok", "note"}

    assert (await asyncio.to_thread(installed.check_here, "--strict")).rc == 0
    # --strict fails on warnings too.
    warned = await asyncio.to_thread(installed.check_here, "--strict", PAYCENTER_PUBLIC_URL="http://pay.example.kz")
    assert warned.rc == 1 and len(warned.problems()) == 1, warned.explain()


async def test_a_database_without_the_newest_schema_fails(empty: Installation) -> None:
    head, previous = _head_and_previous()

    run = await empty.check()
    assert run.rc == 1, run.explain()
    assert run.problems() == [
        f"ERROR PAYCENTER_DATABASE_URL: the database has no schema yet (newest is {head}): run `paycenter migrate`"
    ], run.explain()

    await upgrade(empty.database_url)
    await empty.execute(f"UPDATE alembic_version SET version_num = '{previous}'")
    behind = await asyncio.to_thread(empty.check_here)
    assert behind.rc == 1, behind.explain()
    assert behind.problems() == [
        f"ERROR PAYCENTER_DATABASE_URL: the schema is at revision {previous}, the newest is {head}: "
        "run `paycenter migrate`"
    ], behind.explain()

    await empty.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    ahead = await asyncio.to_thread(empty.check_here)
    assert ahead.rc == 1, ahead.explain()
    assert [line.split(",")[0] for line in ahead.problems()] == [
        "ERROR PAYCENTER_DATABASE_URL: the schema is at revision 9999_from_the_future"
    ], ahead.explain()
    assert "does not know" in ahead.out and "Install that version" in ahead.out

    await empty.execute(f"UPDATE alembic_version SET version_num = '{head}'")
    assert (await asyncio.to_thread(empty.check_here)).rc == 0


async def test_a_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "paycenter.db"
    run = await paycenter(
        "config", "check", cwd=tmp_path, env={**GOOD, "PAYCENTER_DATABASE_URL": f"sqlite:///{missing}"}
    )
    assert run.rc == 1, run.explain()
    assert run.problems() == [
        f"ERROR PAYCENTER_DATABASE_URL: SQLite file {missing} does not exist: run `paycenter migrate`"
    ], run.explain()
    assert not missing.exists() and not missing.parent.exists()


async def test_unreachable_and_unsupported_databases_fail(tmp_path: Path) -> None:
    cases = {
        # Port 1: nothing listens, the connection is refused at once. The password is never printed.
        "postgresql://pc:pw-not-shown@127.0.0.1:1/pc": "postgresql://pc:***@127.0.0.1:1/pc: cannot connect",
        "mysql://pc:pw-not-shown@127.0.0.1:1/paycenter": "mysql://pc:***@127.0.0.1:1/paycenter: cannot connect",
        "oracle://pc:pw-not-shown@db/paycenter": "unsupported database 'oracle'",
        "sqlite://": "an in-memory SQLite database",
    }
    runs = await asyncio.gather(
        *(paycenter("config", "check", cwd=tmp_path, env={**GOOD, "PAYCENTER_DATABASE_URL": url}) for url in cases)
    )
    for (url, expected), run in zip(cases.items(), runs, strict=True):
        assert run.rc == 1, f"{url}: {run.explain()}"
        errors = run.lines("ERROR")
        assert len(errors) == 1 and errors[0].startswith("PAYCENTER_DATABASE_URL: "), f"{url}: {run.explain()}"
        assert expected in errors[0], f"{url}: {run.explain()}"
        assert "pw-not-shown" not in run.out + run.err
        assert "Traceback" not in run.err


@asynccontextmanager
async def _locked(installation: Installation) -> AsyncIterator[None]:
    """Another session holds a lock that blocks our reads, until the block ends."""
    if installation.backend == "sqlite":
        path = make_url(installation.database_url).database
        assert path is not None
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("PRAGMA journal_mode=DELETE")  # WAL readers would not wait for a writer
            holder.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            holder.close()
        return
    engine = create_engine(installation.database_url)
    try:
        async with engine.connect() as conn:
            if installation.backend == "postgresql":  # e.g. a migration altering the table
                await conn.execute(text("LOCK TABLE merchants IN ACCESS EXCLUSIVE MODE"))
            else:
                await conn.execute(text("LOCK TABLES merchants WRITE"))
            try:
                yield
            finally:
                if installation.backend != "postgresql":
                    await conn.execute(text("UNLOCK TABLES"))
                await conn.rollback()
    finally:
        await engine.dispose()


async def test_a_locked_database_ends_the_check_at_its_timeout(installed: Installation) -> None:
    """A lock held elsewhere makes the check give up after --timeout, whatever the SQLite busy
    timeout, with one line that says so; it is still held when the check has ended."""
    async with _locked(installed):
        try:
            async with asyncio.timeout(60):  # a guard: the check alone would wait far longer
                run = await asyncio.to_thread(
                    installed.check_here, "--timeout", "1", PAYCENTER_SQLITE_BUSY_TIMEOUT_MS="600000"
                )
        except TimeoutError:
            pytest.fail("config check did not end while another session held a lock")
    assert run.rc == 1, run.explain()
    problems = run.problems()
    assert len(problems) == 1 and problems[0].startswith("ERROR PAYCENTER_DATABASE_URL: "), run.explain()
    assert "locked" in problems[0], run.explain()
    assert (await asyncio.to_thread(installed.check_here)).rc == 0


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_a_database_host_the_resolver_does_not_answer_for(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drivers resolve host names on a thread asyncio cannot stop: the check must end at its
    timeout and not wait for the resolver (which, here, answers only when the test lets it)."""
    host = "db.resolver-does-not-answer.test"
    asked, release = threading.Event(), threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == host:
            asked.set()
            release.wait(120)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    env = {**GOOD, "PAYCENTER_DATABASE_URL": f"{scheme}://pc:pw-not-shown@{host}/paycenter"}
    try:
        async with asyncio.timeout(60):  # a guard: without a bound the check waits for `release`
            run = await asyncio.to_thread(invoke, "config", "check", "--timeout", "0.5", cwd=tmp_path, env=env)
    except TimeoutError:
        pytest.fail("config check waited for the resolver")
    finally:
        still_waiting = not release.is_set()
        release.set()
    assert asked.is_set() and still_waiting
    assert run.rc == 1, run.explain()
    assert run.lines("ERROR") == [
        f"PAYCENTER_DATABASE_URL: {scheme}://pc:***@{host}/paycenter: no answer within 0.5 s"
    ], run.explain()


# --- settings, one broken at a time ----------------------------------------------------------------


@dataclass
class Case:
    overrides: dict[str, str]
    expected: str  # the one problem line: "ERROR PAYCENTER_X: ..." (a prefix)

    @property
    def rc(self) -> int:
        return 1 if self.expected.startswith("ERROR") else 0


BROKEN = {
    "public URL unset": Case(
        {"PAYCENTER_PUBLIC_URL": ""}, "ERROR PAYCENTER_PUBLIC_URL: not set: payment links would be built"
    ),
    "public URL without a scheme": Case(
        {"PAYCENTER_PUBLIC_URL": "pay.example.kz"}, "ERROR PAYCENTER_PUBLIC_URL: 'pay.example.kz' is not an http(s) URL"
    ),
    "public URL with a query": Case(
        {"PAYCENTER_PUBLIC_URL": "https://pay.example.kz/?a=1"},
        "ERROR PAYCENTER_PUBLIC_URL: 'https://pay.example.kz/?a=1'",
    ),
    "public URL over plain http": Case(
        {"PAYCENTER_PUBLIC_URL": "http://pay.example.kz"},
        "WARNING PAYCENTER_PUBLIC_URL: http://pay.example.kz is plain http",
    ),
    "no provider": Case({"PAYCENTER_ENABLED_PROVIDERS": " "}, "ERROR PAYCENTER_ENABLED_PROVIDERS: empty"),
    "unknown provider": Case(
        {"PAYCENTER_ENABLED_PROVIDERS": "kaspi_qr,paypal"},
        "ERROR PAYCENTER_ENABLED_PROVIDERS: unknown provider(s) paypal",
    ),
    "sandbox in production": Case(
        {"PAYCENTER_ENABLED_PROVIDERS": "kaspi_qr,sandbox"},
        "WARNING PAYCENTER_ENABLED_PROVIDERS: sandbox is enabled: its payments become paid without any money",
    ),
    "kaspi_qr without a base URL": Case(
        {"PAYCENTER_KASPI_QR_BASE_URL": ""}, "ERROR PAYCENTER_KASPI_QR_BASE_URL: not set (kaspi_qr is enabled)"
    ),
    "kaspi_qr over plain http": Case(
        {"PAYCENTER_KASPI_QR_BASE_URL": "http://kaspi.example:8545"},
        "WARNING PAYCENTER_KASPI_QR_BASE_URL: http://kaspi.example:8545 is plain http",
    ),
    "r1 without an API key": Case(
        {"PAYCENTER_KASPI_QR_API_KEY": ""}, "ERROR PAYCENTER_KASPI_QR_API_KEY: not set: scheme r1"
    ),
    "kaspi_qr without a device token": Case(
        {"PAYCENTER_KASPI_QR_DEVICE_TOKEN": ""},
        "ERROR PAYCENTER_KASPI_QR_DEVICE_TOKEN: not set: run `paycenter kaspi-qr trade-points`",
    ),
    "a device token encrypted with a key not configured": Case(
        {"PAYCENTER_KASPI_QR_DEVICE_TOKEN": "fernet:" + Fernet(OTHER_KEY).encrypt(b"token").decode()},
        "ERROR PAYCENTER_KASPI_QR_DEVICE_TOKEN: given encrypted, but",
    ),
    "a CA file that is not there": Case(
        {"PAYCENTER_KASPI_QR_CA_FILE": "/nonexistent/ca.pem"},
        "ERROR PAYCENTER_KASPI_QR_CA_FILE: /nonexistent/ca.pem does not exist",
    ),
    "webhooks allowed into private networks": Case(
        {"PAYCENTER_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8"},
        "WARNING PAYCENTER_WEBHOOK_ALLOWED_NETWORKS: 10.0.0.0/8: the SSRF guard lets webhooks reach",
    ),
    "no webhook retries": Case(
        {"PAYCENTER_WEBHOOK_RETRY_SCHEDULE": ""}, "WARNING PAYCENTER_WEBHOOK_RETRY_SCHEDULE: empty"
    ),
    "cleanup in a time zone that does not exist": Case(
        {"PAYCENTER_CLEANUP_TIMEZONE": "Mars/Olympus_Mons"},
        "ERROR PAYCENTER_CLEANUP_TIMEZONE: 'Mars/Olympus_Mons' is not a time zone",
    ),
    "cleanup retention that is not a duration": Case(
        {"PAYCENTER_CLEANUP_RETENTION": "forever"}, "ERROR PAYCENTER_CLEANUP_RETENTION: not a duration: 'forever'"
    ),
    "a log level uvicorn does not know": Case(
        {"PAYCENTER_LOG_LEVEL": "loud"}, "ERROR PAYCENTER_LOG_LEVEL: 'loud' is not one of"
    ),
    "secrets stored in plain text": Case(
        {"PAYCENTER_SECRET_KEYS": ""},
        "WARNING PAYCENTER_SECRET_KEYS: empty: webhook secrets, signing secrets and terminal tokens are stored in "
        "plain text",
    ),
    "a secret key that is not a Fernet key": Case(
        {"PAYCENTER_SECRET_KEYS": "not-a-key"}, "ERROR PAYCENTER_SECRET_KEYS: PAYCENTER_SECRET_KEYS holds an invalid"
    ),
    "an encrypted setting the keys do not open": Case(
        {"PAYCENTER_KASPI_QR_API_KEY": sealed(API_KEY, OTHER_KEY)},
        "ERROR PAYCENTER_KASPI_QR_API_KEY: given encrypted, but",
    ),
    "kaspi_pos without a terminal": Case(
        {"PAYCENTER_ENABLED_PROVIDERS": "kaspi_qr,kaspi_pos"},
        "WARNING PAYCENTER_ENABLED_PROVIDERS: kaspi_pos is enabled but no terminal is active",
    ),
}


async def test_each_broken_setting_is_named_on_one_line(sqlite_installed: Installation) -> None:
    runs = [await asyncio.to_thread(sqlite_installed.check_here, **case.overrides) for case in BROKEN.values()]
    failures = []
    for (name, case), run in zip(BROKEN.items(), runs, strict=True):
        problems = run.problems()
        if run.rc != case.rc or len(problems) != 1 or not problems[0].startswith(case.expected):
            failures.append(f"--- {name}: expected exit {case.rc} and {case.expected!r}\n{run.explain()}")
    assert not failures, "\n".join(failures)


async def test_settings_that_do_not_load_are_listed_without_a_traceback(tmp_path: Path) -> None:
    env = {
        **GOOD,
        "PAYCENTER_PORT": "eighty",
        "PAYCENTER_CLEANUP_SCHEDULE": "every night",
        "PAYCENTER_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/33",
        "PAYCENTER_KASPI_QR_SCHEME": "r9",
    }
    run = await paycenter("config", "check", cwd=tmp_path, env=env)
    assert run.rc == 1, run.explain()
    assert "Traceback" not in run.err
    assert run.out.startswith("paycenter config check: the settings do not load")
    errors = run.lines("ERROR")
    assert [e.split(":")[0] for e in errors] == [
        "PAYCENTER_PORT",
        "PAYCENTER_WEBHOOK_ALLOWED_NETWORKS",
        "PAYCENTER_KASPI_QR_SCHEME",
        "PAYCENTER_CLEANUP_SCHEDULE",
    ], run.explain()
    assert "PAYCENTER_CLEANUP_SCHEDULE: not a cron expression: 'every night'" in run.out
    assert "'eighty'" in run.out
    assert run.out.rstrip().endswith("FAILED: 4 errors, 0 warnings")

    as_json = json.loads((await paycenter("config", "check", "--json", cwd=tmp_path, env=env)).out)
    assert as_json["ok"] is False and as_json["errors"] == 4


# --- Kaspi -------------------------------------------------------------------------------------


async def test_client_certificate_schemes(sqlite_installed: Installation, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, "client")
    other_cert, _ = _certificate(tmp_path, "other")
    locked_cert, locked_key = _certificate(tmp_path, "locked", passphrase=b"not-given")
    r3 = {
        "PAYCENTER_KASPI_QR_SCHEME": "r3",
        "PAYCENTER_KASPI_QR_API_KEY": "",
        "PAYCENTER_KASPI_QR_CERT_FILE": str(cert),
        "PAYCENTER_KASPI_QR_KEY_FILE": str(key),
        "PAYCENTER_KASPI_QR_ORGANIZATION_BIN": "123456789012",
    }
    cases = {
        "r3 complete": ({}, None),
        "r2 needs no BIN": ({"PAYCENTER_KASPI_QR_SCHEME": "r2", "PAYCENTER_KASPI_QR_ORGANIZATION_BIN": ""}, None),
        "BIN too short": (
            {"PAYCENTER_KASPI_QR_ORGANIZATION_BIN": "12345"},
            "ERROR PAYCENTER_KASPI_QR_ORGANIZATION_BIN: '12345' is not a BIN",
        ),
        "BIN with letters": (
            {"PAYCENTER_KASPI_QR_ORGANIZATION_BIN": "12345678901X"},
            "ERROR PAYCENTER_KASPI_QR_ORGANIZATION_BIN: '12345678901X' is not a BIN",
        ),
        "no certificate": ({"PAYCENTER_KASPI_QR_CERT_FILE": ""}, "ERROR PAYCENTER_KASPI_QR_CERT_FILE: not set"),
        "no key": ({"PAYCENTER_KASPI_QR_KEY_FILE": ""}, "ERROR PAYCENTER_KASPI_QR_KEY_FILE: not set"),
        "key file missing": (
            {"PAYCENTER_KASPI_QR_KEY_FILE": str(tmp_path / "gone.key")},
            f"ERROR PAYCENTER_KASPI_QR_KEY_FILE: {tmp_path / 'gone.key'} does not exist",
        ),
        "key of another certificate": (
            {"PAYCENTER_KASPI_QR_CERT_FILE": str(other_cert)},
            f"ERROR PAYCENTER_KASPI_QR_CERT_FILE: {other_cert} with {key}: not a PEM certificate and its key",
        ),
        "a directory for a certificate": (
            {"PAYCENTER_KASPI_QR_CERT_FILE": str(tmp_path)},
            f"ERROR PAYCENTER_KASPI_QR_CERT_FILE: {tmp_path} is not a file",
        ),
        # Named as such, and never a "PEM pass phrase" prompt that would hold the command.
        "a key with a passphrase": (
            {"PAYCENTER_KASPI_QR_CERT_FILE": str(locked_cert), "PAYCENTER_KASPI_QR_KEY_FILE": str(locked_key)},
            f"ERROR PAYCENTER_KASPI_QR_KEY_FILE: {locked_key} is encrypted with a passphrase",
        ),
    }
    runs = [await asyncio.to_thread(sqlite_installed.check_here, **{**r3, **extra}) for extra, _ in cases.values()]
    failures = []
    for (name, (_, expected)), run in zip(cases.items(), runs, strict=True):
        problems = run.problems()
        good = run.rc == 0 and problems == [] if expected is None else run.rc == 1 and problems[:1] == problems
        if not good or (expected is not None and not problems[0].startswith(expected)):
            failures.append(f"--- {name}: expected {expected!r}\n{run.explain()}")
    assert not failures, "\n".join(failures)


async def test_kaspi_pos_is_fine_once_a_terminal_is_active(installed: Installation) -> None:
    env = {"PAYCENTER_ENABLED_PROVIDERS": "kaspi_pos"}
    before = await asyncio.to_thread(installed.check_here, **env)
    assert before.rc == 0, before.explain()
    assert [p.split(":")[0] for p in before.problems()] == ["WARNING PAYCENTER_ENABLED_PROVIDERS"], before.explain()

    added = await paycenter(
        "terminal",
        "add",
        "till-1",
        "--url",
        "https://192.168.1.50:8080",
        "--token",
        "terminal-token",
        cwd=installed.cwd,
        env=installed.env(),
    )
    assert added.rc == 0, added.explain()
    after = await asyncio.to_thread(installed.check_here, **env)
    assert after.rc == 0 and after.problems() == [], after.explain()
    assert "OK       PAYCENTER_ENABLED_PROVIDERS: kaspi_pos: 1 active terminal(s)" in after.out


async def test_merchants_whose_payments_would_fall_back_to_a_disabled_provider(installed: Installation) -> None:
    for name in ("Shop", "Other shop"):
        created = await paycenter("merchant", "create", name, cwd=installed.cwd, env=installed.env())
        assert created.rc == 0, created.explain()

    # No default provider means the sandbox, which is not enabled: payments without "provider" fail.
    run = await installed.check()
    assert run.rc == 0, run.explain()
    assert run.problems() == [
        "WARNING PAYCENTER_ENABLED_PROVIDERS: 2 active merchant(s) have no default provider among those enabled "
        '(kaspi_qr): their payments that name no "provider" are refused'
    ], run.explain()

    await installed.execute("UPDATE merchants SET default_provider = 'kaspi_qr' WHERE name = 'Shop'")
    one = await asyncio.to_thread(installed.check_here)
    assert [p.split(":", 1)[1].split("(")[0].strip() for p in one.problems()] == ["1 active merchant"], one.explain()
    with_sandbox = await asyncio.to_thread(installed.check_here, PAYCENTER_ENABLED_PROVIDERS="kaspi_qr,sandbox")
    assert [p.split(":")[1].strip() for p in with_sandbox.problems()] == ["sandbox is enabled"], with_sandbox.explain()
    await installed.execute("UPDATE merchants SET is_active = false WHERE name = 'Other shop'")
    assert (await asyncio.to_thread(installed.check_here)).problems() == []


# --- the Kaspi biller ---------------------------------------------------------------------------

BILLER = {
    "PAYCENTER_ENABLED_PROVIDERS": "kaspi_qr,kaspi_biller",
    "PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS": "192.0.2.0/24, 2a02:a00::/32",
    "PAYCENTER_KASPI_BILLER_SECRET": "data1-shared-value-not-printed",
    "PAYCENTER_KASPI_BILLER_SERVICE_NAME": "Fitness Alma",
}


def biller_problems(run: Run) -> list[str]:
    """Problems about the biller's settings and the public URL it is given to Kaspi by (the
    provider's name is checked against the registry apart, by check_providers)."""
    names = ("PAYCENTER_KASPI_BILLER_", "PAYCENTER_PUBLIC_URL")
    return [p for p in run.problems() if p.split(" ", 1)[1].startswith(names)]


BILLER_BROKEN = {
    "no networks": (
        {"PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS": " "},
        ["ERROR PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS: empty: nobody may call the biller endpoint"],
    ),
    "a network that is not one": (
        {"PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS": "192.0.2.0/24,kaspi.kz"},
        ["ERROR PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS: 'kaspi.kz' is not an IP network"],
    ),
    "a mask past 32 bits": (
        {"PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS": "10.0.0.0/33"},
        ["ERROR PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS: '10.0.0.0/33' is not an IP network"],
    ),
    "everyone, IPv4": (
        {"PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS": "0.0.0.0/0"},
        ["WARNING PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS: 0.0.0.0/0 lets any address call the biller endpoint"],
    ),
    "everyone, IPv6": (
        {"PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS": "192.0.2.0/24,::/0"},
        ["WARNING PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS: ::/0 lets any address call the biller endpoint"],
    ),
    "no data1 secret": (
        {"PAYCENTER_KASPI_BILLER_SECRET": ""},
        ["WARNING PAYCENTER_KASPI_BILLER_SECRET: not set: the biller endpoint trusts the source address alone"],
    ),
    "no service name": (
        {"PAYCENTER_KASPI_BILLER_SERVICE_NAME": "  "},
        ["WARNING PAYCENTER_KASPI_BILLER_SERVICE_NAME: not set: the payment page tells payers to find the merchant"],
    ),
    "a path without its slash": (
        {"PAYCENTER_KASPI_BILLER_PATH": "kaspi/biller"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: 'kaspi/biller' is not a plain URL path"],
    ),
    "a path with a query": (
        {"PAYCENTER_KASPI_BILLER_PATH": "/kaspi?x=1"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: '/kaspi?x=1' is not a plain URL path"],
    ),
    "the root": (
        {"PAYCENTER_KASPI_BILLER_PATH": "/"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: '/' is not a plain URL path"],
    ),
    "a trailing slash": (
        {"PAYCENTER_KASPI_BILLER_PATH": "/kaspi/biller/"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: '/kaspi/biller/' is not a plain URL path"],
    ),
    "under the API": (
        {"PAYCENTER_KASPI_BILLER_PATH": "/api/kaspi"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: /api/kaspi collides with paycenter's own routes under /api"],
    ),
    "the payment page's": (
        {"PAYCENTER_KASPI_BILLER_PATH": "/pay"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: /pay collides with paycenter's own routes under /pay"],
    ),
    "under the admin, in capitals": (
        {"PAYCENTER_KASPI_BILLER_PATH": "/Admin/biller"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: /Admin/biller collides with paycenter's own routes under /Admin"],
    ),
    "under the docs": (
        {"PAYCENTER_KASPI_BILLER_PATH": "/docs/kaspi"},
        ["ERROR PAYCENTER_KASPI_BILLER_PATH: /docs/kaspi collides with paycenter's own routes under /docs"],
    ),
    "no public URL": (
        {"PAYCENTER_PUBLIC_URL": ""},
        [
            "ERROR PAYCENTER_PUBLIC_URL: not set: payment links would be built",
            "ERROR PAYCENTER_PUBLIC_URL: not set, and the biller endpoint's address given to Kaspi is built from it",
        ],
    ),
}


async def test_the_biller_settings_are_checked(sqlite_installed: Installation) -> None:
    good = await asyncio.to_thread(sqlite_installed.check_here, **BILLER)
    assert biller_problems(good) == [], good.explain()
    assert (
        "OK       PAYCENTER_KASPI_BILLER_PATH: kaspi_biller: give Kaspi https://pay.example.kz/kaspi/biller "
        "(JSON replies, called from 192.0.2.0/24, 2a02:a00::/32)"
    ) in good.out, good.explain()
    assert "data1-shared-value-not-printed" not in good.out
    # Not enabled: nothing of it is checked.
    off = await asyncio.to_thread(
        sqlite_installed.check_here,
        **{**BILLER, "PAYCENTER_ENABLED_PROVIDERS": "kaspi_qr", "PAYCENTER_KASPI_BILLER_PATH": "/api"},
    )
    assert off.rc == 0 and off.problems() == [], off.explain()

    runs = [
        await asyncio.to_thread(sqlite_installed.check_here, **{**BILLER, **overrides})
        for overrides, _ in BILLER_BROKEN.values()
    ]
    failures = []
    for (name, (_, expected)), run in zip(BILLER_BROKEN.items(), runs, strict=True):
        found = biller_problems(run)
        errors = any(e.startswith("ERROR") for e in expected)
        if len(found) != len(expected) or not all(f.startswith(e) for f, e in zip(found, expected, strict=True)):
            failures.append(f"--- {name}: expected {expected!r}\n{run.explain()}")
        elif errors and run.rc != 1:
            failures.append(f"--- {name}: expected exit 1\n{run.explain()}")
    assert not failures, "\n".join(failures)


def test_the_reserved_segments_are_the_apps_routes(tmp_path: Path) -> None:
    """The biller's path may take no first segment of paycenter's own routes: the list the check
    holds is every first segment the app routes, apart from the biller's own path."""
    from paycenter.app import create_app

    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'unused.db'}")  # type: ignore[call-arg]
    app = create_app(settings)

    def paths(routes: list[Any], prefix: str = "") -> list[str]:
        found = []
        for route in routes:
            inner = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.120)
            if inner is not None:
                found += paths(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
            elif hasattr(route, "path"):
                found.append(prefix + route.path)
        return found

    segments = {p.split("/")[1] for p in paths(app.routes) if p != settings.kaspi_biller_path and p != "/"}
    assert len(segments) > 5, segments  # the walk still finds the routes
    assert segments == set(configcheck.RESERVED_SEGMENTS)


# --- processes and secrets ----------------------------------------------------------------------


async def test_sqlite_shared_by_several_processes_is_noted(sqlite_installed: Installation) -> None:
    one = await sqlite_installed.check()
    assert "NOTE     PAYCENTER_DATABASE_URL: SQLite: good for one host and one process" in one.out, one.explain()

    db = Database(sqlite_installed.database_url)
    try:
        now = utcnow()
        async with db.transaction() as session:
            for pid in (101, 102):
                session.add(
                    WorkerHeartbeat(id=f"w{pid}", host="shop-1", pid=pid, started_at=now, last_seen_at=now, loops={})
                )
            # A worker that died an hour ago is not counted.
            then = now - dt.timedelta(hours=1)
            session.add(WorkerHeartbeat(id="old", host="shop-2", pid=7, started_at=then, last_seen_at=then, loops={}))
        two = await asyncio.to_thread(sqlite_installed.check_here)
        assert two.rc == 0 and two.problems() == [], two.explain()
        assert "NOTE     PAYCENTER_DATABASE_URL: SQLite, and 2 worker processes are running" in two.out, two.explain()

        async with db.transaction() as session:
            session.add(WorkerHeartbeat(id="w2", host="shop-2", pid=101, started_at=now, last_seen_at=now, loops={}))
        hosts = await asyncio.to_thread(sqlite_installed.check_here)
        assert hosts.rc == 0, hosts.explain()
        assert hosts.problems() == [
            "WARNING PAYCENTER_DATABASE_URL: SQLite, and workers on 2 hosts (shop-1, shop-2) use it: SQLite over "
            "a network file system can lose data. Use PostgreSQL for several hosts"
        ], hosts.explain()
    finally:
        await db.dispose()


async def test_an_encrypted_setting_opens_with_the_keys(sqlite_installed: Installation) -> None:
    run = await sqlite_installed.check(
        PAYCENTER_KASPI_QR_API_KEY=sealed(API_KEY, SECRET_KEY),
        PAYCENTER_SECRET_KEYS=f"{OTHER_KEY},{SECRET_KEY}",  # the second key still decrypts
    )
    assert run.rc == 0 and run.problems() == [], run.explain()
    assert "OK       PAYCENTER_SECRET_KEYS: secrets are encrypted at rest (2 key(s))" in run.out


async def test_secrets_in_the_database_must_open_with_the_keys(installed: Installation) -> None:
    created = await paycenter("merchant", "create", "Shop", cwd=installed.cwd, env=installed.env())
    assert created.rc == 0, created.explain()
    await installed.execute("UPDATE merchants SET default_provider = 'kaspi_qr'")

    assert (await asyncio.to_thread(installed.check_here)).problems() == []
    dropped = await installed.check(PAYCENTER_SECRET_KEYS=OTHER_KEY)  # rotated, and the old key dropped too soon
    assert dropped.rc == 1, dropped.explain()
    assert dropped.problems() == [
        "ERROR PAYCENTER_SECRET_KEYS: secrets in the database do not open with these keys: merchants.signing_secret "
        "(1). They were encrypted with a key that is missing: add it back after the current one, then run "
        "`paycenter secrets rotate`"
    ], dropped.explain()
    rotating = await asyncio.to_thread(installed.check_here, PAYCENTER_SECRET_KEYS=f"{OTHER_KEY},{SECRET_KEY}")
    assert rotating.rc == 0 and rotating.problems() == [], rotating.explain()

    no_keys = await asyncio.to_thread(installed.check_here, PAYCENTER_SECRET_KEYS="")
    assert no_keys.rc == 1, no_keys.explain()
    assert (
        "ERROR    PAYCENTER_SECRET_KEYS: empty, but secrets in the database are encrypted: merchants.signing_secret"
        in (no_keys.out)
    )

    # A merchant made before keys were set keeps a plain secret until `paycenter secrets rotate`.
    plain = await paycenter(
        "merchant", "create", "Old shop", cwd=installed.cwd, env=installed.env(PAYCENTER_SECRET_KEYS="")
    )
    assert plain.rc == 0, plain.explain()
    await installed.execute("UPDATE merchants SET default_provider = 'kaspi_qr'")
    mixed = await asyncio.to_thread(installed.check_here)
    assert mixed.rc == 0 and mixed.problems() == [], mixed.explain()
    assert "NOTE     PAYCENTER_SECRET_KEYS: 1 secret(s) in the database are still plain text" in mixed.out


# --- config show --------------------------------------------------------------------------------


async def test_show_prints_every_setting_with_secrets_masked(tmp_path: Path) -> None:
    env = {
        **GOOD,
        "PAYCENTER_DATABASE_URL": "postgresql://paycenter:db-password-not-shown@db.internal/paycenter",
        "PAYCENTER_CLEANUP_SCHEDULE": "30 2 * * *",
    }
    run = await paycenter("config", "show", cwd=tmp_path, env=env)
    assert run.rc == 0, run.explain()
    for secret in (API_KEY, DEVICE_TOKEN, "db-password-not-shown"):
        assert secret not in run.out + run.err
    lines = {line.split("=", 1)[0]: line for line in run.out.splitlines()}
    assert set(lines) == {configcheck.env_name(name) for name in Settings.model_fields}
    assert lines["PAYCENTER_KASPI_QR_API_KEY"] == "PAYCENTER_KASPI_QR_API_KEY=********"
    assert lines["PAYCENTER_KASPI_QR_DEVICE_TOKEN"] == "PAYCENTER_KASPI_QR_DEVICE_TOKEN=********"
    assert (
        lines["PAYCENTER_DATABASE_URL"] == 'PAYCENTER_DATABASE_URL="postgresql://paycenter:***@db.internal/paycenter"'
    )
    assert lines["PAYCENTER_CLEANUP_SCHEDULE"] == 'PAYCENTER_CLEANUP_SCHEDULE="30 2 * * *"'
    assert lines["PAYCENTER_PUBLIC_URL"] == "PAYCENTER_PUBLIC_URL=https://pay.example.kz"
    assert re.fullmatch(r"PAYCENTER_WEBHOOK_TIMEOUT=15\.0 +# default", lines["PAYCENTER_WEBHOOK_TIMEOUT"])
    # A number whose name says "secret" is not a secret.
    assert lines["PAYCENTER_WEBHOOK_SECRET_GRACE_SECONDS"].startswith("PAYCENTER_WEBHOOK_SECRET_GRACE_SECONDS=86400")

    as_json = json.loads((await paycenter("config", "show", "--json", cwd=tmp_path, env=env)).out)
    assert as_json["PAYCENTER_KASPI_QR_API_KEY"] == "********"
    assert as_json["PAYCENTER_KASPI_QR_SCHEME"] == "r1"


async def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "paycenter.env"
    env_file.write_text(
        "# comment\n"
        'PAYCENTER_CLEANUP_SCHEDULE="15 4 * * *"\n'
        "PAYCENTER_PUBLIC_URL=https://from-file.example.kz\n"
        "PAYCENTER_HOST=0.0.0.0\n"
    )
    env = {"PAYCENTER_PUBLIC_URL": "https://from-env.example.kz"}
    run = await paycenter("config", "show", "--json", "--env-file", str(env_file), cwd=tmp_path, env=env)
    shown = json.loads(run.out)
    assert shown["PAYCENTER_CLEANUP_SCHEDULE"] == "15 4 * * *"
    assert shown["PAYCENTER_HOST"] == "0.0.0.0"
    assert shown["PAYCENTER_PUBLIC_URL"] == "https://from-env.example.kz"

    for command in ("show", "check"):
        missing = await paycenter("config", command, "--env-file", str(tmp_path / "nope.env"), cwd=tmp_path, env={})
        assert missing.rc == 1, missing.explain()
        assert f"--env-file {tmp_path / 'nope.env'}: no such file" in missing.out + missing.err


# --- the deployment files ------------------------------------------------------------------------


def test_the_env_file_example_documents_every_setting() -> None:
    example = (ROOT / "deploy" / "paycenter.env.example").read_text()
    documented = set(re.findall(r"^#?\s*(PAYCENTER_[A-Z0-9_]+)=", example, flags=re.MULTILINE))
    settings = {configcheck.env_name(name) for name in Settings.model_fields}
    assert sorted(settings - documented) == [], "settings missing from deploy/paycenter.env.example"
    assert sorted(documented - settings) == [], "deploy/paycenter.env.example names settings that do not exist"

    # "A commented-out line shows the default": each one with the value paycenter uses when unset.
    defaults = dict(item[:2] for item in configcheck.show_items(Settings(_env_file=None)))  # type: ignore[call-arg]
    commented = re.findall(r"^#(PAYCENTER_[A-Z0-9_]+)=(.*)$", example, flags=re.MULTILINE)
    wrong = [
        f"{name}={value} (default {defaults[name]})" for name, value in commented if value.strip('"') != defaults[name]
    ]
    assert wrong == [], "deploy/paycenter.env.example shows values that are not the defaults"


# The operators' guides whose commands and settings are checked against the real ones.
GUIDES = ("deploy.md", "kaspi.md", "migrating.md")


def _command_lines() -> list[tuple[str, str]]:
    """(file, arguments) for every paycenter command the guides show (inline `paycenter ...`, and
    lines of their code blocks) and the systemd units run."""
    found = []
    for name in GUIDES:
        guide = (ROOT / "docs" / name).read_text()
        code = "\n".join(re.findall(r"^\s*```[a-z]*\n(.*?)^\s*```", guide, flags=re.MULTILINE | re.DOTALL))
        for match in re.finditer(r"`paycenter ([^`]+)`", guide):
            found.append((name, match.group(1)))
        for match in re.finditer(r"^(?:\s*|.*/bin/)paycenter ([a-z].*)$", code, flags=re.MULTILINE):
            found.append((name, match.group(1)))
    for unit in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        for match in re.finditer(r"^ExecStart=\S*/bin/paycenter (.*)$", unit.read_text(), flags=re.MULTILINE):
            found.append((unit.name, match.group(1)))
    return found


def test_the_guide_and_the_units_run_only_commands_and_options_that_exist() -> None:
    import typer

    root = typer.main.get_command(cli_app)  # typer's own click
    lines = _command_lines()
    assert len(lines) > 30, lines  # the patterns still find the guide's commands
    wrong = []
    for where, line in lines:
        words = line.replace("|", " ").split()
        command: Any = root
        path: list[str] = []
        with root.context_class(root) as ctx:
            for word in words:
                if not hasattr(command, "get_command") or word.startswith("-"):  # a group's subcommands
                    break
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break  # "paycenter ..." and the like: not a command
                sub = command.get_command(ctx, word)
                if sub is None:
                    wrong.append(f"{where}: `paycenter {line}`: no command {' '.join([*path, word])!r}")
                    break
                command, path = sub, [*path, word]
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line):
            if option not in options | {"--help"}:
                wrong.append(f"{where}: `paycenter {line}`: {' '.join(path)} has no option {option}")
    assert wrong == [], "\n".join(wrong)


def test_the_guide_names_only_settings_that_exist() -> None:
    settings = {configcheck.env_name(name) for name in Settings.model_fields}
    guides = [ROOT / "docs" / name for name in GUIDES]
    for path in (*guides, ROOT / "compose.yaml", *sorted((ROOT / "deploy").rglob("*.service"))):
        named = set(re.findall(r"PAYCENTER_[A-Z0-9_]+", path.read_text()))
        assert sorted(named - settings) == [], f"{path.name} names settings that do not exist"
