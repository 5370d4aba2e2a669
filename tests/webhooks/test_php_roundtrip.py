"""Issue 13: webhook bodies are a fixed point of PHP's ``json_encode(json_decode($body, true))``.

One of the old docs' receivers re-encodes the parsed body with PHP before checking
``X-Webhook-Signature``; it rejected our webhooks when the merchant's metadata held ``100.0``,
``{}`` or ``1e20``. Every expectation here is checked against php-cli itself:

* the rules ``webhooks.wire`` follows, value by value, each one's bytes as PHP re-encodes them;
* a property: random metadata the API takes (drawn within its own limits, then put through the
  API's parser and ``PaymentInit``, as a request is), random descriptions, amounts and extras,
  made into a body by ``events.webhook_body`` (what ``emit`` stores, signs and sends), before and
  after the metadata's trip through the JSON column: PHP's round trip gives back the same bytes
  (decoded to arrays as the issue's receiver does, and to objects as one without ``true`` does),
  and the numbers and texts the same values as the metadata sent;
* the API refuses the integers PHP would read as another number, and takes the rest;
* end to end: the issue's metadata, paid in the sandbox, delivered by the worker to a local sink;
  an old receiver in PHP (decode, re-encode, hex HMAC) accepts the bytes received, and refuses
  them as the previous encoder spelled them.

PHP runs as one ``php -r`` process for the module, a base64 line per body each way (not a process
per example). php missing: skipped, or a failure when ``PAYCENTER_TEST_REQUIRE`` contains ``php``
(as in ``test_docs_examples.py``; CI installs php-cli).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, reject, seed, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kit.api import sandbox
from kit.db import REQUIRED
from kit.sink import wait_until
from paycenter import storable
from paycenter.money import ExactFloat, to_major_number
from paycenter.payments import events
from paycenter.payments.models import EventType, Payment
from paycenter.payments.schemas import (
    METADATA_MAX_KEY_LENGTH,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_LENGTH,
    PaymentInit,
    metadata_schemas,
)
from paycenter.webhooks.wire import PHP_INT_MAX, PHP_INT_MIN, php_json

pytestmark = pytest.mark.slow  # php-cli for every generated body

MAX_EXAMPLES = int(os.environ.get("PAYCENTER_PHP_EXAMPLES", "300"))
SEED = int(os.environ.get("PAYCENTER_PHP_SEED", "13"))

# Reads base64 lines, answers each with two base64 fields: json_encode(json_decode($raw, true))
# (arrays, the receiver of the issue) and json_encode(json_decode($raw)) (objects, as a receiver
# that leaves out `true` has them); "!" and PHP's error where json_encode gives false.
ROUND_TRIP = r"""
function again($out) { return $out === false ? '!' . json_last_error_msg() : base64_encode($out); }
while (($line = fgets(STDIN)) !== false) {
    $raw = base64_decode(trim($line));
    echo again(json_encode(json_decode($raw, true))), ' ', again(json_encode(json_decode($raw))), "\n";
    fflush(STDOUT);
}
"""

# An old merchant's receiver (legacy-api.md §6; one of the old docs' four): it parses the body,
# re-encodes it, and checks X-Webhook-Signature, the hex HMAC-SHA256 keyed with webhook_secret,
# over the re-encoded text. The raw body comes on stdin, the header and secret in the environment.
OLD_RECEIVER = r"""<?php
$raw = stream_get_contents(STDIN);
$data = json_decode($raw, true);
$expected = hash_hmac('sha256', json_encode($data), getenv('WEBHOOK_SECRET'));
if (!hash_equals($expected, (string) getenv('HTTP_X_WEBHOOK_SIGNATURE'))) {
    echo "rejected: bad signature\n";
    exit(1);
}
echo "accepted {$data['event']} {$data['transaction_id']}\n";
echo 'metadata ', json_encode($data['metadata']), "\n";
"""


def _php_or_skip() -> str:
    php = shutil.which("php")
    if php is None:
        if "php" in REQUIRED:
            pytest.fail("php (php-cli) is not installed, and PAYCENTER_TEST_REQUIRE asks for php")
        pytest.skip("php (php-cli) is not installed")
    return php


class Php:
    """One php-cli process that re-encodes bodies the way the old receiver does."""

    def __init__(self, php: str) -> None:
        self.proc = subprocess.Popen(
            [php, "-r", ROUND_TRIP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def round_trip(self, body: bytes) -> tuple[bytes, bytes]:
        """(``json_encode(json_decode($body, true))``, ``json_encode(json_decode($body))``); an
        AssertionError when PHP cannot encode it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # One line out, one line back: PHP answers each before reading the next, so neither pipe fills.
        self.proc.stdin.write(base64.b64encode(body) + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        assert line, f"php answered nothing: {self.proc.stderr.read().decode() if self.proc.poll() is not None else ''}"
        arrays, objects = line.split(b" ")
        for out in (arrays, objects):
            assert not out.startswith(b"!"), f"PHP's json_encode failed: {out[1:].decode()} for {body[:300]!r}"
        return base64.b64decode(arrays), base64.b64decode(objects)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def php() -> Iterator[Php]:
    runner = Php(_php_or_skip())
    yield runner
    runner.close()


# --- the rules, each checked against PHP ------------------------------------------------------
# (value in a webhook body, its bytes): what PHP 8's json_decode($raw, true) then json_encode
# prints for those bytes, as php-cli 8.2 does with its defaults (serialize_precision -1, no flags).
RULES = [
    # The issue's values.
    pytest.param(100.0, "100", id="whole-float-without-fraction"),
    pytest.param({}, "[]", id="empty-object-is-an-array"),
    pytest.param(1e20, "1.0e+20", id="exponent-with-fraction-and-sign"),
    pytest.param("a/b", '"a\\/b"', id="slash-escaped"),
    pytest.param("тест", '"\\u0442\\u0435\\u0441\\u0442"', id="non-ascii-lowercase-u-escapes"),
    # Floats: shortest digits; fixed notation up to 17 integer digits and down to 3 leading zeros.
    pytest.param(1e16, "10000000000000000", id="1e16-fixed"),
    pytest.param(1e17, "1.0e+17", id="1e17-exponent"),
    pytest.param(0.0001, "0.0001", id="1e-4-fixed"),
    pytest.param(1e-5, "1.0e-5", id="1e-5-exponent-unpadded"),
    pytest.param(-1.5e300, "-1.5e+300", id="large-negative"),
    pytest.param(5e-324, "5.0e-324", id="subnormal"),
    pytest.param(0.30000000000000004, "0.30000000000000004", id="seventeen-digits"),
    pytest.param(123456789.123456789, "123456789.12345679", id="shortest-repr"),
    pytest.param(-0.0, "0", id="negative-zero-is-zero"),  # PHP writes -0, then reads it as the int 0
    # Integers: PHP's int range as they are; past it, the float PHP reads.
    pytest.param(PHP_INT_MAX, "9223372036854775807", id="int64-max"),
    pytest.param(PHP_INT_MIN, "-9223372036854775808", id="int64-min"),
    pytest.param(2**63, "9.223372036854776e+18", id="past-int64-is-a-float"),
    pytest.param(10**20, "1.0e+20", id="1e20-as-an-integer"),
    # Text: controls, DEL, astral characters, line separators.
    pytest.param("\x7f", '"\x7f"', id="del-raw"),
    pytest.param("\\u007f\x7f", '"\\\\u007f\x7f"', id="del-beside-escaped-text"),
    pytest.param("\b\f\n\r\t\x01\x1f", '"\\b\\f\\n\\r\\t\\u0001\\u001f"', id="controls"),
    pytest.param("😀\u2028", '"\\ud83d\\ude00\\u2028"', id="astral-and-line-separator"),
    pytest.param("<>&'\"\\", '"<>&\'\\"\\\\"', id="html-characters-raw"),
    # Objects PHP takes for arrays, and those it does not.
    pytest.param({"0": "a", "1": {}}, '["a",[]]', id="keys-0-1-are-a-list"),
    pytest.param({"1": "a", "0": "b"}, '{"1":"a","0":"b"}', id="keys-out-of-order-stay-an-object"),
    pytest.param({"0": "a", "2": "b"}, '{"0":"a","2":"b"}', id="keys-with-a-gap-stay-an-object"),
    pytest.param({"00": 1, "-0": 2, "": 3}, '{"00":1,"-0":2,"":3}', id="non-canonical-keys"),
    pytest.param({"a/b": {"c": []}}, '{"a\\/b":{"c":[]}}', id="nested"),
]


@pytest.mark.parametrize(("value", "expected"), RULES)
def test_each_rule_is_what_php_writes(php: Php, value: Any, expected: str) -> None:
    body = php_json({"metadata": {"v": value}})
    assert body == f'{{"metadata":{{"v":{expected}}}}}'
    assert php.round_trip(body.encode()) == (body.encode(), body.encode())


def test_the_previous_encoder_was_not_a_fixed_point(php: Php) -> None:
    """What the webhooks sent before (Python's json.dumps, "/" escaped), re-encoded by PHP."""
    for value, before in [(100.0, "100.0"), ({}, "{}"), (1e20, "1e+20"), (1e-5, "1e-05"), ("\x7f", '"\\u007f"')]:
        old = json.dumps({"v": value}, separators=(",", ":"))
        assert old == f'{{"v":{before}}}'
        assert php.round_trip(old.encode())[0] != old.encode()


# --- random metadata within the API's limits, through the real code path ------------------------

# Text that exercises PHP's escaping: "/" and "\\", DEL and controls, other scripts, astral
# characters, U+2028, and any Unicode scalar but NUL (which the API refuses).
SPECIAL = ["/", "\\", '"', "\x7f", "\x01", "\n", "\u2028", "т", "é", "😀", "0"]
TEXT_CHAR = st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8", exclude_characters="\x00"))
# Pieces that look like escapes already ("\\u007f" beside a DEL, "\\/").
PIECES = st.lists(st.one_of(TEXT_CHAR, st.sampled_from(["\\u007f", "\\/", "\\\\"])), max_size=12).map("".join)
TEXT = st.one_of(PIECES, st.text(TEXT_CHAR, max_size=METADATA_MAX_VALUE_LENGTH))
KEY = st.one_of(
    st.sampled_from(["0", "1", "2", "00", "-1", "-0", "", "a/b", "user_id", "order_id"]),
    st.text(TEXT_CHAR, max_size=METADATA_MAX_KEY_LENGTH),
)
INTEGERS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(PHP_INT_MIN, PHP_INT_MAX),
    st.sampled_from([PHP_INT_MIN, PHP_INT_MAX, 2**53 + 1, -(2**53) - 1]),
    # Past PHP's range, where the API takes only what the float PHP reads is exactly.
    st.floats(min_value=2**63, max_value=1e300).map(int),
    st.floats(max_value=-(2**63) - 2048, min_value=-1e300).map(int),
)
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # subnormals, ±0.0, 1.7e308
    st.sampled_from([100.0, 1e20, 1e-5, 0.0001, 1e15, 1e16, 1e17, 1e18, 2.0**63, 0.1, 500.5, -0.0]),
    st.integers(-(10**18), 10**18).map(float),  # whole floats, which PHP writes without ".0"
    st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 999), st.integers(-330, 305)),
)
LEAVES = st.one_of(st.none(), st.booleans(), INTEGERS, FLOATS, TEXT)


