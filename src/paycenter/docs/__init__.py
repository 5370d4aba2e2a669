"""Interactive API documentation (served locally) and the examples embedded in it.

``install(app)`` adds:

- ``/docs`` and ``/admin/docs``: the API reference (Scalar, vendored in ``static/scalar/``), built in
  the browser from ``/openapi.json``; "Test request" calls this instance with a pasted token;
- ``/docs/webhooks``: how to receive webhooks (English; ``?lang=ru`` in Russian);
- ``/openapi.json`` with ``x-codeSamples`` in PHP, JavaScript and Python on every operation, made
  once (on the first request, like FastAPI's own document) from the files in ``examples/``;
- ``/openapi-legacy.json``: the same API as merchants on the ``legacy`` version see it
  (``legacy.py``), made once from ``/openapi.json``.

The examples live inside the package (``paycenter/docs/examples/``) so that any install has them;
``samples.py`` says how they become code samples, and tests/docs/test_examples.py runs them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from paycenter.docs import contract, legacy, pages, samples

GUIDE_LINK = "/docs/webhooks"

DOCS_NOTE = f"""

**Code samples** in PHP (curl), JavaScript (Node 18+, fetch) and Python (httpx) come with every
operation; each reads `PAYCENTER_URL`, `PAYCENTER_TOKEN` and its path parameters from the
environment. **Test request** calls this paycenter: paste your API token into the `X-API-Token` field.

**Receiving webhooks**: verifying `X-Webhook-Signature` and the Standard Webhooks headers,
deduplicating by event id, ordering by `sequence`: see [the webhook guide]({GUIDE_LINK})
([по-русски]({GUIDE_LINK}?lang=ru)).

**API versions**: merchants imported from the old PHP payment center are pinned to the `legacy`
version, which answers in the old shapes: its document is [{legacy.LEGACY_PATH}]({legacy.LEGACY_PATH}).
The `Paycenter-Version` header picks a version for one request.
"""


def document(app: FastAPI, build: Any) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with code samples and the guide's link (built once)."""
    if app.openapi_schema is None:
        spec = build()  # FastAPI's own builder; it caches into app.openapi_schema
        app.openapi_schema = None  # until the samples are in: a failure here is not cached
        info = spec.setdefault("info", {})
        info["description"] = (info.get("description") or "").rstrip() + DOCS_NOTE
        for tag in spec.get("tags", []):
            if tag.get("name") == "webhooks":
                tag["description"] = (
                    tag.get("description", "").rstrip() + f" How to receive them: [the webhook guide]({GUIDE_LINK})."
                )
        policy = app.state.ctx.init_policy
        contract.refine(
            spec,
            max_amount=policy.max_amount,
            providers=policy.providers,
            webhook_ip_literals=bool(policy.webhook_networks),
        )
        samples.add_code_samples(spec)
        legacy.add_version_header(spec)
        app.openapi_schema = spec
    return app.openapi_schema


def install(app: FastAPI) -> None:
    """Mount the documentation on ``app`` (its own ``docs_url``/``redoc_url`` must be off)."""
    build = app.openapi
    # FastAPI's documented way to extend the schema: replace the app's openapi method.
    app.openapi = lambda: document(app, build)  # type: ignore[method-assign]
    app.include_router(pages.router)

    @app.get(legacy.LEGACY_PATH, include_in_schema=False)
    async def openapi_legacy(request: Request) -> JSONResponse:
        return JSONResponse(legacy_document(request.app))


def legacy_document(app: FastAPI) -> dict[str, Any]:
    """``/openapi-legacy.json``, built once from the current document."""
    cached: dict[str, Any] | None = getattr(app.state, "openapi_legacy", None)
    if cached is None:
        cached = app.state.openapi_legacy = legacy.build(app.openapi())
    return cached
