"""Secrets at rest: webhook secrets, signing secrets and terminal tokens are encrypted in the
database with Fernet (AES-128-CBC + HMAC), under keys from ``PAYCENTER_SECRET_KEYS``.

- Several keys may be configured, comma-separated: the first encrypts, all decrypt. To rotate,
  put a new key first, run ``paycenter secrets rotate`` (re-encrypts every row with it), then
  drop the old key.
- Without keys, values are stored as they are (fine for a laptop; ``paycenter config check``
  warns). Rows written before keys were set stay readable, and ``rotate`` encrypts them.
- Settings that hold provider keys may also be given encrypted (``fernet:...``, made with
  ``paycenter secrets encrypt``); ``reveal`` decrypts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Column, String, Table, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from paycenter.db import Database

PREFIX = "fernet:"


class SecretsError(RuntimeError):
    pass


class Keyring:
    def __init__(self, keys: list[str]) -> None:
        try:
            self.fernets = [Fernet(k.strip().encode()) for k in keys if k.strip()]
        except (ValueError, TypeError) as exc:
            raise SecretsError(f"PAYCENTER_SECRET_KEYS holds an invalid key: {exc}") from None
        self.multi = MultiFernet(self.fernets) if self.fernets else None

    @property
    def enabled(self) -> bool:
        return self.multi is not None

    def seal(self, value: str) -> str:
        if self.multi is None:
            return value
        return PREFIX + self.multi.encrypt(value.encode()).decode()

    def open(self, value: str) -> str:
        if not value.startswith(PREFIX):
            return value  # written before keys were configured
        if self.multi is None:
            raise SecretsError("an encrypted secret was read but PAYCENTER_SECRET_KEYS is empty")
        try:
            return self.multi.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretsError("a secret could not be decrypted with any key in PAYCENTER_SECRET_KEYS") from None


_keyring = Keyring([])


def configure(keys: str) -> Keyring:
    """Set this process's keys (from settings, at start-up)."""
    global _keyring
    _keyring = Keyring(keys.split(","))
    return _keyring


def keyring() -> Keyring:
    return _keyring


def reveal(value: str) -> str:
    """A setting's value, decrypted if it was given as ``fernet:...``."""
    return _keyring.open(value) if value else value


def new_key() -> str:
    return Fernet.generate_key().decode()


class EncryptedString(TypeDecorator[str]):
    """A string column stored encrypted with the process's keyring."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _keyring.seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _keyring.open(str(value))


async def reseal(db: Database, columns: Sequence[Column[Any]], *, batch: int = 500) -> int:
    """Re-encrypt every stored value of ``columns`` with the first key (``paycenter secrets rotate``);
    returns how many rows were written.

    Each value is read through its type (decrypted with whichever key opens it) and written back
    through it (sealed with the first key). By primary key in batches, each its own transaction,
    so no table is held locked for the whole run."""
    tables: dict[Table, list[Column[Any]]] = {}
    for column in columns:
        tables.setdefault(column.table, []).append(column)
    changed = 0
    for table, sealed in tables.items():
        (key,) = table.primary_key.columns
        last = ""
        while True:
            async with db.transaction() as session:
                rows = (await session.execute(select(key, *sealed).where(key > last).order_by(key).limit(batch))).all()
                for row in rows:
                    values = {c: row._mapping[c] for c in sealed if row._mapping[c] is not None}
                    if values:
                        await session.execute(update(table).where(key == row[0]).values(values))
                        changed += 1
            if len(rows) < batch:
                break
            last = rows[-1][0]
    return changed