def _as_php_list(values: list[Any]) -> dict[str, Any]:
    return {str(i): v for i, v in enumerate(values)}


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(KEY, inner, max_size=4),
        st.just({}),
        st.lists(inner, max_size=4).map(_as_php_list),  # {"0": .., "1": ..}: an array to PHP
        st.lists(inner, min_size=2, max_size=4).map(lambda v: dict(reversed(_as_php_list(v).items()))),
    )


VALUES = st.recursive(LEAVES, _containers, max_leaves=12)
METADATA = st.one_of(
    st.dictionaries(KEY, VALUES, min_size=1, max_size=6),
    st.dictionaries(KEY, VALUES, min_size=1, max_size=6),
    st.lists(VALUES, min_size=1, max_size=4).map(_as_php_list),
    st.dictionaries(KEY, LEAVES, min_size=METADATA_MAX_KEYS - 5, max_size=METADATA_MAX_KEYS),
    st.sampled_from([{}, [], None]),  # no metadata: "metadata":[]
)


def as_the_api_takes_it(metadata: Any) -> dict[str, Any] | None:
    """The metadata as ``POST /api/payment/init`` parses and validates it, or ``reject()``: the
    property is about what the API takes."""
    text = json.dumps({"amount": 500, "metadata": metadata}, ensure_ascii=False)
    try:
        data = PaymentInit.model_validate(json.loads(text, parse_float=ExactFloat))
    except ValidationError:
        event("refused by the API")
        reject()
    return data.metadata


