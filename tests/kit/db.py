"""The database backends the suite runs on, fresh server databases, and row-level checks."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from paycenter.db import Base, Database, create_engine
from paycenter.payments.models import Event
from paycenter.webhooks.models import Delivery

SERVER_URLS = {
    "postgresql": os.environ.get("PAYCENTER_TEST_POSTGRES_URL", ""),
    "mariadb": os.environ.get("PAYCENTER_TEST_MARIADB_URL", ""),
}
REQUIRED = {b.strip() for b in os.environ.get("PAYCENTER_TEST_REQUIRE", "").split(",") if b.strip()}
# Reference data the migrations seed; tests that change it put it back.
KEEP_TABLES = {"payment_methods"}
BACKENDS = ["sqlite"] + [name for name, url in SERVER_URLS.items() if url or name in REQUIRED]


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


# Written by the rate limiter's background sync (ratelimit.RateLimiter.sync), whenever it runs, for
# requests made before the count: a request under test writes none of it itself. Counted, it made
# "nothing was written" flaky (a sync of an earlier request's hit landing in between, seen on CI).
BOOKKEEPING = frozenset({"rate_limits"})


async def row_counts(db: Database) -> dict[str, int]:
    """Rows in every table of the schema but the limiter's bookkeeping: compare before and after
    to prove nothing was written."""
    async with db.reading() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
            if table.name not in BOOKKEEPING
        }
