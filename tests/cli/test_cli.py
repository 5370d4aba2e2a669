"""The ``paycenter`` console script, run for real in subprocesses against a fresh database.

SQLite always; PostgreSQL too when ``PAYCENTER_TEST_POSTGRES_URL`` is set (a new, empty database is
created on that server, so ``paycenter migrate`` builds the schema from nothing). These tests do not
use the per-backend ``db`` fixture: they pick their own backends here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from kit.api import SEED_BODY
from kit.db import REQUIRED, SERVER_URLS, _drop_server_database, _fresh_server_database
from kit.served import PAYCENTER, paycenter_cli
from kit.sink import Sink
from paycenter import versions
from paycenter.app import create_app
from paycenter.config import Settings

pytestmark = pytest.mark.slow  # every command a `paycenter` process

CLI_BACKENDS = ["sqlite"] + (["postgresql"] if SERVER_URLS["postgresql"] or "postgresql" in REQUIRED else [])


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def ok(self) -> Run:
        assert self.rc == 0, f"exit {self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self

    def json(self) -> Any:
        return json.loads(self.ok().out)


@dataclass
class Cli:
    database_url: str
    cwd: Path

    async def __call__(self, *args: str, env_extra: dict[str, str] | None = None) -> Run:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
        env.update(PAYCENTER_DATABASE_URL=self.database_url, NO_COLOR="1", COLUMNS="200")
        env.update(env_extra or {})
        return Run(*await paycenter_cli(*args, cwd=self.cwd, env=env, timeout=60))


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    """The console script bound to a fresh, empty (not yet migrated) SQLite file."""
    assert PAYCENTER.exists(), f"console script not installed next to {sys.executable}"
    return Cli(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)


@pytest.fixture(params=CLI_BACKENDS)
async def cli(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cli]:
    """The same on each backend: a fresh SQLite file, or a new empty PostgreSQL database."""
    assert PAYCENTER.exists(), f"console script not installed next to {sys.executable}"
    if request.param == "sqlite":
        yield Cli(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
        return
    server_url = SERVER_URLS["postgresql"]
    if not server_url:
        pytest.fail("postgresql is required (PAYCENTER_TEST_REQUIRE) but PAYCENTER_TEST_POSTGRES_URL is not set")
    url = await _fresh_server_database("postgresql", server_url)
    try:
        yield Cli(url, tmp_path)
    finally:
        await _drop_server_database(server_url, url)


async def test_merchants_and_tokens_end_to_end(cli: Cli) -> None:
    migrated = (await cli("migrate")).ok()
    assert "newest schema" in migrated.out
    (await cli("migrate")).ok()  # running it again on an up-to-date schema is harmless

    created = await cli("merchant", "create", "Coffee & Co", "--webhook-url", "https://shop.example/hook", "--json")
    merchant = created.json()  # the whole stdout is exactly one JSON object
    assert isinstance(merchant, dict)
    assert created.out.strip().count("\n") == 0
    assert merchant["merchant_id"].startswith("mer_")
    assert merchant["api_token"].startswith("pct_")
    assert merchant["webhook_signing_secret"].startswith("whsec_")
    mid, first_token = merchant["merchant_id"], merchant["api_token"]

    # Made after the first one: `merchant list` orders by creation.
    plain = (await cli("merchant", "create", "Second shop")).ok()
    assert "pct_" in plain.out and "mer_" in plain.out

    assert merchant["api_version"] == versions.CURRENT
    # API versions (docs/migrating.md): pinned at creation, changed later, refused when unknown.
    old = (await cli("merchant", "create", "Old shop", "--api-version", "legacy", "--json")).json()
    assert old["api_version"] == "legacy"
    onboarded = await cli(
        "merchant", "create", "Late old shop", "--json", env_extra={"PAYCENTER_DEFAULT_API_VERSION": "legacy"}
    )
    assert onboarded.json()["api_version"] == "legacy"  # the deployment's default for new merchants
    bad = await cli("merchant", "create", "Odd shop", "--api-version", "2001-01-01")
    assert bad.rc == 2 and "Unknown API version" in bad.err
    moved = (await cli("merchant", "api-version", old["merchant_id"], versions.CURRENT)).ok()
    assert f"legacy -> {versions.CURRENT}" in moved.out
    assert (await cli("merchant", "api-version", old["merchant_id"], "nope")).rc == 2
    assert (await cli("merchant", "api-version", "mer_missing", "legacy")).rc == 1
    # The underpayment tolerance, in major units (the old system's 10 KZT for imported merchants).
    tolerance = (await cli("merchant", "tolerance", old["merchant_id"], "10")).ok()
    assert "underpayment tolerance 0.00 -> 10.00" in tolerance.out
    assert (await cli("merchant", "tolerance", old["merchant_id"], "-5")).rc == 2
    assert (await cli("merchant", "tolerance", "mer_missing", "1")).rc == 1

    listed_json, listed_table = await asyncio.gather(cli("merchant", "list", "--json"), cli("merchant", "list"))
    listed = listed_json.json()
    assert [(m["name"], m["webhook_url"], m["api_version"]) for m in listed] == [
        ("Coffee & Co", "https://shop.example/hook", versions.CURRENT),
        ("Second shop", None, versions.CURRENT),
        ("Old shop", None, versions.CURRENT),
        ("Late old shop", None, "legacy"),
    ]
    assert listed[0]["merchant_id"] == mid
    table = listed_table.ok().out
    assert mid in table and "Coffee & Co" in table and "Second shop" in table

    issued = (await cli("token", "create", mid, "--name", "ci", "--json")).json()
    assert issued["merchant_id"] == mid
    second_token, second_id = issued["api_token"], issued["token_id"]
    assert second_token != first_token

    tokens_json, tokens_table = await asyncio.gather(cli("token", "list", mid, "--json"), cli("token", "list"))
    tokens = tokens_json.json()
    assert len(tokens) == 2 and {t["merchant_id"] for t in tokens} == {mid}
    assert all(t["revoked_at"] is None for t in tokens)
    listing = tokens_table.ok().out + tokens_json.out
    assert first_token not in listing and second_token not in listing  # only prefixes are kept
    assert second_token[:12] in listing

    app = create_app(Settings(database_url=cli.database_url, run_worker=False, _env_file=None))  # type: ignore[call-arg]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pay.test") as api:

            async def init(token: str) -> httpx.Response:
                return await api.post("/api/payment/init", json=SEED_BODY, headers={"X-API-Token": token})

            assert (await init(second_token)).status_code == 201
            revoked = await cli("token", "revoke", second_id)
            assert revoked.ok().out.strip() == f"token {second_id} revoked"
            # The same running app, so no cached authentication may survive the revocation.
            refused = await init(second_token)
            assert refused.status_code == 401, refused.text
            assert refused.json()["success"] is False
            r = await api.get("/api/transactions", headers={"X-API-Token": second_token})
            assert r.status_code == 401
            assert (await init(first_token)).status_code == 201  # other tokens keep working
    finally:
        await app.state.ctx.db.dispose()

    after_json, after_table, again = await asyncio.gather(
        cli("token", "list", mid, "--json"),
        cli("token", "list"),
        cli("token", "revoke", second_id),  # revoking twice is not an error
    )
    tokens = {t["token_id"]: t for t in after_json.json()}
    assert tokens[second_id]["revoked_at"] is not None
    assert sum(t["revoked_at"] is None for t in tokens.values()) == 1
    assert "revoked" in after_table.ok().out
    again.ok()


async def test_bad_arguments_are_refused_without_writing(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    (await cli("migrate")).ok()
    bad_urls = ("ftp://x", "javascript:alert(1)", "https://" + "a" * 500 + ".kz", "http://１２７.０.０.１/hook")
    *refusals, blank, missing, gone = await asyncio.gather(
        *(cli("merchant", "create", "Shop", "--webhook-url", url, "--json") for url in bad_urls),
        cli("merchant", "create", "   "),
        cli("token", "create", "mer_nope"),
        cli("token", "revoke", "tok_nope"),
    )
    for refused in refusals:
        assert refused.rc != 0, refused.out
        assert refused.out == ""  # no half-made merchant and no token on stdout
        assert "webhook" in refused.err.lower() and "Traceback" not in refused.err
    assert blank.rc != 0 and "NAME" in blank.err
    for run in (missing, gone):
        assert run.rc != 0 and "not found" in run.err and "Traceback" not in run.err, run.err

    merchants, tokens = await asyncio.gather(cli("merchant", "list", "--json"), cli("token", "list", "--json"))
    assert merchants.json() == [] and tokens.json() == []


async def test_webhooks_test_sends_a_signed_sample(sqlite_cli: Cli) -> None:
    sink = await Sink().start()
    try:
        url = sink.on("/hook")
        secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
        args = ("webhooks", "test", url, "--event", "refunded", "--secret", "s3cret", "--signing-secret", secret)
        blocked = await sqlite_cli(*args)  # loopback is private: refused unless allowed
        assert blocked.rc == 1 and "blocked" in blocked.err
        assert sink.received == []
        sent = (await sqlite_cli(*args, env_extra={"PAYCENTER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})).ok()
        assert "delivered: HTTP 200" in sent.out
        (got,) = sink.received
        headers = {k.lower(): v for k, v in got.headers.items()}
        assert Webhook(secret).verify(got.body, headers)["event"] == "refunded"
        assert headers["x-webhook-signature"] == hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
    finally:
        await sink.stop()


# --- every command that changes something leaves its audit record ---------------------------------

OS_USER = "ops-aigerim"  # the account an operator runs the commands as (getpass reads LOGNAME first)


async def audit_log(database_url: str) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    from sqlalchemy import select

    from paycenter.db import Database
    from paycenter.operators.models import AuditEntry

    db = Database(database_url)
    try:
        async with db.reading() as session:
            rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            return [(a.actor, a.action, a.target, a.details) for a in rows]
    finally:
        await db.dispose()


async def test_every_changing_command_is_audited_with_the_os_user(cli: Cli) -> None:
    """Each command that changes state leaves exactly one audit record, written by
    ``cli:<os user>``, naming what it changed: the log shows who did what, from the shell too."""
    from paycenter import crypto

    (await cli("migrate")).ok()
    key = crypto.new_key()
    env = {"LOGNAME": OS_USER, "USER": OS_USER, "SUDO_USER": "", "PAYCENTER_SECRET_KEYS": key}
    seen = 0

    async def step(*commands: tuple[str, ...]) -> list[tuple[str, str, str | None, dict[str, Any]]]:
        """Run commands (at once: they touch different rows); return the records they added."""
        nonlocal seen
        runs = await asyncio.gather(*(cli(*args, env_extra=env) for args in commands))
        for run in runs:
            run.ok()
        log = await audit_log(cli.database_url)
        added, seen = log[seen:], len(log)
        assert {actor for actor, *_ in added} == {f"cli:{OS_USER}"}, added
        return sorted(added, key=lambda entry: entry[1])

    made = await step(
        ("merchant", "create", "Coffee & Co", "--webhook-url", "https://shop.example/hook", "--json"),
        ("admin", "create-user", "alice", "--role", "admin"),
        ("terminal", "add", "till-1", "--url", "https://127.0.0.1:9", "--token", "till-token"),
        ("payment-method", "set", "kaspi_red", "--fee", "2.5", "--payer-covers-fee"),
    )
    assert [(action, target) for _, action, target, _ in made] == [
        ("admin_user_create", "alice"),
        ("merchant_create", made[1][2]),
        ("payment_method_set", "kaspi_red"),
        ("terminal_add", made[3][2]),
    ]
    merchant_id, terminal_id = made[1][2], made[3][2]
    assert merchant_id and merchant_id.startswith("mer_") and terminal_id and terminal_id.startswith("trm_")
    assert made[0][3] == {"role": "admin"}
    tokens = (await cli("token", "list", merchant_id, "--json", env_extra=env)).json()
    assert made[1][3] == {
        "token_id": tokens[0]["token_id"],
        "name": "Coffee & Co",
        "webhook_url": "https://shop.example/hook",
        "api_version": versions.CURRENT,
        "default_provider": None,
    }
    assert made[2][3] == {"fee_bp": [100, 250], "payer_covers_fee": [False, True]}
    assert made[3][3] == {"name": "till-1"}

    changed = await step(
        ("token", "create", merchant_id, "--name", "ci", "--json"),
        ("admin", "reset-password", "alice"),
        ("admin", "unlock", "alice", "--ip", "10.0.0.7"),
        ("terminal", "disable", "till-1"),
    )
    issued = [t for t in (await cli("token", "list", merchant_id, "--json", env_extra=env)).json() if t["name"] == "ci"]
    assert [(action, target, details) for _, action, target, details in changed] == [
        ("admin_password_reset", "alice", {}),
        ("admin_unlock", "alice", {"address": "10.0.0.7", "cleared": 0}),
        ("terminal_disable", terminal_id, {"name": "till-1"}),
        ("token_create", merchant_id, {"token_id": issued[0]["token_id"]}),
    ]

    checked = await step(
        ("token", "revoke", issued[0]["token_id"]),
        ("terminal", "enable", "till-1"),
        ("cleanup",),
        ("secrets", "rotate"),
    )
    assert [(action, target) for _, action, target, _ in checked] == [
        ("cleanup_run", None),
        ("secrets_rotate", None),
        ("terminal_enable", terminal_id),
        ("token_revoke", merchant_id),
    ]
    assert checked[0][3] == {"removed": 0, "idempotency_keys_removed": 0, "stale_rows_removed": 0}
    assert checked[1][3]["rows"] >= 2  # the merchant's signing secret and the terminal's token
    assert checked[3][3] == {"token_id": issued[0]["token_id"]}

    (check,) = await step(("terminal", "check"))  # nothing listens on port 9: unreachable
    assert check[1:3] == ("terminal_check", terminal_id)
    assert check[3]["health"] == "unreachable" and check[3]["error"]

    # What reads or only tries changes nothing, and what is refused leaves no record.
    for args in (
        ("merchant", "list"),
        ("token", "list"),
        ("terminal", "list"),
        ("payment-method", "list"),
        ("cleanup", "--dry-run"),
        ("status",),
    ):
        (await cli(*args, env_extra=env)).ok()
    refused = await asyncio.gather(
        cli("token", "revoke", "tok_nope", env_extra=env),
        cli("admin", "reset-password", "nobody", env_extra=env),
        cli("payment-method", "set", "no_such_method", "--fee", "1", env_extra=env),
    )
    assert all(run.rc != 0 and "Traceback" not in run.err for run in refused), refused
    assert len(await audit_log(cli.database_url)) == seen


def test_the_cli_actor_falls_back_to_the_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container user with no name still gets recorded, by its uid."""
    import getpass

    from paycenter.operators import service as admins

    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("LOGNAME", "ops-aigerim")
    assert admins.cli_actor() == "cli:ops-aigerim"
    # Under sudo (deploy/paycenter.sh runs every command as the service's user): who called sudo.
    monkeypatch.setenv("SUDO_USER", "aigerim")
    assert admins.cli_actor() == "cli:aigerim"
    monkeypatch.delenv("SUDO_USER")

    def nameless() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", nameless)
    assert admins.cli_actor() == f"cli:uid-{os.getuid()}"


