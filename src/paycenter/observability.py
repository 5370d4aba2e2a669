"""Metrics (Prometheus), structured JSON logs, and the request id that ties them together.

- Every HTTP request gets an id (the caller's ``X-Request-ID`` if it sent a sane one), echoed in
  the response and put on every log line written while handling it, with the transaction id
  once the handler knows it (``bind_transaction``).
- Metrics live in the process's registry; with several API processes (``paycenter api
  --workers N``) prometheus_client's multiprocess mode aggregates them (PROMETHEUS_MULTIPROC_DIR).
- Figures that are facts of the database (payments by status, the webhook backlog) are read at
  scrape time, so every process reports the same truth.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import os
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paycenter.db import normalize_payment_id

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
TRANSACTION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("transaction_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter("paycenter_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "paycenter_http_request_duration_seconds", "HTTP request latency", ["method", "route"], buckets=LATENCY_BUCKETS
)
DELIVERY_ATTEMPTS = Counter("paycenter_webhook_attempts_total", "Webhook delivery tries", ["outcome"])
EVENT_TO_DELIVERY = Histogram(
    "paycenter_event_to_delivery_seconds",
    "From an event's commit to its first successful delivery",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
POLL_CYCLE = Histogram(
    "paycenter_poller_cycle_seconds", "One poll of every live attempt", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
)
PROVIDER_CALLS = Histogram(
    "paycenter_provider_call_seconds", "Calls to payment providers", ["provider", "call"], buckets=LATENCY_BUCKETS
)
PROVIDER_ERRORS = Counter("paycenter_provider_errors_total", "Failed provider calls", ["provider", "call"])
LOOP_ROW_FAILURES = Counter(
    "paycenter_loop_row_failures_total", "Rows a background loop failed on and quarantined", ["loop"]
)


def bind_transaction(payment_id: str | None) -> None:
    """Say which payment the current request or job is about: it goes on every log line."""
    TRANSACTION_ID.set(payment_id)


def bind_path_transaction(path_params: dict[str, Any]) -> None:
    """Routes with a ``payment_id`` in their path log it on every line."""
    payment_id = path_params.get("payment_id")
    if isinstance(payment_id, str):
        TRANSACTION_ID.set(normalize_payment_id(payment_id)[:32])


async def transaction_from_path(request: Request) -> None:
    """Router dependency of the pages (the API's route class binds it itself: ``deps.ExactJsonRoute``)."""
    bind_path_transaction(request.path_params)


# --- logs ----------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request and transaction ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("request_id", REQUEST_ID), ("transaction_id", TRANSACTION_ID)):
            value = var.get()
            if value:
                entry[key] = value
        for key in ("method", "path", "status", "duration_ms", "client"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# The fields a text line shows after its message, as key=value (method, path and status are in the
# access line's message already).
_TEXT_FIELDS = ("duration_ms", "client", "request_id", "transaction_id")
_LEVEL_COLORS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


class TextFormatter(logging.Formatter):
    """One line a record for a person at a terminal: local time, level, logger, message, then
    the key fields as key=value (a traceback follows on its own lines)."""

    def __init__(self, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.") + f"{int(record.msecs):03d}"
        level = f"{record.levelname:<7}"
        if self.color:
            level = f"\x1b[{_LEVEL_COLORS.get(record.levelname, '0')}m{level}\x1b[0m"
        fields = {"request_id": REQUEST_ID.get(), "transaction_id": TRANSACTION_ID.get()}
        fields.update({key: getattr(record, key) for key in ("duration_ms", "client") if hasattr(record, key)})
        tail = " ".join(f"{key}={fields[key]}" for key in _TEXT_FIELDS if fields.get(key) not in (None, ""))
        line = f"{when} {level} {record.name}: {record.getMessage()}" + (f"  {tail}" if tail else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_format_for(setting: str, stream: Any = None) -> str:
    """ "json" or "text": as set, or for "auto" text on a terminal and JSON lines elsewhere (a
    service's journal, a container's log, a file), as production reads them."""
    if setting in ("json", "text"):
        return setting
    stream = sys.stderr if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no stream, or a closed one
        return "json"


def configure_logging(level: str = "info", *, log_format: str = "auto") -> dict[str, Any]:
    """Logging for paycenter and uvicorn on stderr; returns the dict config (also for uvicorn's
    log_config). ``log_format``: "json", "text" or "auto" (``log_format_for``)."""
    if log_format_for(log_format) == "json":
        formatter: dict[str, Any] = {"()": JsonFormatter}
    else:
        # Colored levels on a terminal, unless NO_COLOR (no-color.org) is set.
        color = log_format_for("auto") == "text" and not os.environ.get("NO_COLOR")
        formatter = {"()": TextFormatter, "color": color}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "paycenter": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # ours is richer
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
    logging.config.dictConfig(config)
    return config


access_log = logging.getLogger("paycenter.access")


# --- the HTTP middleware ---------------------------------------------------------------------


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    raw = scope.get("path", "")
    # Unmatched paths are not labels: one per URL would explode the series.
    return "/static" if raw.startswith(("/static", "/admin/static", "/docs/static")) else "unmatched"


class RequestContext:
    """Request id in and out, the access log line and the request metrics, for every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SANE_ID.match(incoming) else secrets.token_hex(8)
        token_r = REQUEST_ID.set(request_id)
        token_t = TRANSACTION_ID.set(None)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            if route not in ("/static", "/metrics", "/healthz"):
                client = scope.get("client")
                access_log.info(
                    "%s %s %s",
                    method,
                    scope.get("path", ""),
                    status,
                    extra={
                        "method": method,
                        "path": scope.get("path", ""),
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                    },
                )
            REQUEST_ID.reset(token_r)
            TRANSACTION_ID.reset(token_t)


# --- exposition ------------------------------------------------------------------------------------


def exposition(extra_gauges: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]) -> bytes:
    """The Prometheus text: this process's (or all processes') metrics plus database facts."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        # prometheus_client leaves MultiProcessCollector.__init__ unannotated.
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    lines = [text.decode()]
    for name, (help_text, samples) in extra_gauges.items():
        lines.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        for labels, value in samples.items():
            rendered = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{rendered}}} {value}\n" if rendered else f"{name} {value}\n")
    return "".join(lines).encode()
