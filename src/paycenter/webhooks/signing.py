"""Webhook signatures: the old system's hex HMAC and Standard Webhooks, side by side.

- ``X-Webhook-Signature``: lowercase hex HMAC-SHA256 of the exact body with the payment's
  ``webhook_secret`` (what existing merchants verify).
- ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``: the Standard Webhooks scheme
  (base64 HMAC-SHA256 of ``id.timestamp.body`` with the merchant's ``whsec_`` secret), verifiable
  with the official ``standardwebhooks`` libraries. During a secret rotation both secrets sign.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

USER_AGENT = "paycenter-webhooks/1"


def hex_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=1024)
def _whsec_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_whsec_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    *,
    event_type: str,
    event_id: str,
    body: bytes,
    timestamp: int,
    webhook_secret: str | None,
    signing_secrets: list[str],
) -> dict[str, str]:
    result = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Event": event_type,
        "X-Webhook-Timestamp": str(timestamp),
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
    }
    if webhook_secret:
        result["X-Webhook-Signature"] = hex_signature(webhook_secret, body)
    if signing_secrets:
        result["webhook-signature"] = " ".join(
            standard_signature(s, event_id, timestamp, body) for s in signing_secrets
        )
    return result