async def _stored_terminals(database_url: str, key: str) -> list[tuple[str, str, str | None, str | None, bool]]:
    """(name, client name, refresh token as stored, as read with ``key``, health ok) of each terminal."""
    from sqlalchemy import String, select, type_coerce

    from paycenter import crypto
    from paycenter.db import Database
    from paycenter.providers.models import Terminal

    db = Database(database_url)
    crypto.configure(key)
    try:
        async with db.reading() as session:
            raw = dict(
                (await session.execute(select(Terminal.name, type_coerce(Terminal.refresh_token, String())))).all()
            )
            rows = await session.scalars(select(Terminal).order_by(Terminal.name))
            return [(t.name, t.client_name, raw[t.name], t.refresh_token, t.health == "ok") for t in rows]
    finally:
        crypto.configure("")
        await db.dispose()


async def test_terminal_register_walks_the_operator_through_approval(cli: Cli) -> None:
    """Issue 12: `paycenter terminal register NAME --url URL` asks the terminal for a token pair
    (/v2/register), which the person at the terminal approves; the pair is stored encrypted."""
    from kit.asgi_server import serve
    from paycenter import crypto
    from paycenter.simulators import kaspi_pos

    (await cli("migrate")).ok()
    env = {"PAYCENTER_SECRET_KEYS": crypto.new_key()}
    app = kaspi_pos.create_app()
    sim = app.state.sim
    sim.set_registration("T1", "manual")
    async with serve(app) as base:
        url = f"{base}/terminals/T1"
        args = ("terminal", "register", "till-7", "--url", url, "--client-name", "shop")

        async def approved_by_the_person(approve: bool) -> Run:
            running = asyncio.create_task(cli(*args, env_extra=env))
            deadline = asyncio.get_running_loop().time() + 30
            while not sim.terminals["T1"].waiting_registrations:
                assert not running.done(), (await running).err
                assert asyncio.get_running_loop().time() < deadline, "the request never reached the terminal"
                await asyncio.sleep(0.02)
            sim.decide_registration("T1", approve)
            return await running

        denied = await approved_by_the_person(False)
        assert denied.rc == 1 and "refused the registration" in denied.err
        assert await _stored_terminals(cli.database_url, env["PAYCENTER_SECRET_KEYS"]) == []  # nothing written

        run = (await approved_by_the_person(True)).ok()
        assert "approve the request on the terminal's screen" in run.out
        assert "added; token expires 20" in run.out and '"serialNum"' in run.out
        ((name, client, raw, refresh, healthy),) = await _stored_terminals(
            cli.database_url, env["PAYCENTER_SECRET_KEYS"]
        )
        grant = next(g for g in sim.terminals["T1"].grants.values() if g.name == "shop")
        assert (name, client, refresh, healthy) == ("till-7", "shop", grant.refresh_token, True)
        assert raw is not None and raw.startswith("fernet:") and grant.refresh_token not in raw

        sim.set_registration("T1", "auto")  # registering again gives the same terminal a new pair
        run = (await cli(*args, env_extra=env)).ok()
        assert "registered again" in run.out
        ((name, _, _, again, _),) = await _stored_terminals(cli.database_url, env["PAYCENTER_SECRET_KEYS"])
        assert name == "till-7" and again != refresh
    assert sim.terminals["T1"].register_calls == 3