@st.composite
def payments(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(["KZT", "JPY", "KWD"]))
    amount = draw(st.integers(1, 10**12))
    paid = draw(st.integers(0, amount))
    extras = draw(
        st.sampled_from(
            [
                {},
                {"payment_method": draw(st.none() | TEXT), "payment_mismatch": draw(st.booleans())},
                {"reason": draw(TEXT), "partially_paid": draw(st.booleans()), "payment_cancelled": True},
                {"refund_id": "ref_1", "refund_amount": to_major_number(draw(st.integers(1, amount)), currency)},
            ]
        )
    )
    return {
        "metadata": draw(METADATA),
        "description": draw(st.text(TEXT_CHAR, max_size=1000)),
        "currency": currency,
        "amount": amount,
        "paid": paid,
        "event_type": draw(st.sampled_from(list(EventType))),
        "extras": extras,
    }


def body_of(case: dict[str, Any], metadata: dict[str, Any]) -> bytes:
    now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    payment = Payment(
        id="0123456789ABCDEF0123456789ABCDEF",
        merchant_id="m",
        amount=case["amount"],
        currency=case["currency"],
        description=case["description"],
        metadata_=metadata,
        status="paid",
        paid_amount=case["paid"],
        received_amount=case["paid"],
        credited_amount=case["paid"],
        refunded_amount=0,
        created_at=now,
        paid_at=now,
        expires_at=now,
    )
    text = events.webhook_body(
        payment,
        event_type=case["event_type"],
        event_id="evt_0123456789abcdef",
        sequence=1,
        previous_status="pending",
        now=now,
        extras=case["extras"],
    )
    return text.encode()


