"""Recorded answers of the HTTP API (tests/api/test_recorded_responses.py): requests written with
placeholders, sent through the app, and their answers normalised and compared byte for byte.

The normaliser replaces only what is random by design, and nothing else:

- a payment id (32 upper-case hex characters that the scenario did not write itself) becomes
  ``<payment:N>``, N counting distinct ids in order of first appearance; the same id in lower
  case is ``<payment:N:lower>``;
- any other 32 lower-case hex characters (``secrets.token_hex(16)``: the checkout id the payer's
  page makes, which the sandbox's ``provider_transaction_id`` holds) become ``<hex:N>``;
- a prefixed id (``paycenter.db.new_id``: ``evt_`` + 24 lower-case hex characters, ``rfd_``...)
  becomes ``<evt:N>``, counted per prefix;
- a generated request id (the ``x-request-id`` answer header when the request sent none, or
  sent one the app refused) becomes ``<request-id>`` once it is checked to be 16 lower-case hex
  characters (``observability.RequestContext``); any other value is kept literally.

Merchant tokens are never in an answer; requests name them ``<token:NAME>``. Requests are
written with the same placeholders, filled with the real values when sent, so a request can name
a payment an earlier answer created. Times are not normalised: the app's clock is frozen at a
fixed instant and moved by a fixed step before each request, so they are recorded as they are.

Every answer header is recorded (names lower-case, sorted by name: the order of header lines
means nothing to an HTTP client, and a rewritten middleware stack may emit them in another order).
Bodies are recorded as text exactly as sent (UTF-8), not re-serialised.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

PAYMENT_ID = re.compile(r"(?<![0-9A-Za-z])[0-9A-F]{32}(?![0-9A-Za-z])")
LOWER_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32}(?![0-9A-Za-z])")
PREFIXED_ID = re.compile(r"(?<![0-9A-Za-z_])([a-z]{2,8})_([0-9a-f]{24})(?![0-9A-Za-z])")
PLACEHOLDER = re.compile(r"<(payment|token|[a-z]{2,8}):([0-9A-Za-z_-]+)(:lower)?>")
REQUEST_ID = re.compile(r"[0-9a-f]{16}")
LONG = 1000  # a request body longer than this is recorded by its start, length and digest


@dataclass
class Call:
    """One request: path, headers and body may hold placeholders (``<payment:1>``, ``<token:shop>``).
    A body is text (sent as UTF-8) or bytes (recorded in base64: not valid UTF-8)."""

    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    chunked: bool = False  # sent without Content-Length, in chunks

    def recorded(self) -> dict[str, Any]:
        request: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.headers:
            request["headers"] = self.headers
        if isinstance(self.body, bytes):
            request["body_base64"] = base64.b64encode(self.body).decode()
        elif self.body is not None and len(self.body) > LONG:
            # Built by the scenario's code (70 KB of "x"): its start, length and digest identify it.
            digest = hashlib.sha256(self.body.encode()).hexdigest()
            request["body_start"] = self.body[:200]
            request |= {"body_length": len(self.body), "body_sha256": digest}
        elif self.body is not None:
            request["body"] = self.body
        if self.chunked:
            request["chunked"] = True
        return request


class Normaliser:
    """Placeholders both ways: filled into requests, put in place of random values in answers."""

    def __init__(self, tokens: dict[str, str], literal: set[str]) -> None:
        self.real: dict[str, str] = {f"<token:{name}>": token for name, token in tokens.items()}
        self.tokens = {token: f"<token:{name}>" for name, token in tokens.items()}
        self.literal = literal  # payment-like ids the scenario writes itself (an unknown id)
        self.names: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def fill(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            base = f"<{m.group(1)}:{m.group(2)}>"
            if base not in self.real:
                raise AssertionError(f"the scenario names {m.group(0)} before any answer gave it")
            value = self.real[base]
            return value.lower() if m.group(3) else value

        return PLACEHOLDER.sub(one, text)

    def _name(self, kind: str, value: str) -> str:
        if value not in self.names:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            name = f"<{kind}:{self.counts[kind]}>"
            self.names[value] = name
            self.real[name] = value
        return self.names[value]

    def normalise(self, text: str) -> str:
        def payment(m: re.Match[str]) -> str:
            value = m.group(0)
            return value if value in self.literal else self._name("payment", value)

        def prefixed(m: re.Match[str]) -> str:
            return self._name(m.group(1), m.group(0))

        def lower_hex(m: re.Match[str]) -> str:
            value = m.group(0)
            known = self.names.get(value.upper(), "")
            return known[:-1] + ":lower>" if known.startswith("<payment:") else self._name("hex", value)

        text = PAYMENT_ID.sub(payment, text)
        text = LOWER_HEX.sub(lower_hex, text)
        text = PREFIXED_ID.sub(prefixed, text)
        for token, name in self.tokens.items():
            text = text.replace(token, name)
        return text

    def answer(self, call: Call, sent: dict[str, str], response: httpx.Response) -> dict[str, Any]:
        headers = []
        for name, value in sorted(response.headers.multi_items(), key=lambda kv: kv[0].lower()):
            name = name.lower()
            if name == "x-request-id" and value != sent.get("x-request-id"):
                assert REQUEST_ID.fullmatch(value), f"{call.name}: a generated request id {value!r}"
                value = "<request-id>"
            else:
                value = self.normalise(value)
            headers.append([name, value])
        try:
            body: dict[str, str] = {"body": self.normalise(response.content.decode("utf-8"))}
        except UnicodeDecodeError:
            body = {"body_base64": base64.b64encode(response.content).decode()}
        return {"status": response.status_code, "headers": headers, **body}


async def send(client: httpx.AsyncClient, norm: Normaliser, call: Call) -> dict[str, Any]:
    """Send ``call`` and return its recorded entry: the request as written, the answer normalised."""
    headers = {name: norm.fill(value) for name, value in call.headers.items()}
    content: bytes | None
    if isinstance(call.body, bytes):
        content = call.body
    else:
        content = norm.fill(call.body).encode("utf-8") if call.body is not None else None
    if call.chunked and content is not None:
        data = content

        async def chunks() -> Any:
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        response = await client.request(call.method, norm.fill(call.path), headers=headers, content=chunks())
    else:
        response = await client.request(call.method, norm.fill(call.path), headers=headers, content=content)
    sent = {name.lower(): value for name, value in headers.items()}
    return {"name": call.name, "request": call.recorded(), "response": norm.answer(call, sent, response)}


def dumps(entries: list[dict[str, Any]]) -> str:
    return json.dumps(entries, ensure_ascii=False, indent=1) + "\n"


def key(entry: dict[str, Any]) -> str:
    """An entry's name, unique in a recording (``do: ...`` for a change between requests)."""
    return str(entry["name"]) if "name" in entry else f"do: {entry['do']}"


