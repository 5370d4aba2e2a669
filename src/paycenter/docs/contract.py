"""Completes the OpenAPI document with the rules pydantic cannot derive from the models.

FastAPI writes each field's type and bounds; what the server checks beyond them is written here,
from the same code and settings the server checks with (``paycenter.contract``, ``money``):
the amount per currency group and up to this deployment's maximum, the currencies, the
providers this deployment offers, the webhook hosts it takes, metadata's nesting levels, and
"no NUL" on every free text. A client validating against the document and the server agree.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from paycenter import contract, money
from paycenter.payments.schemas import METADATA_MAX_KEY_LENGTH, METADATA_MAX_KEYS, metadata_schemas

# Request bodies whose every free-text field the storable rule covers (no NUL characters).
REQUEST_BODIES = ("PaymentInit", "RefundRequest", "CancelRequest", "RecoverRequest", "RotateRequest", "LinkCreate")


def _with_text_rule(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and not {"pattern", "enum", "format", "const"} & schema.keys():
        schema["pattern"] = contract.TEXT_PATTERN
    for branch in schema.get("anyOf", []):
        _with_text_rule(branch)


def _currencies(groups: dict[int, list[str]], exps: list[int]) -> list[str]:
    codes = [code for exp in exps for code in groups[exp]]
    return codes + [code.lower() for code in codes]


def refine(spec: dict[str, Any], *, max_amount: Decimal, providers: list[str], webhook_ip_literals: bool) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    most = int(max_amount)
    for name in REQUEST_BODIES:
        for prop in schemas.get(name, {}).get("properties", {}).values():
            _with_text_rule(prop)
    schemas.update(metadata_schemas())

    init = schemas["PaymentInit"]
    props = init["properties"]
    groups = money.currencies_by_exponent()
    amount_doc = props["amount"].get("description", "")
    props["amount"] = money.amount_schema(money.MAX_EXPONENT, most) | {"title": "Amount", "description": amount_doc}
    props["currency"] = {
        "anyOf": [{"enum": _currencies(groups, list(groups))}, {"type": "null"}],
        "default": "KZT",
        "title": "Currency",
        "description": props["currency"].get("description", ""),
    }
    # Which amounts a currency takes: one branch per number of minor digits. No currency (or
    # null) is KZT, two digits.
    branches = []
    for exp in groups:
        codes: list[Any] = _currencies(groups, [exp])
        if exp == 2:
            codes.append(None)
        branch: dict[str, Any] = {
            "properties": {"currency": {"enum": codes}, "amount": money.amount_schema(exp, most)},
        }
        if exp != 2:
            branch["required"] = ["currency"]
        branches.append(branch)
    init["anyOf"] = branches
    props["provider"] = {
        "anyOf": [{"enum": list(providers)}, {"type": "string", "maxLength": 0}, {"type": "null"}],
        "title": "Provider",
        "description": "Payment provider of this deployment; the merchant's default if omitted or empty.",
    }
    hosts = "a host name in ASCII (an IDN in its xn-- form)"
    props["webhook_url"] = contract.url_schema(
        max_length=500,
        ip_literals=webhook_ip_literals,
        description=f"http(s) URL with {hosts}"
        + (", or an IP address inside PAYCENTER_WEBHOOK_ALLOWED_NETWORKS" if webhook_ip_literals else "")
        + "; at most 500 characters; empty or null: none.",
    )
    for name in ("success_url", "fail_url"):
        props[name] = contract.url_schema(
            max_length=2000,
            ip_literals=True,
            description=props[name].get("description", "") + f" http(s) URL with {hosts} or an IP address.",
        )
    props["metadata"] = {"$ref": "#/components/schemas/Metadata"}

    if "LinkCreate" in schemas:
        _refine_links(schemas["LinkCreate"], props["provider"], most)

    refund_amount = schemas["RefundRequest"]["properties"]["amount"]
    refund_amount["anyOf"] = [*money.amount_schema(money.MAX_EXPONENT, most)["anyOf"], {"type": "null"}]


def _refine_links(link: dict[str, Any], provider: dict[str, Any], most: int) -> None:
    """``POST /api/links``: KZT amounts; a fixed amount, or (reusable links) both bounds; a one-off
    link has no end of its own; metadata as a payment's, less the key ``link_id`` takes."""
    props = link["properties"]
    kzt = money.amount_schema(money.exponent("KZT"), most)
    none = {"type": "null"}
    for name in ("amount", "min_amount", "max_amount"):
        props[name] = {"anyOf": [*kzt["anyOf"], none], "description": props[name].get("description", "")}
    props["provider"] = provider
    top = {
        "type": "object",
        "maxProperties": METADATA_MAX_KEYS - 1,
        "propertyNames": {"maxLength": METADATA_MAX_KEY_LENGTH, "pattern": contract.TEXT_PATTERN},
        "additionalProperties": {"$ref": "#/components/schemas/MetadataValue2"},
    }
    props["metadata"] = {"anyOf": [top, none], "description": props["metadata"].get("description", "")}
    no_bounds = {"min_amount": none, "max_amount": none}
    link["anyOf"] = [
        {  # one-off (the default kind): a fixed amount, and no end of its own
            "properties": {"kind": {"const": "one_off"}, "amount": kzt, **no_bounds, "link_expires_at": none},
            "required": ["amount"],
        },
        {  # reusable, fixed amount
            "properties": {"kind": {"const": "reusable"}, "amount": kzt, **no_bounds},
            "required": ["kind", "amount"],
        },
        {  # reusable, the payer chooses within the bounds
            "properties": {"kind": {"const": "reusable"}, "amount": none, "min_amount": kzt, "max_amount": kzt},
            "required": ["kind", "min_amount", "max_amount"],
        },
    ]
