"""Webhook body bytes exactly as the old PHP system produced them.

Merchants verify ``X-Webhook-Signature`` over the raw body, and some re-encode the parsed JSON with
PHP's ``json_encode`` before verifying. So the bytes must be what ``json_encode`` gives by default:
compact, ``/`` escaped as ``\\/``, non-ASCII as ``\\uXXXX``, integral amounts without a fraction.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Webhook amounts have at most 3 decimals and under 16 significant digits, so the float's
        # shortest repr is exactly the decimal's text.
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def php_json(value: Any) -> str:
    text = json.dumps(_plain(value), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    # "/" can only occur inside JSON strings, so escaping every one is exact.
    return text.replace("/", "\\/")
