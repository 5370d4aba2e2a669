"""Test kit: every database test runs once per configured backend, against a real server.

SQLite always runs. PostgreSQL and MariaDB run when their URLs are set (``.ci/run`` sets them):
    PAYCENTER_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres
    PAYCENTER_TEST_MARIADB_URL=mysql://root@127.0.0.1:3306/test
``PAYCENTER_TEST_REQUIRE=postgresql,mariadb`` turns a missing or unreachable backend into a
failure instead of a quiet SQLite-only run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from paycenter import models  # noqa: F401
from paycenter.app import create_app
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Base, Database, create_engine, utcnow
from paycenter.merchants import service as merchants
from paycenter.migrate import upgrade
from paycenter.payments.models import Event
from paycenter.providers.registry import Providers
from paycenter.webhooks.models import Delivery

SERVER_URLS = {
    "postgresql": os.environ.get("PAYCENTER_TEST_POSTGRES_URL", ""),
    "mariadb": os.environ.get("PAYCENTER_TEST_MARIADB_URL", ""),
}
REQUIRED = {b.strip() for b in os.environ.get("PAYCENTER_TEST_REQUIRE", "").split(",") if b.strip()}
# Reference data the migrations seed; tests that change it put it back.
KEEP_TABLES = {"payment_methods"}
BACKENDS = ["sqlite"] + [name for name, url in SERVER_URLS.items() if url or name in REQUIRED]


def pytest_report_header(config: pytest.Config) -> str:
    return f"paycenter database backends: {', '.join(BACKENDS)}"


class Clock:
    """The app's clock, movable by tests: expiry and retention without sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return (self.frozen or utcnow()) + self.offset

    def freeze(self) -> None:
        """Stop the clock where it is: from now on only ``advance`` moves it, so a test about
        intervals is exact however slowly the machine runs."""
        self.frozen = utcnow()

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


async def _fresh_server_database(backend: str, server_url: str) -> str:
    """Create an empty database on a running server and return its URL."""
    name = f"paycenter_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _drop_server_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            if make_url(server_url).get_backend_name() == "postgresql":
                await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    backend = request.param
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "paycenter.db"
        url = f"sqlite:///{path}"
        await upgrade(url)
        yield url
        return
    server_url = SERVER_URLS[backend]
    if not server_url:
        pytest.fail(f"{backend} is required (PAYCENTER_TEST_REQUIRE) but its URL is not set")
    try:
        url = await _fresh_server_database(backend, server_url)
    except Exception as exc:  # a required server that is down must fail the run loudly
        pytest.fail(f"{backend} at {server_url} is not reachable: {exc}")
    await upgrade(url)  # the real migrations, so they are tested on every backend
    yield url
    await _drop_server_database(server_url, url)


@pytest.fixture(scope="session")
def backend(database_url: str) -> str:
    name = make_url(database_url).get_backend_name()
    return "mariadb" if name == "mysql" else name


@pytest.fixture(scope="session")
async def _database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def db(_database: Database) -> Database:
    """The backend's database, emptied of rows (the schema stays) before each test."""
    async with _database.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in KEEP_TABLES:
                await session.execute(table.delete())
    return _database


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, public_url="http://pay.test", run_worker=False, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(settings: Settings, db: Database, clock: Clock) -> AppContext:
    return AppContext(settings=settings, db=db, providers=Providers(settings, clock), clock=clock)


@pytest.fixture
def app(ctx: AppContext) -> Any:
    return create_app(ctx=ctx)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pay.test") as c:
        yield c


@dataclass
class MerchantCreds:
    merchant_id: str
    token: str
    token_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Token": self.token}


async def make_merchant(db: Database, name: str = "Test shop", **kwargs: Any) -> MerchantCreds:
    async with db.transaction() as session:
        merchant = await merchants.create_merchant(session, name=name, now=utcnow(), **kwargs)
        issued = await merchants.issue_token(session, merchant_id=merchant.id, now=utcnow())
    return MerchantCreds(merchant.id, issued.secret, issued.token.id)


@pytest.fixture
async def merchant(db: Database) -> MerchantCreds:
    return await make_merchant(db)


@pytest.fixture
async def other_merchant(db: Database) -> MerchantCreds:
    return await make_merchant(db, name="Other shop")


SEED_BODY: dict[str, Any] = {
    "amount": 500,
    "currency": "KZT",
    "description": "Тестовый платеж",
    "webhook_url": "https://webhook.site/YOUR-ID",
    "webhook_secret": "test_secret_key",
    "metadata": {"user_id": "12345", "order_id": "TEST-001"},
}


@pytest.fixture
def seed_body() -> dict[str, Any]:
    return {**SEED_BODY, "metadata": dict(SEED_BODY["metadata"])}


async def create_payment(client: httpx.AsyncClient, creds: MerchantCreds, **overrides: Any) -> dict[str, Any]:
    body = {**SEED_BODY, **overrides}
    response = await client.post("/api/payment/init", json=body, headers=creds.headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def sandbox(client: httpx.AsyncClient, payment_id: str, action: str = "pay", **form: str) -> httpx.Response:
    response = await client.post(f"/pay/{payment_id}/sandbox", data={"action": action, **form})
    assert response.status_code == 303, response.text
    return response


async def delivered_types(db: Database, payment_id: str) -> list[str]:
    """The types of the payment's events that have a webhook delivery, in sequence order: what its
    merchant is or will be sent (a delivery is written with its event, whether or not sent yet)."""
    async with db.reading() as session:
        rows = await session.scalars(
            select(Event.type)
            .join(Delivery, Delivery.event_id == Event.id)
            .where(Event.payment_id == payment_id)
            .order_by(Event.sequence)
        )
        return list(rows)


async def row_counts(db: Database) -> dict[str, int]:
    """Rows in every table of the schema: compare before and after to prove nothing was written."""
    async with db.reading() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


@pytest.fixture(scope="session")
def repo_root() -> Iterator[Path]:
    yield Path(__file__).resolve().parents[1]
