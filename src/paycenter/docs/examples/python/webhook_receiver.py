"""Receive paycenter webhooks: check both signatures, refuse replays, drop duplicates and stale events.

    WEBHOOK_SECRET=test_secret_key WEBHOOK_SIGNING_SECRETS=whsec_... python webhook_receiver.py

Environment:
    PORT                     port to listen on (127.0.0.1), 8080 by default
    WEBHOOK_SECRET           the payment's webhook_secret: the key of X-Webhook-Signature
    WEBHOOK_SIGNING_SECRETS  your whsec_ signing secret (GET /api/webhook-secret); during a rotation
                             the new and the old one, comma-separated: either signature is accepted

Standard library only. Prints one line per request: accepted, duplicate, stale or rejected.
(The official `standardwebhooks` package verifies the webhook-* headers the same way.)
"""

import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Protocol

TOLERANCE = 5 * 60  # seconds: a webhook-timestamp further from now is a replay (or a bad clock)

WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "")
SIGNING_SECRETS = [s.strip() for s in os.environ.get("WEBHOOK_SIGNING_SECRETS", "").split(",") if s.strip()]

# Keep these in your database: a unique key on the event id, the last sequence per payment.
seen_events: set[str] = set()
last_sequence: dict[str, int] = {}


class Headers(Protocol):
    """What the handler reads of the request's headers: a dict or http.server's headers alike."""

    def get(self, name: str, default: str, /) -> str: ...


class Rejected(Exception):
    """Not a genuine, fresh paycenter webhook."""


def verify_hex_signature(body: bytes, signature: str, secret: str) -> None:
    """X-Webhook-Signature: lowercase hex HMAC-SHA256 of the raw body, keyed with the payment's webhook_secret."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Rejected("bad X-Webhook-Signature")


def verify_standard_webhooks(body: bytes, headers: Headers, secrets: list[str], now: float) -> str:
    """webhook-signature: "v1,<base64>" HMAC-SHA256 of "id.timestamp.body" with a whsec_ secret.

    Several signatures, space-separated, during a secret rotation. Returns the event id."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "").split()
    if not msg_id or not timestamp.isdigit() or not signatures:
        raise Rejected("missing webhook-id, webhook-timestamp or webhook-signature")
    if abs(now - int(timestamp)) > TOLERANCE:
        raise Rejected("webhook-timestamp too far from now (a replay?)")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return msg_id
    raise Rejected("bad webhook-signature")


def handle(body: bytes, headers: Headers) -> tuple[int, str]:
    """Check, deduplicate and order one delivery. Returns (HTTP status, what happened)."""
    try:
        verify_hex_signature(body, headers.get("X-Webhook-Signature", ""), WEBHOOK_SECRET)
        event_id = verify_standard_webhooks(body, headers, SIGNING_SECRETS, time.time())
    except Rejected as exc:
        return 401, f"rejected: {exc}"
    event = json.loads(body)
    payment_id, sequence = event["transaction_id"], event["sequence"]

    if event_id in seen_events:  # a retry or a resend of an event we already have
        return 200, f"duplicate {event_id}"
    seen_events.add(event_id)
    if sequence <= last_sequence.get(payment_id, 0):  # older than what we know: keep the newer state
        return 200, f"stale {event['event']} {payment_id} sequence={sequence}"
    last_sequence[payment_id] = sequence

    # Every event carries the payment's state: apply it to your order (metadata.order_id) here.
    return 200, f"accepted {event['event']} {payment_id} sequence={sequence} status={event['status']}"


class WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        raw_body = self.rfile.read(int(self.headers.get("Content-Length", 0)))  # the exact bytes signed
        status, outcome = handle(raw_body, self.headers)
        print(outcome, flush=True)
        self.send_response(status)  # any 2xx tells paycenter "delivered"; anything else is retried
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(outcome.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the outcome line above is enough


if __name__ == "__main__":
    if not WEBHOOK_SECRET or not SIGNING_SECRETS:
        raise SystemExit("set WEBHOOK_SECRET and WEBHOOK_SIGNING_SECRETS")
    server = HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), WebhookHandler)
    print(f"listening on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
