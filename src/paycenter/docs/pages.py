"""The documentation pages: the API reference (Scalar, vendored), the webhook guide, their assets.

- ``/docs`` and ``/admin/docs``: the interactive reference, generated in the browser from
  ``/openapi.json`` by Scalar's standalone bundle (``static/scalar/standalone.js``). "Test request"
  sends to this instance with the token the reader pastes into the X-API-Token field.
- ``/docs/webhooks`` (``?lang=ru`` in Russian): receiving webhooks, with the receivers of
  ``examples/`` shown as they are.
- ``/docs/static/...``: the pages' assets, gzipped once in memory, with ETags.
- ``/docs/examples/...``: the example files themselves, as text, to download.

Nothing is loaded from another host: Scalar runs without its web fonts, telemetry, AI agent and
request proxy.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates

from paycenter.admin.i18n import translator
from paycenter.admin.web import language
from paycenter.docs import samples
from paycenter.payments.samples import sample_body
from paycenter.webhooks import signing

HERE = Path(__file__).parent
SCALAR_VERSION = "1.76.0"  # static/scalar/NOTICE.md says where it comes from
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

PAGE_HEADERS = {"Cache-Control": "no-cache", "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff"}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
ASSETS = ["scalar/standalone.js", "docs.css"]


# --- the reference --------------------------------------------------------------------------------


def reference_page(request: Request, *, base: str, lang: str = "en") -> HTMLResponse:
    """The Scalar reference page; ``base`` is where it is served (``/docs`` or ``/admin/docs``).

    The reference itself is in English, the API's language (its descriptions are the contract);
    from the panel (``/admin/docs``) the bar around it speaks the panel's language and says so."""
    root = request.scope.get("root_path", "").rstrip("/")
    config = {
        "url": f"{root}{request.app.openapi_url}",
        "withDefaultFonts": False,  # no fonts from Scalar's CDN
        "telemetry": False,
        "agent": {"disabled": True},
        "mcp": {"disabled": True},
        "showDeveloperTools": "never",
        "hideClientButton": True,  # it would open Scalar's hosted client
        "hiddenClients": True,  # only our samples (x-codeSamples), which the tests run
        "authentication": {"preferredSecurityScheme": "APIKeyHeader"},
        "persistAuth": False,  # a pasted token stays in this tab
        "metaData": {"title": "paycenter API reference"},
        "documentDownloadType": "json",
    }
    context = {
        "config": config,
        "root": root,
        "base": base,
        "scalar_version": SCALAR_VERSION,
        "lang": lang,
        "t": translator(lang),
    }
    return templates.TemplateResponse(request, "reference.html", context, headers=PAGE_HEADERS)


@router.get("/docs", response_class=HTMLResponse, name="docs")
async def docs(request: Request) -> HTMLResponse:
    return reference_page(request, base="/docs")


@router.get("/admin/docs", response_class=HTMLResponse, name="admin_docs")
async def admin_docs(request: Request) -> HTMLResponse:
    return reference_page(request, base="/admin/docs", lang=language(request))


# --- the webhook guide ------------------------------------------------------------------------------

RECEIVERS = [
    (samples.LANGUAGE["php"], "php/webhook_receiver.php"),
    (samples.LANGUAGE["js"], "js/webhook_receiver.mjs"),
    (samples.LANGUAGE["python"], "python/webhook_receiver.py"),
]
CREATORS = [
    (samples.LANGUAGE["php"], "php/create_payment.php"),
    (samples.LANGUAGE["js"], "js/create_payment.mjs"),
    (samples.LANGUAGE["python"], "python/create_payment.py"),
]
# Made-up secrets for the sample delivery on the page.
SAMPLE_SECRET = "test_secret_key"
SAMPLE_SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _code(items: list[tuple[samples.Language, str]]) -> list[dict[str, str]]:
    return [
        {"key": lang.key, "label": lang.name, "file": name, "source": samples.example_source(name)}
        for lang, name in items
    ]


def sample_delivery() -> dict[str, Any]:
    """A ``paid`` delivery as paycenter sends it (its own body and signing code), with made-up secrets."""
    now = datetime.now(UTC).replace(microsecond=0)
    event_id, body = sample_body("paid", now)
    headers = signing.headers(
        event_type="paid",
        event_id=event_id,
        body=body.encode(),
        timestamp=int(now.timestamp()),
        webhook_secret=SAMPLE_SECRET,
        signing_secrets=[SAMPLE_SIGNING_SECRET],
    )
    return {"headers": headers, "body": body}  # one line: the exact bytes signed


@router.get("/docs/webhooks", response_class=HTMLResponse, name="docs_webhooks")
async def webhooks_guide(request: Request, lang: str = "en") -> HTMLResponse:
    lang = lang if lang in ("en", "ru") else "en"
    root = request.scope.get("root_path", "").rstrip("/")
    context = {
        "lang": lang,
        "root": root,
        "receivers": _code(RECEIVERS),
        "creators": _code(CREATORS),
        "delivery": sample_delivery(),
        "sample_secret": SAMPLE_SECRET,
        "sample_signing_secret": SAMPLE_SIGNING_SECRET,
    }
    return templates.TemplateResponse(request, f"webhooks.{lang}.html", context, headers=PAGE_HEADERS)


@router.get("/docs/examples/{name:path}", response_class=PlainTextResponse, name="docs_example_file")
async def example_file(name: str) -> PlainTextResponse:
    """An example file as text (the guide links to them for download)."""
    if name not in _example_files():
        raise HTTPException(status_code=404, detail="no such example")
    return PlainTextResponse(samples.example_source(name), headers={"Cache-Control": "no-cache"})


def _example_files() -> set[str]:
    return {lang_file for _, lang_file in RECEIVERS + CREATORS}


# --- assets -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


_assets: dict[str, Asset] = {}
_assets_lock = threading.Lock()  # not an asyncio lock: apps of several event loops share the cache


def _load(name: str) -> Asset:
    with _assets_lock:
        if name not in _assets:
            path = HERE / "static" / name
            body = path.read_bytes()
            _assets[name] = Asset(
                body=body,
                gzipped=gzip.compress(body, compresslevel=6, mtime=0),
                etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                media_type=MEDIA_TYPES[path.suffix],
            )
        return _assets[name]


async def asset(name: str) -> Asset:
    """An asset, read and gzipped once per process (off the event loop: the bundle is 4.8 MB)."""
    found = _assets.get(name)  # an Asset is never falsy: "is None" is what "or" tested
    return found if found is not None else await asyncio.to_thread(_load, name)


@router.get("/docs/static/{name:path}", name="docs_static")
async def static(name: str, request: Request) -> Response:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail="no such file")
    item = await asset(name)
    headers = {"ETag": item.etag, "Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(item.gzipped, media_type=item.media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(item.body, media_type=item.media_type, headers=headers)
