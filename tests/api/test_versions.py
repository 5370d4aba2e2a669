"""API versions (paycenter.versions): a merchant is pinned to one, a header overrides it per request,
and versions differ only in how answers are rendered. Here: the status codes of refusals (the old
API answered 400 where the current one says 422 or 409), the header's checks, and the pins that
`merchant create`, `merchant api-version` and `import-legacy` set."""

from __future__ import annotations

import json

import httpx
import pytest

from kit.api import SEED_BODY, MerchantCreds, create_payment, make_merchant, sandbox
from paycenter import versions
from paycenter.db import Database


@pytest.fixture
async def legacy_merchant(db: Database) -> MerchantCreds:
    return await make_merchant(db, name="Old shop", api_version=versions.LEGACY)


async def _init(client: httpx.AsyncClient, token: str, body: dict, **headers: str) -> httpx.Response:
    return await client.post("/api/payment/init", json=body, headers={"X-API-Token": token, **headers})


@pytest.mark.parametrize("body", [SEED_BODY | {"amount": 0}, SEED_BODY | {"amount": "abc"}, {"currency": "KZT"}])
async def test_bad_input_is_400_for_legacy_and_422_for_current(
    client: httpx.AsyncClient, merchant: MerchantCreds, legacy_merchant: MerchantCreds, body: dict
) -> None:
    current = await _init(client, merchant.token, body)
    legacy = await _init(client, legacy_merchant.token, body)
    assert current.status_code == 422, current.text
    assert legacy.status_code == 400, legacy.text
    # Only the code differs: the same refusal, in the same envelope.
    assert legacy.json() == current.json()
    assert legacy.json()["success"] is False and legacy.json()["message"]


async def test_the_header_overrides_the_pinned_version_both_ways(
    client: httpx.AsyncClient, merchant: MerchantCreds, legacy_merchant: MerchantCreds
) -> None:
    bad = SEED_BODY | {"amount": -1}
    assert (await _init(client, merchant.token, bad, **{"Paycenter-Version": "legacy"})).status_code == 400
    assert (
        await _init(client, legacy_merchant.token, bad, **{"Paycenter-Version": versions.CURRENT})
    ).status_code == 422


@pytest.mark.parametrize("value", ["2019-01-01", "LEGACY", "", "x" * 300])
async def test_an_unknown_version_is_refused_clearly_and_nothing_is_written(
    client: httpx.AsyncClient, merchant: MerchantCreds, value: str
) -> None:
    r = await _init(client, merchant.token, SEED_BODY, **{"Paycenter-Version": value})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "unknown_api_version"
    assert versions.CURRENT in r.json()["message"]
    listed = await client.get("/api/transactions", headers={"X-API-Token": merchant.token})
    assert listed.status_code == 200 and listed.json()["data"]["items"] == []


@pytest.mark.parametrize("legacy", [False, True])
async def test_a_cancel_conflict_is_400_for_legacy(
    client: httpx.AsyncClient, merchant: MerchantCreds, legacy_merchant: MerchantCreds, legacy: bool
) -> None:
    creds = legacy_merchant if legacy else merchant
    payment = await create_payment(client, creds)
    pid = payment["transaction_id"]
    assert (await sandbox(client, pid)).status_code in (200, 303)
    r = await client.post(f"/api/payment/{pid}/cancel", headers={"X-API-Token": creds.token})
    assert r.status_code == (400 if legacy else 409), r.text
    assert r.json()["success"] is False


async def test_a_public_read_is_rendered_in_the_payment_merchants_version(
    client: httpx.AsyncClient, legacy_merchant: MerchantCreds
) -> None:
    """No token on the payer's page: the version comes from the payment's merchant."""
    pid = (await create_payment(client, legacy_merchant))["transaction_id"]
    r = await client.get(f"/api/payment/{pid}")
    assert r.status_code == 200
    bad = await client.get(f"/api/payment/{pid}", headers={"Paycenter-Version": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_api_version"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", "", None]
)
async def test_a_json_body_is_read_whatever_its_declared_type(
    client: httpx.AsyncClient, legacy_merchant: MerchantCreds, content_type: str | None
) -> None:
    """legacy-api.md §1: the old API decoded the body as JSON whatever the Content-Type, and PHP's
    curl sends a JSON string given as POSTFIELDS as a form. Bad input still gets the legacy 400.
    None: no Content-Type at all (a bare socket, a hand-made request)."""
    headers = {"X-API-Token": legacy_merchant.token}
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await client.post("/api/payment/init", content=json.dumps(SEED_BODY), headers=headers)
    assert r.status_code == 201, r.text
    pid = r.json()["data"]["transaction_id"]
    bad = await client.post("/api/payment/init", content="amount=500", headers=headers)
    assert bad.status_code == 400 and bad.json()["success"] is False
    # PHP's json_encode(array()) as a cancel's body: the empty object, not a refusal.
    cancelled = await client.post(f"/api/payment/{pid}/cancel", content="[]", headers=headers)
    assert cancelled.status_code == 200, cancelled.text


def test_the_deployments_default_version_is_checked() -> None:
    from pydantic import ValidationError

    from paycenter.config import Settings

    assert Settings(_env_file=None).default_api_version == versions.CURRENT  # type: ignore[call-arg]
    assert Settings(_env_file=None, default_api_version="legacy").default_api_version == "legacy"  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="Unknown API version"):
        Settings(_env_file=None, default_api_version="1999-01-01")  # type: ignore[call-arg]
