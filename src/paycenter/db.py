"""Database kit shared by every domain: engine, sessions, column types, ids.

One engine per process. Each backend gets what it needs to be correct under concurrency:
- SQLite: WAL (readers never block the writer), a busy timeout, and ``BEGIN IMMEDIATE`` for write
  transactions so two writers queue for the lock up front instead of one failing with "database
  is locked" when it upgrades a read lock. Read-only work uses a deferred ``BEGIN``.
- MariaDB/MySQL: READ COMMITTED, so a locking read and a plain read see the same rows.
- PostgreSQL: its default READ COMMITTED.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, event, insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import CursorResult, Dialect, Result, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.types import TypeDecorator

# Constraint names fixed by convention so migrations are the same on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Opaque public id such as ``rfd_5f0c...``: the prefix says what it is at a glance."""
    return f"{prefix}_{secrets.token_hex(12)}"


def new_payment_id() -> str:
    """32 uppercase hex characters: the old system's transaction_id format, kept for merchants."""
    return secrets.token_hex(16).upper()


_PAYMENT_ID = re.compile(r"[0-9A-F]{32}")


def is_payment_id(value: str) -> bool:
    """Whether ``value`` can be a payment id at all; anything else is not looked up."""
    return _PAYMENT_ID.fullmatch(value) is not None


def normalize_payment_id(value: str) -> str:
    """A payment id as a merchant or payer may write it (lower case, spaces around: the old
    system looked ids up case-insensitively) in its stored form. The one place that says so."""
    return value.strip().upper()


# Integer primary keys that autoincrement on SQLite too (it only does so for INTEGER).
BigIntPK = BigInteger().with_variant(Integer, "sqlite")
Money = BigInteger  # minor units; SQLite's NUMERIC would be a float
# Bodies and logs: MySQL's TEXT stops at 64 KiB, and an escaped webhook body can exceed it.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored in UTC and always come back timezone-aware in UTC.

    PostgreSQL keeps ``timestamptz``; SQLite and MariaDB keep naive UTC (MariaDB with
    microseconds). Naive values are refused on the way in, so local time can't slip in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name != "postgresql":
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def async_url(url: str) -> str:
    """Accept the plain URLs operators write and pick our async driver for each backend."""
    u = make_url(url)
    backend = u.get_backend_name()
    drivers = {"sqlite": "aiosqlite", "postgresql": "psycopg", "mysql": "asyncmy", "mariadb": "asyncmy"}
    if backend not in drivers:
        raise ValueError(f"unsupported database {backend!r}: use sqlite, postgresql or mysql/mariadb")
    if backend == "mariadb":
        u = u.set(drivername="mysql")
        backend = "mysql"
    if u.get_driver_name() in ("", backend, "pysqlite", "psycopg2", "pymysql", "mysqldb"):
        u = u.set(drivername=f"{backend}+{drivers[backend]}")
    if backend == "mysql" and "charset" not in u.query:
        u = u.update_query_dict({"charset": "utf8mb4"})
    return u.render_as_string(hide_password=False)


def create_engine(
    url: str,
    *,
    busy_timeout_ms: int = 30_000,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    **kwargs: Any,
) -> AsyncEngine:
    url = async_url(url)
    backend = make_url(url).get_backend_name()
    # No pool_pre_ping: it costs a round trip on every checkout, i.e. on every request. A
    # connection the server dropped fails once, is discarded by the pool, and the next is fresh.
    options: dict[str, Any] = {"pool_recycle": 1800}
    if backend == "mysql":
        options["isolation_level"] = "READ COMMITTED"
    queue_pool = backend != "sqlite" or make_url(url).database not in (None, "", ":memory:")
    if queue_pool and "poolclass" not in kwargs:
        # Connections beyond pool_size are "overflow": opened for one checkout and closed when
        # it ends. Under steady load above pool_size every request would open a connection.
        options["pool_size"] = 10 if pool_size is None else pool_size
        options["max_overflow"] = 20 if max_overflow is None else max_overflow
    if backend == "sqlite":
        # The sqlite3 module's own timeout is its busy handler; keep it equal to ours.
        options["connect_args"] = {"timeout": busy_timeout_ms / 1000}
    options.update(kwargs)
    engine = create_async_engine(url, **options)
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout_ms)
    if backend == "mysql":
        _configure_mysql(engine)
    return engine