def _decimal(number: int | float) -> Decimal:
    # A float as the decimal its shortest text means (what the merchant's JSON said, and what a
    # reader of the webhook's text gets), not the binary double's exact expansion.
    return Decimal(number) if isinstance(number, int) else Decimal(float.__repr__(number))


def same_number(sent: int | float, received: int | float) -> bool:
    if isinstance(sent, int) and not PHP_INT_MIN <= sent <= PHP_INT_MAX:
        # Past PHP's range: the float PHP reads, which the API took only when it is the integer.
        return isinstance(received, float) and received == sent
    if isinstance(sent, int):
        return isinstance(received, int) and received == sent
    return _decimal(sent) == _decimal(received)  # 100.0 is 100, 6.798651949208402e+16 is 67986519492084020


def same_values(sent: Any, received: Any) -> bool:
    """The metadata as sent and as the webhook's text reads: numbers and texts the same values;
    an object PHP takes for an array comes back as a list."""
    if isinstance(sent, dict):
        if isinstance(received, list):
            return list(sent) == [str(i) for i in range(len(received))] and all(
                same_values(v, r) for v, r in zip(sent.values(), received, strict=True)
            )
        return (
            isinstance(received, dict)
            and list(sent) == list(received)
            and all(same_values(v, received[k]) for k, v in sent.items())
        )
    if isinstance(sent, list):
        return isinstance(received, list) and len(sent) == len(received) and all(map(same_values, sent, received))
    if isinstance(sent, bool) or sent is None or isinstance(sent, str):
        return sent == received and type(sent) is type(received)
    assert isinstance(received, int | float) and not isinstance(received, bool), received
    return same_number(sent, received)


@seed(SEED)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=payments())
def test_webhook_bytes_are_a_fixed_point_of_php(php: Php, case: dict[str, Any]) -> None:
    metadata = as_the_api_takes_it(case["metadata"])
    # As emitted in the request that stored it, and as read back from the JSON column later.
    for stored in (metadata or {}, json.loads(json.dumps(metadata or {}))):
        body = body_of(case, stored)
        note(f"body: {body[:2000]!r}")
        assert php.round_trip(body) == (body, body)
        sent = json.loads(body)
        assert same_values(stored, sent["metadata"])  # {} too: "metadata":[]
        assert sent["description"] == case["description"]
    event("metadata kept" if metadata else "no metadata")


# --- what the API takes ----------------------------------------------------------------------------


