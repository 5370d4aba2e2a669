"""Fixtures: every database test runs once per configured backend, against a real server.

SQLite always runs. PostgreSQL and MariaDB run when their URLs are set (``.ci/run`` sets them):
    PAYCENTER_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres
    PAYCENTER_TEST_MARIADB_URL=mysql://root@127.0.0.1:3306/test
``PAYCENTER_TEST_REQUIRE=postgresql,mariadb`` turns a missing or unreachable backend into a
failure instead of a quiet SQLite-only run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from kit.admin import Operator, new_user
from kit.api import SEED_BODY, MerchantCreds, make_merchant
from kit.asgi_server import serve
from kit.browser import chromium
from kit.clock import Clock
from kit.db import BACKENDS, KEEP_TABLES, SERVER_URLS, _drop_server_database, _fresh_server_database
from kit.kaspi import Kaspi
from kit.sink import Sink
from kit.worker import worker_settings
from paycenter import models  # noqa: F401
from paycenter.app import create_app
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Base, Database, utcnow
from paycenter.migrate import upgrade
from paycenter.operators.models import Role
from paycenter.providers import terminals
from paycenter.providers.registry import Providers
from paycenter.simulators import kaspi_pos, kaspi_qr
from paycenter.worker import Worker


def pytest_report_header(config: pytest.Config) -> str:
    return f"paycenter database backends: {', '.join(BACKENDS)}"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with slow or browser tests first, each file's own order kept. ``make test`` hands
    whole files to its two workers in this order: a minute-long file met last keeps one worker busy
    while the other idles, and the run's wall time is the longer worker's."""
    heavy = {
        item.nodeid.split("::")[0]
        for item in items
        if item.get_closest_marker("slow") or item.get_closest_marker("browser")
    }
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in heavy)  # stable: False (heavy) first


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


@pytest.fixture
async def merchant(db: Database) -> MerchantCreds:
    return await make_merchant(db)


@pytest.fixture
async def other_merchant(db: Database) -> MerchantCreds:
    return await make_merchant(db, name="Other shop")


@pytest.fixture
def seed_body() -> dict[str, Any]:
    return {**SEED_BODY, "metadata": dict(SEED_BODY["metadata"])}


@pytest.fixture(scope="session")
def repo_root() -> Iterator[Path]:
    yield Path(__file__).resolve().parents[1]


@pytest.fixture
async def admin(db: Database, clock: Clock) -> Operator:
    return await new_user(db, clock, "boss", Role.ADMIN)


@pytest.fixture
async def kaspi(
    request: pytest.FixtureRequest, db: Database, database_url: str, merchant: MerchantCreds, clock: Clock
) -> AsyncIterator[Kaspi]:
    """Both simulators, the app and its worker. The Kaspi QR scheme is r1 unless a test asks for
    another with ``@pytest.mark.parametrize("kaspi", ["r3"], indirect=True)``: refunds differ per
    scheme (kaspi-qr-api.md §5)."""
    scheme = getattr(request, "param", "r1")
    # Int64 ids past 2^53, where a float drops digits (kaspi-qr-api.md §2: Int64, above 2^32 occur).
    # No StatusPollingInterval of its own (0), so QRs are polled at kaspi_qr_status_interval below.
    qr_app = kaspi_qr.create_app(id_floor=2**62, polling_interval=0)
    pos_app = kaspi_pos.create_app()
    sink = await Sink().start()
    async with serve(qr_app) as qr_url, serve(pos_app) as pos_url:
        device_token = qr_app.state.sim.register_device("paycenter-test", 1)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=database_url,
            public_url="http://pay.test",
            run_worker=False,
            enabled_providers="sandbox,kaspi_qr,kaspi_pos",
            kaspi_qr_base_url=qr_url,
            kaspi_qr_scheme=scheme,
            kaspi_qr_api_key="test-api-key",
            kaspi_qr_organization_bin=qr_app.state.sim.organization_bin,
            kaspi_qr_device_token=device_token,
            webhook_allowed_networks="127.0.0.0/8",
            worker_poll_interval=0.05,
            poller_interval=0.1,
            # Faster than the document's 5 s so that flows finish quickly; the 5 s rule itself:
            # test_qr_status_is_asked_no_faster_than_the_documents_interval.
            kaspi_qr_status_interval=0.1,
            poller_give_up_after=30,
        )
        ctx = AppContext(settings=settings, db=db, providers=Providers(settings, clock), clock=clock)
        async with db.transaction() as session:
            for name in ("T1", "T2", "T3"):
                await terminals.add(
                    session,
                    name=name,
                    base_url=f"{pos_url}/terminals/{name}",
                    access_token=f"token-{name}",
                    camera_url=f"{pos_url}/camera/scan-qr/{name}",
                    now=utcnow(),
                )
        worker = Worker(ctx)
        await worker.start()
        app = create_app(ctx=ctx)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://pay.test", headers=merchant.headers
            ) as client:
                yield Kaspi(client, db, ctx, qr_app.state.sim, pos_app.state.sim, sink, worker)
        finally:
            await worker.stop()
            await ctx.providers.close()
            await sink.stop()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@pytest.fixture
async def worker(ctx: AppContext) -> AsyncIterator[Worker]:
    ctx.settings = worker_settings(ctx.settings.database_url)
    w = Worker(ctx)
    await w.start()
    yield w
    await w.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, one per test module (kit.browser): skipped or failed when missing."""
    async with chromium() as launched:
        yield launched
