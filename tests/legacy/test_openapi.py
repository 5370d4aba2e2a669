"""`/openapi-legacy.json`: the API as merchants pinned to the `legacy` version see it, served next to
`/openapi.json`. Both are valid OpenAPI; the operations the old PHP system had carry its shapes
(payments/legacy_schemas.py, from shared/reference/legacy-api.md); no legacy operation answers
409 or 422 (the old API said 400); both describe the Paycenter-Version header."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from paycenter import versions
from paycenter.docs import legacy

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
async def documents(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    current = await client.get("/openapi.json")
    old = await client.get("/openapi-legacy.json")
    assert current.status_code == old.status_code == 200, old.text
    assert old.headers["content-type"].startswith("application/json")
    return current.json(), old.json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        if path.startswith("/api/")
        for method, op in item.items()
        if method in METHODS
    ]


def success_ref(op: dict[str, Any]) -> str:
    (code,) = [c for c in op["responses"] if c.startswith("2")]
    content = op["responses"][code].get("content", {})
    if "application/json" not in content:
        return ""  # a stream (text/event-stream: GET /api/events/stream) has no JSON model
    return content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


async def test_both_documents_are_valid_openapi(documents) -> None:
    current, old = documents
    validate(current)
    validate(old)
    assert old["info"]["title"].endswith("(legacy version)")
    assert "/openapi-legacy.json" in current["info"]["description"]  # linked from the reference


async def test_the_old_operations_carry_the_old_shapes(documents) -> None:
    _, old = documents
    expected = {
        ("post", "/api/payment/init"): "LegacyInitEnvelope",
        ("get", "/api/payment/{payment_id}"): "LegacyPaymentEnvelope",
        ("get", "/api/payment/{payment_id}/status"): "LegacyPaymentEnvelope",
        ("post", "/api/payment/{payment_id}/cancel"): "LegacyEmptyEnvelope",
        ("get", "/api/transactions"): "LegacyTransactionsEnvelope",
        ("get", "/api/transaction/{payment_id}"): "LegacyTransactionEnvelope",
        ("get", "/api/statistics"): "LegacyStatisticsEnvelope",
    }
    found = {(m, p): success_ref(op) for m, p, op in operations(old) if (m, p) in expected}
    assert found == expected
    schemas = old["components"]["schemas"]
    page = schemas["LegacyTransactionPage"]
    assert set(page["required"]) == {"transactions", "total", "limit", "offset"}
    detail = schemas["LegacyTransactionDetail"]
    assert set(detail["properties"]) == {"transaction", "partial_payments", "webhook_logs"}
    assert "webhook_secret" not in schemas["LegacyTransactionRow"]["properties"]  # legacy-api.md §7
    stats = schemas["LegacyStatistics"]["properties"]
    assert set(stats) == {"period", "summary", "by_payment_method", "credit_installment"}
    assert set(schemas["LegacyPeriod"]["properties"]) == {"from", "to"}
    payment = schemas["LegacyPayment"]
    assert list(payment["properties"])[:11] == [
        "transaction_id",
        "amount",
        "currency",
        "status",
        "description",
        "payment_url",
        "qr_code",
        "paid_amount",
        "remaining_amount",
        "created_at",
        "paid_at",
    ]
    assert schemas["LegacyErrorEnvelope"]["properties"]["success"]["const"] is False


async def test_refusals_are_400_and_in_the_old_envelope(documents) -> None:
    current, old = documents
    assert any("422" in op["responses"] for _, _, op in operations(current))
    for method, path, op in operations(old):
        codes = set(op["responses"])
        assert not codes & {"409", "422"}, (method, path, codes)
        for code, response in op["responses"].items():
            if int(code) >= 400:
                assert response["content"]["application/json"]["schema"]["$ref"].endswith("/LegacyErrorEnvelope")
    init = next(op for m, p, op in operations(old) if (m, p) == ("post", "/api/payment/init"))
    assert "400" in init["responses"]


async def test_both_documents_describe_the_version_header(documents) -> None:
    """Each offers its own version only: it describes that version's answers."""
    for spec, version in zip(documents, (versions.CURRENT, versions.LEGACY), strict=True):
        for method, path, op in operations(spec):
            (header,) = [p for p in op.get("parameters", []) if p["name"] == versions.HEADER]
            assert header["in"] == "header" and header["required"] is False, (method, path)
            assert header["schema"]["enum"] == [version]
            assert versions.LEGACY in header["description"] and versions.CURRENT in header["description"]


async def test_building_the_legacy_document_leaves_the_current_one_alone(documents) -> None:
    current, _ = documents
    assert not any(success_ref(op).startswith("Legacy") for _, _, op in operations(current))
    assert not any(name.startswith("Legacy") for name in current["components"]["schemas"])


@pytest.mark.parametrize(
    ("method", "path", "model"),
    [
        ("post", "/api/payment/{payment_id}/kaspi", "LegacyKaspiEnvelope"),
        ("post", "/api/payment/{payment_id}/track-visit", "LegacyEmptyEnvelope"),
        ("get", "/api/payment-methods", "LegacyPaymentMethodsEnvelope"),
        ("get", "/api/payment-methods/active", "LegacyPaymentMethodsEnvelope"),
        ("post", "/api/payment/{payment_id}/refund", None),  # not in the old API: the current shape
    ],
)
def test_the_old_operations_yet_to_come_have_their_shapes_ready(method: str, path: str, model: str | None) -> None:
    found = legacy.legacy_model_for(method, path)
    assert (found.__name__ if found else None) == model