async def init(client: Any, merchant: Any, metadata_json: str) -> Any:
    content = f'{{"amount": 500, "metadata": {metadata_json}}}'.encode()
    return await client.post(
        "/api/payment/init", content=content, headers={**merchant.headers, "Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    "number",
    [
        "9223372036854775807",
        "-9223372036854775808",
        "100000000000000000000",  # 1e20 as JavaScript's JSON.stringify writes it: exactly a double
        "18446744073709551616",  # 2**64
        "12345678901234567890.5",  # a fraction: a float for every reader, PHP included
        "1.2345678901234567891e19",
    ],
)
async def test_integers_php_reads_as_the_same_number_are_taken(client, db, merchant, number):
    r = await init(client, merchant, f'{{"n": {number}}}')
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("number", "php_reads"),
    [
        ("12345678901234567891", "1.2345678901234567e+19"),
        ("9223372036854775809", "9.223372036854776e+18"),
        ("-9223372036854775809", "-9.223372036854776e+18"),
        ("1" + "0" * 400, None),  # past the float's range: refused as no finite number
    ],
)
async def test_integers_php_would_change_are_refused(client, db, merchant, number, php_reads):
    r = await init(client, merchant, f'{{"order": {{"ids": [1, {number}]}}}}')
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["success"] is False
    assert [f["field"] for f in body["error"]["fields"]] == ["metadata"], body
    if php_reads:
        assert php_reads in body["message"] and "string" in body["message"], body["message"]
    else:
        assert storable.NON_FINITE in body["message"], body["message"]


def test_the_document_states_the_integer_rule() -> None:
    description = metadata_schemas()["Metadata"]["description"]
    assert "9223372036854775807" in description and "json_encode(json_decode" in description


# --- end to end: the issue's metadata, an old PHP receiver ------------------------------------------

ISSUE_METADATA = '{"total": 100.0, "options": {}, "big": 1e20, "path": "a/b", "name": "тест", "items": {"0": "x"}}'
PHP_FORM = '{"total":100,"options":[],"big":1.0e+20,"path":"a\\/b","name":"\\u0442\\u0435\\u0441\\u0442","items":["x"]}'


def old_receiver(tmp_path: Path, body: bytes, signature: str, secret: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "receiver.php"
    script.write_text(OLD_RECEIVER)
    env = {"PATH": os.environ.get("PATH", ""), "WEBHOOK_SECRET": secret, "HTTP_X_WEBHOOK_SIGNATURE": signature}
    return subprocess.run(
        [_php_or_skip(), str(script)], input=body.decode(), capture_output=True, text=True, env=env, timeout=30
    )


async def test_an_old_php_receiver_accepts_the_issue_metadata(client, db, merchant, worker, sink, tmp_path):
    _php_or_skip()
    secret = "test_secret_key"
    content = json.dumps({"amount": 500, "webhook_url": sink.on("/old"), "webhook_secret": secret})
    content = content[:-1] + f', "metadata": {ISSUE_METADATA}}}'
    r = await client.post(
        "/api/payment/init", content=content.encode(), headers={**merchant.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text
    pid = r.json()["data"]["transaction_id"]
    await sandbox(client, pid, checkout_id="x")
    await wait_until(lambda: len(sink.at("/old")) == 1, timeout=10, what="the paid webhook")
    (received,) = sink.at("/old")
    signature = {k.lower(): v for k, v in received.headers.items()}["x-webhook-signature"]
    assert signature == hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert f'"metadata":{PHP_FORM},'.encode() in received.body

    done = old_receiver(tmp_path, received.body, signature, secret)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"accepted paid {pid}", f"metadata {PHP_FORM}"]

    # The same event as the previous encoder spelled it (Python's json.dumps, "/" escaped),
    # signed over those bytes: the old receiver refused it, which was the issue.
    event_fields = json.loads(received.body) | {"metadata": json.loads(ISSUE_METADATA)}
    previous = json.dumps(event_fields, separators=(",", ":")).replace("/", "\\/").encode()
    assert b'"metadata":{"total":100.0,"options":{},"big":1e+20,' in previous
    old_signature = hmac.new(secret.encode(), previous, hashlib.sha256).hexdigest()
    refused = old_receiver(tmp_path, previous, old_signature, secret)
    assert refused.returncode == 1 and refused.stdout == "rejected: bad signature\n", refused.stdout

    # The API's reads keep the metadata as it was sent.
    detail = (await client.get(f"/api/transaction/{pid}", headers=merchant.headers)).json()["data"]
    assert detail["metadata"] == json.loads(ISSUE_METADATA)
