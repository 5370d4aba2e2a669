"""``/openapi-legacy.json``: the API as merchants pinned to the ``legacy`` version see it.

Versions differ only in rendering (``paycenter.versions``), so the legacy document is the current
one with each operation's answers swapped: the old system's shapes
(``payments.legacy_schemas``) where it had the operation, its error envelope everywhere, and its
400 where the current version says 409 or 422 (``errors.LEGACY_STATUS``). Operations the old
system did not have keep their current shapes, with the legacy status codes. Both documents
describe the ``Paycenter-Version`` header.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from paycenter import versions
from paycenter.errors import LEGACY_STATUS
from paycenter.payments import legacy_schemas as legacy

REF = "#/components/schemas/{model}"
LEGACY_PATH = "/openapi-legacy.json"
# Paths of the current version only: payment links (the old system had none).
CURRENT_ONLY = ("/api/links",)

# (method, path under /api, the old system's answer): the operations it had (legacy-api.md §4).
_ID = r"\{[^/]+\}"
OPERATIONS: tuple[tuple[str, re.Pattern[str], type[BaseModel]], ...] = tuple(
    (method, re.compile(f"^/api{path}$"), model)
    for method, path, model in (
        ("post", "/payment/init", legacy.LegacyInitEnvelope),
        ("get", f"/payment/{_ID}", legacy.LegacyPaymentEnvelope),
        # The old routing answered /status exactly as the read (§4).
        ("get", f"/payment/{_ID}/status", legacy.LegacyPaymentEnvelope),
        ("post", f"/payment/{_ID}/cancel", legacy.LegacyEmptyEnvelope),
        ("post", f"/payment/{_ID}/track-visit", legacy.LegacyEmptyEnvelope),
        ("post", f"/payment/{_ID}/kaspi", legacy.LegacyKaspiEnvelope),
        ("get", "/payment-methods(?:/active)?", legacy.LegacyPaymentMethodsEnvelope),
        ("get", "/transactions", legacy.LegacyTransactionsEnvelope),
        ("get", f"/transaction/{_ID}", legacy.LegacyTransactionEnvelope),
        ("get", "/statistics", legacy.LegacyStatisticsEnvelope),
    )
)


def version_header(version: str) -> dict[str, Any]:
    """The header as one document describes it: each document gives the answers of one version,
    so it offers that version only (a request naming the other is answered as the other document
    says, which a client or fuzzer reading this one would take for a broken answer)."""
    return {
        "name": versions.HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": [version]},
        "description": (
            "The API version to answer this request in; without it, the version the merchant is pinned "
            f"to (`{versions.LEGACY}` for merchants imported from the old system, `{versions.CURRENT}` "
            f"for new ones). This document describes `{version}`; the versions are `{versions.CURRENT}` "
            f"(`/openapi.json`) and `{versions.LEGACY}` (`{LEGACY_PATH}`), and differ only in how "
            "answers are rendered (docs/migrating.md). An unknown version is refused with 400."
        ),
    }


LEGACY_NOTE = f"""

This is the **`{versions.LEGACY}`** version: the answers of the old PHP payment center, which
merchants imported from it are pinned to. Amounts are decimal strings, flags 0/1, times
`YYYY-MM-DD HH:MM:SS` in Asia/Almaty; refusals are 400 where the current version says 409 or 422.
Operations the old system did not have answer as in the current version (`/openapi.json`). Send
`{versions.HEADER}: {versions.CURRENT}` to try the current version on one request.
"""

_OPERATION_KEYS = ("get", "put", "post", "delete", "patch", "options", "head")


def _api_operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every merchant API operation in the document."""
    for path, item in spec.get("paths", {}).items():
        if path.startswith("/api/"):
            for method in _OPERATION_KEYS:
                if method in item:
                    yield method, path, item[method]


def add_version_header(spec: dict[str, Any], version: str = versions.CURRENT) -> None:
    """Describe ``Paycenter-Version`` on every API operation (both documents)."""
    for _method, _path, op in _api_operations(spec):
        params = op.setdefault("parameters", [])
        params[:] = [p for p in params if not (p.get("in") == "header" and p.get("name") == versions.HEADER)]
        params.append(version_header(version))
        error = {"$ref": REF.format(model="ErrorEnvelope")}
        op.setdefault("responses", {}).setdefault(
            "400",
            {"description": f"Unknown {versions.HEADER}", "content": {"application/json": {"schema": error}}},
        )


def legacy_model_for(method: str, path: str) -> type[BaseModel] | None:
    for m, pattern, model in OPERATIONS:
        if m == method and pattern.match(path):
            return model
    return None


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "serialization") for m in legacy.LEGACY_MODELS], ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}


def _legacy_responses(responses: dict[str, Any], model: type[BaseModel] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, response in responses.items():
        status = int(code) if code.isdigit() else None
        if status is not None and status >= 400:
            code = str(LEGACY_STATUS.get(status, status))
            merged = out.get(code)
            description = response.get("description", "")
            if merged is not None and description not in merged["description"]:
                description = f"{merged['description']}; {description}"
            out[code] = {"description": description, "content": _json(legacy.LegacyErrorEnvelope)}
        elif status is not None and 200 <= status < 300 and model is not None:
            out[code] = {"description": response.get("description", "Success"), "content": _json(model)}
        else:
            out[code] = response
    return dict(sorted(out.items()))


def build(current: dict[str, Any]) -> dict[str, Any]:
    """The legacy document made from the current one (which is not changed)."""
    spec = copy.deepcopy(current)
    info = spec.setdefault("info", {})
    info["title"] = f"{info.get('title', 'paycenter')} ({versions.LEGACY} version)"
    info["description"] = (info.get("description") or "").rstrip() + LEGACY_NOTE
    # What the legacy version does not have at all (answered 404 for it): left out of its document.
    spec["paths"] = {p: v for p, v in spec.get("paths", {}).items() if not p.startswith(CURRENT_ONLY)}
    for method, path, op in _api_operations(spec):
        op["responses"] = _legacy_responses(op.get("responses", {}), legacy_model_for(method, path))
    add_version_header(spec, versions.LEGACY)
    spec.setdefault("components", {}).setdefault("schemas", {}).update(_schemas())
    return spec
