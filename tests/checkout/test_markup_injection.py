"""Text from merchants and payers is shown as text, never as markup, on every page that shows it.

A merchant writes a payment's description, metadata, customer fields and webhook URL; a webhook
endpoint writes the response body and headers we log; all of them reach the payer's page and the
operator's panel. Each payload below is planted in every such field and every page is read back:
no payload appears raw (it would be live markup, a script, or an attribute breaking out), and the
escaped form of the visible text is there (so the check is not passing on a page that dropped it).
"""

from __future__ import annotations

import html
import re

import pytest

from kit.admin import signed_in
from kit.api import create_payment

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</textarea><script>alert(2)</script>",
    "{{ 7*7 }}<b>bold</b>",
    "javascript:alert(3)//<a href=x>",
]


def _raw_markup_in(page: str, payload: str) -> bool:
    """Whether the payload's markup survived unescaped (a tag or an attribute break-out)."""
    return payload in page and any(ch in payload for ch in "<>\"'")


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_merchant_and_payer_text_is_never_markup(client, db, merchant, admin, payload):
    data = await create_payment(
        client,
        merchant,
        description=payload,
        customer_name=payload[:200],
        customer_email=payload[:254],
        metadata={"order_id": payload, "note": payload, "nested": {payload[:40]: [payload]}},
    )
    pid = data["transaction_id"]
    pages = {"/pay": (await client.get(f"/pay/{pid}")).text}
    await signed_in(client, admin)
    for path in (f"/admin/transactions/{pid}", "/admin/transactions", f"/admin/transactions?q={payload}"):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        pages[path] = r.text
    for path, page in pages.items():
        assert not _raw_markup_in(page, payload), f"{path} shows {payload!r} as markup"
    # The text itself is there, escaped: on the payer's page (the description) and the detail.
    for path in ("/pay", f"/admin/transactions/{pid}"):
        assert payload in html.unescape(re.sub(r"\s+", " ", pages[path])), f"{path} does not show the text at all"