def differences(recorded: list[dict[str, Any]], replayed: list[dict[str, Any]], *, show: int = 8) -> str:
    """A readable report of what differs, entries paired by name: those only on one side, and a
    unified diff of each entry that differs (the first ``show``)."""
    before = {key(e): e for e in recorded}
    after = {key(e): e for e in replayed}
    out = []
    gone = [k for k in before if k not in after]
    new = [k for k in after if k not in before]
    if gone:
        out.append(f"{len(gone)} recorded entries were not replayed: {', '.join(gone[:show])}")
    if new:
        out.append(f"{len(new)} replayed entries are not in the recording (record again?): {', '.join(new[:show])}")
    if [k for k in before if k in after] != [k for k in after if k in before]:
        out.append("the entries were replayed in another order")
    differing = [k for k in after if k in before and before[k] != after[k]]
    out.append(f"{len(differing)} of {len(after)} replayed entries answer otherwise than recorded")
    for name in differing[:show]:
        diff = difflib.unified_diff(_lines(before[name]), _lines(after[name]), "recorded", "replayed", lineterm="", n=3)
        out.append(f"\n{name}:\n" + "\n".join(diff))
    return "\n".join(out)


def _lines(entry: dict[str, Any]) -> list[str]:
    """An entry as lines for a diff: the body broken after each comma, so a diff points at a field."""
    if "do" in entry:
        return [f"do: {entry['do']}"]
    request = entry["request"]
    lines = [f"request: {request['method']} {request['path']}"]
    lines += [f"request header {name}: {value}" for name, value in request.get("headers", {}).items()]
    for key in ("body", "body_base64", "body_start", "body_length", "body_sha256"):
        if key in request:
            lines.append(f"request {key}: {str(request[key])[:200]}")
    response = entry["response"]
    lines.append(f"status: {response['status']}")
    lines += [f"header {name}: {value}" for name, value in response["headers"]]
    if "body_base64" in response:
        lines.append(f"body (base64): {response['body_base64']}")
    else:
        lines += ["body:", *("  " + part for part in re.split(r"(?<=,)", response["body"]))]
    return lines