# Whatever the server's own setting (old installs often run with sql_mode=''), each session
# refuses what it cannot store as given: a text too long, a number out of range, an invalid date
# are errors, as on PostgreSQL, never truncated or coerced. NO_AUTO_CREATE_USER is gone in MySQL 8.
MYSQL_SQL_MODE = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE,NO_ENGINE_SUBSTITUTION"


def _configure_mysql(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET SESSION sql_mode = '{MYSQL_SQL_MODE}'")
        cursor.close()


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the driver from issuing its own BEGIN: we issue ours in "begin" below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no commit
        cursor.close()
        # SQLite's own lower() and upper() change ASCII letters only: the admin's case-blind
        # search (ilike) would find "Торт" by "Торт" alone, where PostgreSQL and MariaDB fold
        # every script. Python's, as theirs.
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
        dbapi_connection.create_function("upper", 1, _upper, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode is not None:  # None: a lone read (Database.read_row), a transaction of its own
            conn.exec_driver_sql(f"BEGIN {mode}")


_INSERT_PLANS: dict[type, tuple[Any, list[tuple[str, str, bool]]]] = {}


def _insert_plan(cls: type) -> tuple[Any, list[tuple[str, str, bool]]]:
    plan = _INSERT_PLANS.get(cls)
    if plan is None:
        mapper: Mapper[Any] = sa_inspect(cls)
        columns = []
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if not isinstance(column, Column) or column.table is not mapper.local_table:
                continue  # a SQL expression (column_property), not a column to write
            defaulted = column.default is not None or column.server_default is not None
            columns.append((prop.key, column.key, defaulted))
        # A declarative class maps one Table (typed as the broader FromClause).
        plan = _INSERT_PLANS[cls] = (insert(cast(Table, mapper.local_table)), columns)
    return plan


_T = TypeVar("_T")


async def insert_values(session: AsyncSession, cls: type[_T], values: dict[str, Any]) -> _T:
    """INSERT one new row of ``cls`` with a single Core statement, and return it as the session's
    object for that row (changes to it flush as UPDATEs, as after ``add`` and ``flush``).

    For hot paths: the unit of work spends about as much CPU on one object as the database spends
    on the whole INSERT, and the mapped constructor's per-attribute events cost a payment init
    about a tenth of its CPU (issue 15); the object is built the way a loaded row is
    (``detached``). Every column that has a default must be given (the statement applies no ORM
    defaults); unset nullable ones are NULL; a name that is no column is refused."""
    statement, columns = _insert_plan(cls)
    unknown = values.keys() - {key for key, _column, _defaulted in columns}
    if unknown:
        raise ValueError(f"{cls.__name__} has no column {', '.join(sorted(unknown))}")
    values = dict(values)
    row: dict[str, Any] = {}
    for key, column, defaulted in columns:
        if key not in values:
            if defaulted:
                raise ValueError(f"{cls.__name__}.{key} must be set before insert_values")
            values[key] = None
        row[column] = values[key]
    await session.execute(statement, row)
    obj = detached(cls, values)
    session.add(obj)
    return obj


def detached(cls: type[_T], values: Mapping[Any, Any]) -> _T:
    """An ORM object for a row read or written with Core, as a session would have loaded it and
    then closed: built without the mapped constructor (whose per-attribute events are the cost
    on hot paths), its values in its state, detached with its identity."""
    obj = cast(_T, sa_inspect(cls).class_manager.new_instance())
    instance_state(obj).dict.update(values)
    make_transient_to_detached(obj)
    return obj


def column_attributes(cls: type) -> list[Any]:
    """The table columns a mapped class loads, each labelled with its attribute's name: a Core
    select of them gives rows that ``detached`` turns into objects."""
    mapper: Mapper[Any] = sa_inspect(cls)
    return [
        prop.columns[0].label(prop.key)
        for prop in mapper.column_attrs
        if isinstance(prop.columns[0], Column) and prop.columns[0].table is mapper.local_table
    ]


def backend_name(engine: AsyncEngine) -> str:
    return engine.url.get_backend_name()


class Database:
    """The process's engine and its two session factories: writers and readers.

    A writer transaction on SQLite takes the write lock at BEGIN; readers must not, or every
    status poll would queue behind every payment. On other backends the two are the same.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 30_000,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        **engine_kwargs: Any,
    ) -> None:
        self.engine = create_engine(
            url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size, max_overflow=max_overflow, **engine_kwargs
        )
        self.backend = backend_name(self.engine)
        read_engine = (
            self.engine.execution_options(sqlite_begin="DEFERRED") if self.backend == "sqlite" else self.engine
        )
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._reader = async_sessionmaker(read_engine, expire_on_commit=False, autoflush=False)
        # SQLite: a lone read needs no BEGIN (each statement outside one reads one snapshot by
        # itself), and each statement is a hop to aiosqlite's thread.
        self._read_bind = self.engine.execution_options(sqlite_begin=None) if self.backend == "sqlite" else read_engine
        self._subscribers: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self._write_lock = asyncio.Lock() if self.backend == "sqlite" else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed on success, rolled back on any exception.

        Code inside may add channel names to ``session.info["signals"]``; subscribers of those
        channels are called once the transaction has committed (never if it rolled back).
        """
        async with self._write_turn(), self._writer() as session:
            async with session.begin():
                yield session
            signals = session.info.pop("signals", None)
        for channel in signals or ():
            self.publish(channel)

    @asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        """SQLite: one writer at a time per process, queued here rather than in SQLite's busy
        handler, which sleeps in growing steps (up to 100 ms) and turns contention into latency.
        Other processes still meet the busy timeout. Server databases need no such queue."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    def subscribe(self, channel: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after each commit that signals ``channel``; returns an unsubscriber."""
        self._subscribers[channel].append(callback)
        return lambda: self._subscribers[channel].remove(callback)

    def publish(self, channel: str) -> None:
        for callback in list(self._subscribers[channel]):
            callback()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session; nothing it does is committed.

        Closing (not rolling back) keeps loaded objects readable after the block: the pool
        rolls the connection back when it takes it back.
        """
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def read_once(self) -> AsyncIterator[AsyncSession]:
        """A session for one read statement (the hot paths: API token lookup, public payment
        reads), outside any transaction where the backend allows it. Never write through it, and
        use ``reading()`` when several statements belong together."""
        async with self.read_row() as conn, AsyncSession(bind=conn, expire_on_commit=False, autoflush=False) as session:
            yield session

    @asynccontextmanager
    async def read_row(self) -> AsyncIterator[AsyncConnection]:
        """``read_once`` for one Core statement that selects columns, not objects: a connection
        without an ORM session around it, whose execute and close cost about half as much CPU
        (the public payment read, polled by every payment page; issue 15).

        PostgreSQL: the statement runs in autocommit. psycopg would send BEGIN and, when the pool
        takes the connection back, ROLLBACK, each a round trip. The driver's own switch is set
        and reset here (no I/O): SQLAlchemy's isolation_level option did the same at 0.16 ms of
        CPU per checkout, more than the round trips cost, and a second pool in autocommit for
        life splits the connections, so that requests wait for one of the half they may use.
        SQLite sends no BEGIN (``_read_bind``). MySQL drivers would send a SET autocommit each
        way: there the read is a transaction, rolled back when the connection goes back."""
        async with self._read_bind.connect() as conn:
            if self.backend != "postgresql":
                yield conn
                return
            driver = conn.sync_connection.connection.driver_connection if conn.sync_connection else None
            assert driver is not None  # a connection that has started has its driver's
            await driver.set_autocommit(True)
            try:
                yield conn
            finally:
                try:
                    await driver.set_autocommit(False)
                except BaseException:
                    # Never back to the pool in autocommit, where a write would lose its
                    # transaction (a cancelled or broken read can refuse the switch): dropped.
                    await conn.invalidate()
                    raise

    def session(self) -> AsyncSession:
        """A write-capable session whose transactions the caller scopes with ``begin()``."""
        return self._writer()

    async def dispose(self) -> None:
        await self.engine.dispose()


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. ``execute`` is typed to return a ``Result``; a DML
    statement without RETURNING gives a ``CursorResult``, the one that has ``rowcount``."""
    return cast(CursorResult[Any], result).rowcount
