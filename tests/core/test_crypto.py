"""Secrets at rest: encrypted in the database, readable by the app, rotatable to a new key."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from paycenter import crypto
from paycenter.db import Database, utcnow
from paycenter.merchants import service as merchants
from paycenter.migrate import upgrade
from paycenter.payments.models import Payment

PAYCENTER = Path(sys.executable).with_name("paycenter")


@pytest.fixture
def keys():
    first, second = crypto.new_key(), crypto.new_key()
    yield first, second
    crypto.configure("")


async def raw(db: Database, sql: str) -> str:
    async with db.reading() as session:
        return (await session.execute(text(sql))).scalar_one()


async def test_secrets_are_encrypted_and_rotated(tmp_path, keys):
    first, second = keys
    url = f"sqlite:///{tmp_path / 'c.db'}"
    await upgrade(url)
    db = Database(url)
    try:
        async with db.transaction() as session:  # written before any key: plain text
            plain = await merchants.create_merchant(session, name="Old", now=utcnow())
        crypto.configure(first)
        async with db.transaction() as session:
            merchant = await merchants.create_merchant(session, name="New", now=utcnow())
        stored = await raw(db, f"SELECT signing_secret FROM merchants WHERE id = '{merchant.id}'")
        assert stored.startswith("fernet:") and merchant.signing_secret not in stored
        async with db.reading() as session:
            assert (await session.get(type(merchant), merchant.id)).signing_secret == merchant.signing_secret
            assert (await session.get(type(plain), plain.id)).signing_secret == plain.signing_secret  # legacy rows
    finally:
        await db.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCENTER_")}
    env |= {"PAYCENTER_DATABASE_URL": url, "PAYCENTER_SECRET_KEYS": f"{second},{first}"}
    proc = await asyncio.create_subprocess_exec(
        str(PAYCENTER), "secrets", "rotate", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "re-encrypted 2 row(s)" in out.decode()

    crypto.configure(second)  # the old key is gone: everything must open with the new one alone
    db = Database(url)
    try:
        async with db.reading() as session:
            assert (await session.get(type(merchant), merchant.id)).signing_secret == merchant.signing_secret
            assert (await session.get(type(plain), plain.id)).signing_secret == plain.signing_secret
        stored_plain = await raw(db, f"SELECT signing_secret FROM merchants WHERE id = '{plain.id}'")
        assert stored_plain.startswith("fernet:")  # rotate also encrypts rows written in clear
    finally:
        await db.dispose()


def test_a_wrong_key_is_a_clear_error(keys):
    first, second = keys
    sealed = crypto.configure(first).seal("s3cret")
    crypto.configure(second)
    with pytest.raises(crypto.SecretsError, match="could not be decrypted"):
        crypto.keyring().open(sealed)
    with pytest.raises(crypto.SecretsError, match="invalid key"):
        crypto.configure("not-a-key")


def test_payment_webhook_secret_column_is_encrypted():
    assert isinstance(Payment.__table__.c.webhook_secret.type, crypto.EncryptedString)


def test_the_encrypted_columns_are_found_on_the_models():
    """`secrets rotate` and `config check` cover every column declared encrypted, and only those."""
    from paycenter.models import ENCRYPTED_COLUMNS

    assert [f"{c.table.name}.{c.name}" for c in ENCRYPTED_COLUMNS] == [
        "merchants.signing_secret",
        "merchants.previous_signing_secret",
        "payments.webhook_secret",
        "terminals.access_token",
        "terminals.refresh_token",
    ]
