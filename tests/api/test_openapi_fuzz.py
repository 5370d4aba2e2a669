"""Schemathesis over the app's own ``/openapi.json``: every documented operation, fuzzed.

Asserted for every answer: no 5xx, the status code is documented for the operation, the content
type is the documented one, the body validates against the documented schema (envelopes, amounts
as strings, ...), documented headers are present, an operation that declares the API token
really refuses requests without one or with a wrong one, an undeclared method gets 405, and the
two checks that hold the document to the truth (``paycenter.contract``): every request the
schema allows is taken (``positive_data_acceptance``: no 400/422), and every request it forbids
is refused (``negative_data_rejection``). 413 counts as an answer both ways: a body's size limit
is the one rule JSON Schema cannot state (the document gives it in words), and the test lowers
it so that the fuzzer meets it. 409 is a documented answer for what only a payment's state
decides (a refund larger than what is left, finer than the payment's currency).

How it runs
-----------
* One pytest item per operation and backend (``test_openapi[GET /api/statistics][postgresql]``),
  from the schema loaded at import with ``schema.parametrize()``. (``schemathesis.pytest.
  from_fixture`` would be the natural fit for a per-backend app, but schemathesis 4.32 writes
  ``Node._nodeid``, which pytest 9 no longer has; only the app, not the document, is per backend.)
* Requests go in-process to the ASGI app (``schemathesis.openapi.from_asgi``), no socket.
  Schemathesis runs ASGI apps on its own event loop in a background thread (one anyio portal for
  the process), not on pytest-asyncio's session loop, so the app under test owns its database
  engine: it is built by ``create_app(settings)`` as ``paycenter run`` builds it, its pool fills
  on schemathesis's loop, and the app's lifespan disposes it on that same loop when
  schemathesis's pytest plugin ends the lifespan after each test. No connection crosses loops.
  Seeding (a merchant, payments in every state) runs before any fuzzing, on the session loop,
  through the test kit's own ``Database``; both engines see the same database.
* Bounded and reproducible: ``MAX_EXAMPLES`` per operation (plus schemathesis's deterministic
  coverage cases and the schema's examples), ``deterministic`` generation (Hypothesis'
  ``derandomize``), no example database, no deadline, nothing learnt from responses. 100
  examples: `make test` traces branch coverage, which triples the cost (POST init took 150 s per
  backend with 150). Locally, ``PAYCENTER_FUZZ_EXAMPLES=1000 PAYCENTER_FUZZ_SEED=<n>`` digs
  deeper with random data.
* Path ids: generated strings, plus placeholders the test swaps for real payments (pending,
  partially paid, paid, refunded, cancelled, another merchant's), so reads, cancels and refunds
  reach their 200, 404 and 409 answers, not only 404.
* Auth: most calls carry the seeded merchant's token; a stable share of cases (picked from the
  case's own data, so shrinking keeps the pick) drops the header or keeps the random token
  schemathesis generates, and the ``ignored_auth`` check probes each secured operation without
  a token and with a wrong one.
* Dictionaries feed schemathesis values that random text almost never produces and that broke
  the API: datetimes at the edge of Python's range (converting them to UTC overflowed; they are
  valid RFC 3339, so they are clamped, not refused), cursors at the edges of the ordering. (No
  dictionaries for amounts or currencies: a value put in after generation can break the body's
  per-currency rule, and the positive check would blame the server for the fuzzer's mix.)
* The body limit is lowered to 1 KiB here so the fuzzer also meets the 413 answer.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st

from kit.api import SEED_BODY, MerchantCreds, make_merchant
from kit.clock import Clock
from paycenter.app import create_app
from paycenter.config import Settings
from paycenter.context import AppContext
from paycenter.db import Database
from paycenter.providers.registry import Providers

pytestmark = pytest.mark.slow  # schemathesis fuzzes every operation: minutes

MAX_EXAMPLES = int(os.environ.get("PAYCENTER_FUZZ_EXAMPLES", "100"))
SEED = os.environ.get("PAYCENTER_FUZZ_SEED")
BODY_LIMIT = 1024

# Placeholders for real payment ids: plain ASCII, so they survive schemathesis's path encoding.
REAL = [f"real-payment-{i}" for i in range(6)]


EDGE_DATETIMES = [
    "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC
    "9999-12-31T23:59:59-01:00",  # after datetime.max once in UTC
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",  # a leap second
]
# Every text of the cursor's pattern is a position: the first, the last, past the last.
EDGE_CURSORS = ["0.A", "999999999999999999.ZZZZ", "253402300799999999.0123456789ABCDEF0123456789ABCDEF"]
# Statuses the server answers with when a request was taken or is refused for a reason the
# schema cannot state: the body's size (413).
TAKEN = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": int(SEED or "20240611"),
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": SEED is None,
            "database": "none",
        },
        "dictionaries": {
            "edge-datetimes": {"values": EDGE_DATETIMES},
            "edge-cursors": {"values": EDGE_CURSORS},
        },
        "parameters": {
            "query.created_from": {"dictionary": "edge-datetimes", "probability": 0.2},
            "query.created_to": {"dictionary": "edge-datetimes", "probability": 0.2},
            "query.cursor": {"dictionary": "edge-cursors", "probability": 0.2},
        },
        "checks": {
            "positive_data_acceptance": {"expected-statuses": TAKEN},
            "negative_data_rejection": {"expected-statuses": REFUSED},
        },
        "phases": {
            # Stateful runs need schemathesis's engine (its CLI); these are per-operation tests.
            "stateful": {"enabled": False},
            # Responses carry random ids and times: let none of them steer generation.
            "fuzzing": {
                "extra-data-sources": {"responses": False},
                "error-feedback": {"enabled": False},
            },
        },
    }
)

# Serves the document at collection time only; it never opens its (in-memory) database.
_docs_app = create_app(Settings(database_url="sqlite://", run_worker=False, _env_file=None))  # type: ignore[call-arg]
# The events stream is left out: its 200 is an answer that never ends (server-sent events), which
# an in-process call would wait for forever; tests/webhooks/test_events_stream.py covers it.
schema = schemathesis.openapi.from_asgi("/openapi.json", _docs_app, config=CONFIG).exclude(path="/api/events/stream")


@schema.hook
def before_generate_path_parameters(context: Any, strategy: st.SearchStrategy) -> st.SearchStrategy:
    if "{payment_id}" not in context.operation.path:
        return strategy
    # Path values are already percent-encoded here: "%00" reaches the app as a NUL character.
    extra = st.sampled_from([*REAL, "A%00B", "0" * 32 + "%00"])
    return st.one_of(strategy, st.fixed_dictionaries({"payment_id": extra}))


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.ignored_auth,
    schemathesis.checks.unsupported_method,
    schemathesis.checks.positive_data_acceptance,
    schemathesis.checks.negative_data_rejection,
]


@dataclass
class Target:
    app: Any
    token: str
    payments: dict[str, str]  # placeholder -> real payment id


@pytest.fixture(scope="module")
async def target(database_url: str, _database: Database) -> AsyncIterator[Target]:
    settings = Settings(  # type: ignore[call-arg]
        database_url=database_url,
        public_url="http://pay.test",
        max_body_bytes=BODY_LIMIT,
        run_worker=False,
        _env_file=None,
    )
    creds = await make_merchant(_database, name="Fuzz shop")
    other = await make_merchant(_database, name="Fuzz other shop")
    providers = Providers(settings)
    seed_ctx = AppContext(settings=settings, db=_database, providers=providers, clock=Clock())
    transport = httpx.ASGITransport(app=create_app(ctx=seed_ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://pay.test") as client:

        async def new(owner: MerchantCreds) -> str:
            response = await client.post("/api/payment/init", json=SEED_BODY, headers=owner.headers)
            assert response.status_code == 201, response.text
            return str(response.json()["data"]["transaction_id"])

        async def call(method: str, url: str, expected: int, **kwargs: Any) -> None:
            response = await client.request(method, url, **kwargs)
            assert response.status_code == expected, response.text

        pending, partial, paid, refunded, cancelled = [await new(creds) for _ in range(5)]
        foreign = await new(other)
        await call("POST", f"/pay/{partial}/sandbox", 303, data={"action": "pay", "amount": "100"})
        for pid in (paid, refunded):
            await call("POST", f"/pay/{pid}/sandbox", 303, data={"action": "pay"})
        refund = {"json": {"amount": 100}, "headers": creds.headers}
        await call("POST", f"/api/payment/{refunded}/refund", 200, **refund)
        cancel = {"json": {}, "headers": creds.headers}
        await call("POST", f"/api/payment/{cancelled}/cancel", 200, **cancel)

    ids = [pending, partial, paid, refunded, cancelled, foreign]
    # Built as production builds it; its engine lives on schemathesis's loop (see the docstring).
    app = create_app(settings)
    yield Target(app=app, token=creds.token, payments=dict(zip(REAL, ids, strict=True)))


def _stable(value: Any) -> str:
    # Not repr(): a body that is not set is an object whose repr holds its memory address.
    return repr(value) if isinstance(value, bytes | str | int | float) else type(value).__name__


def _auth_mode(case: schemathesis.Case) -> int:
    """0: no token, 1: whatever schemathesis generated (a random token), else the real token."""
    data = [case.path_parameters, case.query, case.body]
    return zlib.crc32(json.dumps(data, sort_keys=True, default=_stable).encode()) % 6


@schema.parametrize()
def test_openapi(case: schemathesis.Case, target: Target) -> None:
    mode = _auth_mode(case)  # before real ids (random per run) replace the placeholders
    if case.path_parameters and case.path_parameters.get("payment_id") in target.payments:
        case.path_parameters["payment_id"] = target.payments[case.path_parameters["payment_id"]]
    headers = None
    if mode == 0:
        for name in [h for h in (case.headers or {}) if h.lower() == "x-api-token"]:
            del case.headers[name]
    elif mode >= 2:
        headers = {"X-API-Token": target.token}
    case.call_and_validate(app=target.app, headers=headers, checks=CHECKS)
