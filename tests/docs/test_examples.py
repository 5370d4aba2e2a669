"""The API documentation: its pages, and its examples run for real.

One ``paycenter run`` process (fresh SQLite file in a temp dir, webhooks allowed to reach
127.0.0.0/8) serves every test here. For each language (Python with this venv's interpreter,
JavaScript with Node's built-ins, PHP with php-cli and its curl extension), with a merchant of its
own from ``paycenter merchant create --json``:

* every operation's code sample is taken from the *served* ``/openapi.json`` (``x-codeSamples``),
  written to a file and run against the server; each must exit 0 and print a successful envelope.
  The test checks that every operation of the document was run;
* the language's webhook receiver example runs as a small HTTP server on 127.0.0.1 and receives
  real webhooks: the payment created by the ``create_payment`` example is paid through the sandbox
  form, and the receiver must report ``accepted paid ...`` (after a secret rotation, so the
  delivery carries two Standard Webhooks signatures); a resend must be reported as a duplicate; a
  refund and a cancel come next in sequence. Then the test sends it forged deliveries, made with
  paycenter's own signing code: a tampered body, a wrong webhook-signature, a replay (old
  timestamp) are refused; an older event is reported stale; a signature by the old secret alone,
  after a bogus one, is accepted.

Waits are on conditions with deadlines (a line from the receiver, a port that answers), never
fixed sleeps. PHP missing (or its curl extension): skipped, or a failure when
``PAYCENTER_TEST_REQUIRE`` contains ``php``. Chromium missing: the browser test is skipped, or
fails when ``PAYCENTER_TEST_REQUIRE`` contains ``chromium``.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from kit.browser import Windows
from kit.db import REQUIRED
from kit.served import PAYCENTER, START_TIMEOUT, free_port, paycenter_run
from paycenter.docs import samples
from paycenter.webhooks import signing
from paycenter.webhooks.wire import php_json

pytestmark = pytest.mark.slow  # a `paycenter run` process and every example in three languages

EXAMPLES = samples.EXAMPLES
RUN_TIMEOUT = 30.0  # one example program
WEBHOOK_TIMEOUT = 10.0  # from the payment to the receiver's line
SCALAR_API_KEY_PLACEHOLDER = "QUxMIFlPVVIgQkFTRSBBUkUgQkVMT05HIFRPIFVT"
TOKEN_LINE = re.compile(r"^    (pct_[A-Za-z0-9_-]+)$", re.MULTILINE)


def _php_problem() -> str | None:
    php = shutil.which("php")
    if php is None:
        return "php (php-cli) is not installed"
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30).stdout.split()
    if "curl" not in modules:
        return "php has no curl extension (php-curl)"
    return None


@dataclass(frozen=True)
class Runtime:
    key: str  # samples.LANGUAGE key
    ext: str

    def command(self, path: Path) -> list[str]:
        if self.key == "python":
            return [sys.executable, "-u", str(path)]
        if self.key == "js":
            return [shutil.which("node") or "/usr/bin/node", str(path)]
        return [shutil.which("php") or "php", str(path)]

    def receiver_command(self, port: int) -> list[str]:
        path = EXAMPLES / self.key / f"webhook_receiver.{self.ext}"
        if self.key == "php":
            return [shutil.which("php") or "php", "-S", f"127.0.0.1:{port}", str(path)]
        return self.command(path)


RUNTIMES = {"python": Runtime("python", "py"), "js": Runtime("js", "mjs"), "php": Runtime("php", "php")}


def _require(key: str) -> None:
    if key == "php" and (problem := _php_problem()):
        if "php" in REQUIRED:
            pytest.fail(f"{problem}, and PAYCENTER_TEST_REQUIRE asks for php")
        pytest.skip(problem)
    if key == "js" and shutil.which("node") is None:
        pytest.fail("node is required for the JavaScript examples")


def _base_env(**extra: str) -> dict[str, str]:
    """A clean environment: no proxies, no PAYCENTER_ settings of the outer shell."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", **extra)
    return env


# --- the server -----------------------------------------------------------------------------------


@dataclass
class Server:
    base_url: str
    workdir: Path
    env: dict[str, str]
    token: str
    log: Path


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    workdir = tmp_path_factory.mktemp("paycenter-docs")
    env = _base_env(
        PAYCENTER_DATABASE_URL=f"sqlite:///{workdir / 'paycenter.db'}",
        PAYCENTER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
    )
    async with paycenter_run(workdir, env) as running:
        match = TOKEN_LINE.search(running.output())
        assert match, f"no demo API token in the output of `paycenter run`:\n{running.output()}"
        yield Server(running.base_url, workdir, env, match.group(1), running.log)


@pytest.fixture(scope="module")
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
async def spec(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in samples.HTTP_METHODS
    }


@dataclass
class Merchant:
    merchant_id: str
    api_token: str
    webhook_signing_secret: str


async def _create_merchant(server: Server, name: str) -> Merchant:
    proc = await asyncio.create_subprocess_exec(
        *(str(PAYCENTER), "merchant", "create", name, "--json"),
        cwd=server.workdir,
        env=server.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    assert proc.returncode == 0, err.decode()
    data = json.loads(out)
    return Merchant(data["merchant_id"], data["api_token"], data["webhook_signing_secret"])


@pytest.fixture(scope="module")
async def merchants(server: Server) -> dict[str, Merchant]:
    """A merchant of its own per language (made side by side: the CLI takes a second to start)."""
    made = await asyncio.gather(*(_create_merchant(server, f"Docs {key} shop") for key in RUNTIMES))
    return dict(zip(RUNTIMES, made, strict=True))


# --- the document and the pages ---------------------------------------------------------------------


async def test_every_operation_has_samples_from_the_example_files(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert len(operations) >= 14
    inputs = samples.operation_inputs()
    assert set(inputs) <= set(operations), f"operations.toml names unknown operations: {set(inputs) - set(operations)}"
    for key, op in operations.items():
        code = op.get("x-codeSamples")
        assert code, f"{key} has no x-codeSamples"
        assert [c["lang"] for c in code] == ["php", "javascript", "python"], key
        assert all(c["label"] and c["source"].strip() for c in code), key
        method, path = key.split(" ", 1)
        for c in code:
            assert method in c["source"] or "file" in inputs.get(key, {}), f"{key}: {c['label']} does not say {method}"
            if "file" not in inputs.get(key, {}):
                assert path in c["source"], f"{key}: {c['label']} does not name its path"
        if op.get("requestBody", {}).get("required"):
            assert "body" in inputs.get(key, {}) or "file" in inputs.get(key, {}), f"{key} needs a body example"
    # Complete example files are embedded byte for byte, not retyped.
    init = operations["POST /api/payment/init"]["x-codeSamples"]
    for c, lang in zip(init, samples.LANGUAGES, strict=True):
        assert c["source"] == (EXAMPLES / lang.key / f"create_payment.{lang.ext}").read_text(encoding="utf-8")
    # The document links the webhook guide.
    assert "/docs/webhooks" in spec["info"]["description"]


def test_document_is_built_once() -> None:
    from paycenter.app import create_app
    from paycenter.config import Settings

    app = create_app(Settings(database_url="sqlite://", run_worker=False, _env_file=None))  # type: ignore[call-arg]
    first = app.openapi()
    assert app.openapi() is first  # cached: not rebuilt per request
    assert all("x-codeSamples" in op for item in first["paths"].values() for op in item.values())
    assert app.docs_url is None and app.redoc_url is None


def test_missing_examples_fail_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(samples, "EXAMPLES", tmp_path)
    with pytest.raises(samples.ExamplesMissing, match="were not installed"):
        samples.example_source("python/webhook_receiver.py")


async def test_reference_pages_are_local(api: httpx.AsyncClient) -> None:
    for url in ("/docs", "/admin/docs"):
        page = await api.get(url)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], url
        scripts = re.findall(r'<script src="([^"]+)"', page.text)
        assert scripts == ["/docs/static/scalar/standalone.js?v=" + scalar_version()], scripts
        assert '"withDefaultFonts": false' in page.text and '"telemetry": false' in page.text
        assert "/openapi.json" in page.text and "/docs/webhooks" in page.text
        assert not re.search(r'(src|href)="(https?:)?//', page.text), "nothing from another host"
    for gone in ("/redoc", "/docs/oauth2-redirect"):
        assert (await api.get(gone)).status_code == 404

    bundle = await api.get("/docs/static/scalar/standalone.js", headers={"Accept-Encoding": "gzip"})
    assert bundle.status_code == 200 and bundle.headers["content-encoding"] == "gzip"
    assert bundle.headers["content-type"].startswith("text/javascript")
    vendored = (Path(samples.__file__).parent / "static" / "scalar" / "standalone.js").read_bytes()
    assert bundle.content == vendored  # httpx un-gzips
    assert int(bundle.headers["content-length"]) < len(vendored) / 2
    again = await api.get("/docs/static/scalar/standalone.js", headers={"If-None-Match": bundle.headers["etag"]})
    assert again.status_code == 304
    assert (await api.get("/docs/static/%2e%2e/pages.py")).status_code == 404
    assert (await api.get("/docs/static/scalar/NOTICE.md")).status_code == 404


def scalar_version() -> str:
    from paycenter.docs import pages

    notice = (Path(pages.__file__).parent / "static" / "scalar" / "NOTICE.md").read_text()
    assert f"| version | {pages.SCALAR_VERSION} |" in notice
    return pages.SCALAR_VERSION


async def test_webhook_guide_shows_the_example_files(api: httpx.AsyncClient) -> None:
    for lang, title in (("en", "Receiving webhooks"), ("ru", "Приём вебхуков")):
        page = await api.get("/docs/webhooks", params={"lang": lang})
        assert page.status_code == 200
        assert f"<h1>{title}</h1>" in page.text
        for name in ("php/webhook_receiver.php", "js/webhook_receiver.mjs", "python/webhook_receiver.py"):
            source = (EXAMPLES / name).read_text(encoding="utf-8")
            assert html.escape(source, quote=False) in page.text.replace("&#39;", "'").replace("&#34;", '"'), name
            download = await api.get(f"/docs/examples/{name}")
            assert download.status_code == 200 and download.text == source
        for topic in ("X-Webhook-Signature", "webhook-signature", "webhook-timestamp", "sequence", "event_id"):
            assert topic in page.text, (lang, topic)
        # The sample delivery on the page verifies with the secrets it names (the official library).
        sample = re.search(r'data-testid="sample-delivery">(.*?)</code>', page.text, re.S)
        assert sample
        head, body = html.unescape(sample.group(1)).split("\n\n", 1)
        headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
        secret = re.search(r"<code>(whsec_[A-Za-z0-9+/=]+)</code>", page.text)
        assert secret
        Webhook(secret.group(1)).verify(body.encode(), headers)
        assert headers["X-Webhook-Signature"] == signing.hex_signature("test_secret_key", body.encode())
    assert (await api.get("/docs/examples/%2e%2e/samples.py")).status_code == 404
    assert (await api.get("/docs/examples/python/request.py.j2")).status_code == 404


# --- the examples, run ------------------------------------------------------------------------------


@dataclass
class Result:
    answer: dict[str, Any]
    stdout: str


@dataclass
class Runner:
    """Runs the code samples of one language, taken from the served document."""

    runtime: Runtime
    spec: dict[str, Any]
    server: Server
    token: str
    workdir: Path
    ran: set[str] = field(default_factory=set)
    files: Iterator[int] = field(default_factory=itertools.count)

    def source(self, operation: str) -> str:
        op = _operations(self.spec)[operation]
        lang = samples.LANGUAGE[self.runtime.key].lang
        return next(c["source"] for c in op["x-codeSamples"] if c["lang"] == lang)

    async def run(self, operation: str, **env: str) -> Result:
        path = self.workdir / f"sample_{next(self.files)}.{self.runtime.ext}"
        path.write_text(self.source(operation), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            *self.runtime.command(path),
            cwd=self.workdir,
            env=_base_env(PAYCENTER_URL=self.server.base_url, PAYCENTER_TOKEN=self.token, **env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"{operation} ({self.runtime.key}) ran longer than {RUN_TIMEOUT} s")
        stdout = out.decode()
        assert proc.returncode == 0, (
            f"{operation} ({self.runtime.key}) exited {proc.returncode}:\n{stdout}\n{err.decode()}"
        )
        self.ran.add(operation)
        if operation == "GET /api/events/stream":
            # Not an envelope: one JSON line per event (the sample reads a stream that never ends).
            return Result({"events": [json.loads(line) for line in stdout.splitlines()]}, stdout)
        answer = json.loads(stdout)
        assert answer["success"] is True, stdout
        return Result(answer, stdout)


class Receiver:
    """A webhook receiver example running as a server; its output lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    async def expect(self, pattern: str, timeout: float = WEBHOOK_TIMEOUT) -> str:
        """The first output line matching ``pattern`` (a regex), waiting for it up to ``timeout``."""
        regex = re.compile(pattern)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for line in self.lines:
                if regex.search(line):
                    return line
            if self.proc.returncode is not None:
                pytest.fail(f"the receiver exited ({self.proc.returncode}):\n" + "\n".join(self.lines))
            left = deadline - loop.time()
            if left <= 0:
                pytest.fail(
                    f"no line matching {pattern!r} within {timeout} s; the receiver said:\n" + "\n".join(self.lines)
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


async def _start_receiver(runtime: Runtime, workdir: Path, **env: str) -> Receiver:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *runtime.receiver_command(port),
        cwd=workdir,
        env=_base_env(PORT=str(port), WEBHOOK_STATE_FILE=str(workdir / "webhook-state.json"), **env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    receiver = Receiver(proc, f"http://127.0.0.1:{port}/")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while True:  # up when its port accepts connections
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return receiver
        except OSError:
            pass
        if proc.returncode is not None or loop.time() > deadline:
            await receiver.stop()
            pytest.fail(f"the {runtime.key} receiver did not start:\n" + "\n".join(receiver.lines))
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline above


def _forged(
    payment_id: str, *, sequence: int, webhook_secret: str, signing_secrets: list[str], timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A delivery signed by paycenter's own code, with an event we make up."""
    event_id = "evt_" + secrets.token_hex(12)
    body = php_json(
        {
            "event": "paid",
            "transaction_id": payment_id,
            "amount": 500,
            "status": "paid",
            "metadata": [],
            "timestamp": int(time.time()),
            "event_id": event_id,
            "sequence": sequence,
            "previous_status": "pending",
        }
    ).encode()
    headers = signing.headers(
        event_type="paid",
        event_id=event_id,
        body=body,
        timestamp=timestamp if timestamp is not None else int(time.time()),
        webhook_secret=webhook_secret,
        signing_secrets=signing_secrets,
    )
    return body, headers


async def _delivered(api: httpx.AsyncClient, merchant: Merchant, payment_id: str) -> None:
    """Wait until paycenter has recorded every delivery of the payment as succeeded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WEBHOOK_TIMEOUT
    while True:
        r = await api.get(f"/api/payment/{payment_id}/webhooks", headers={"X-API-Token": merchant.api_token})
        log = r.json()["data"]
        if log and all(d["status"] == "succeeded" for d in log):
            return
        if loop.time() > deadline:
            pytest.fail(f"deliveries not recorded as succeeded within {WEBHOOK_TIMEOUT} s: {log}")
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline above


@pytest.mark.parametrize("key", ["python", "js", "php"])
async def test_examples_against_a_running_paycenter(
    key: str,
    server: Server,
    api: httpx.AsyncClient,
    spec: dict[str, Any],
    merchants: dict[str, Merchant],
    tmp_path: Path,
) -> None:
    _require(key)
    runtime = RUNTIMES[key]
    merchant = merchants[key]
    runner = Runner(runtime, spec, server, merchant.api_token, tmp_path)
    run = runner.run
    webhook_secret = f"whs-{key}-{secrets.token_hex(8)}"

    # The signing secret, then a rotation: deliveries now carry the new and the old signature.
    old = (await run("GET /api/webhook-secret")).answer["data"]["signing_secret"]
    assert old == merchant.webhook_signing_secret
    rotated = (await run("POST /api/webhook-secret/rotate")).answer["data"]
    new = rotated["signing_secret"]
    assert new.startswith("whsec_") and new != old and rotated["previous_secret_expires_at"]

    receiver = await _start_receiver(
        runtime, tmp_path, WEBHOOK_SECRET=webhook_secret, WEBHOOK_SIGNING_SECRETS=f"{new},{old}"
    )
    try:
        # create_payment.* reports to the receiver; the payer pays in the sandbox.
        created = await run(
            "POST /api/payment/init", WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=webhook_secret, ORDER_ID=f"DOCS-{key}-1"
        )
        pid = created.answer["data"]["transaction_id"]
        assert created.answer["data"]["payment_url"].endswith(f"/pay/{pid}")
        reads = ("GET /api/payment/{payment_id}", "GET /api/payment/{payment_id}/status")
        for view in await asyncio.gather(*(run(read, PAYMENT_ID=pid) for read in reads)):
            assert view.answer["data"]["status"] == "pending"
        r = await api.post(f"/pay/{pid}/sandbox", data={"action": "pay"})
        assert r.status_code == 303, r.text
        await receiver.expect(rf"^accepted paid {pid} sequence=1 status=paid$")

        # The delivery log shows it delivered (once paycenter has recorded the answer); a resend is
        # the same event: a duplicate.
        await _delivered(api, merchant, pid)
        log = (await run("GET /api/payment/{payment_id}/webhooks", PAYMENT_ID=pid)).answer["data"]
        (delivery,) = log
        assert (delivery["status"], delivery["last_status_code"]) == ("succeeded", 200)
        sent = delivery["attempts"][0]["request_headers"]
        assert len(sent["webhook-signature"].split()) == 2  # both secrets signed it
        await run("POST /api/webhooks/{delivery_id}/resend", DELIVERY_ID=delivery["id"])
        await receiver.expect(rf"^duplicate {delivery['event_id']}$")

        # A partial refund: the next event in sequence.
        refund = (await run("POST /api/payment/{payment_id}/refund", PAYMENT_ID=pid)).answer["data"]
        assert refund["refund"]["amount"] == "100.00"
        await receiver.expect(rf"^accepted refunded {pid} sequence=2 ")

        # Forged deliveries: only the genuine, fresh and newest get through.
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:

            async def deliver(body: bytes, headers: dict[str, str]) -> httpx.Response:
                return await http.post(receiver.url, content=body, headers=headers)

            secrets_now = {"webhook_secret": webhook_secret, "signing_secrets": [new, old]}
            body, headers = _forged(pid, sequence=1, **secrets_now)
            r = await deliver(body, headers)
            assert r.status_code == 200, r.text
            await receiver.expect(rf"^stale paid {pid} sequence=1$")

            body, headers = _forged(pid, sequence=9, **secrets_now)
            r = await deliver(body.replace(b'"amount":500', b'"amount":5'), headers)
            assert r.status_code == 401 and "X-Webhook-Signature" in r.text

            body, headers = _forged(pid, sequence=9, webhook_secret=webhook_secret, signing_secrets=[new])
            headers["webhook-signature"] = headers["webhook-signature"][:-6] + "AAAAA="
            r = await deliver(body, headers)
            assert r.status_code == 401 and "webhook-signature" in r.text

            body, headers = _forged(pid, sequence=9, **secrets_now, timestamp=int(time.time()) - 600)
            r = await deliver(body, headers)
            assert r.status_code == 401 and "webhook-timestamp" in r.text

            body, headers = _forged(pid, sequence=9, webhook_secret=webhook_secret, signing_secrets=[old])
            bogus = signing.standard_signature(
                "whsec_" + "A" * 43 + "=", headers["webhook-id"], int(headers["webhook-timestamp"]), body
            )
            headers["webhook-signature"] = f"{bogus} {headers['webhook-signature']}"
            r = await deliver(body, headers)
            assert r.status_code == 200, r.text
            await receiver.expect(rf"^accepted paid {pid} sequence=9 status=paid$")
            rejected = [line for line in receiver.lines if line.startswith("rejected: ")]
            assert len(rejected) == 3, receiver.lines

        # The reads and the recovery, side by side.
        detail, page, stats, events, recovered, streamed = await asyncio.gather(
            run("GET /api/transaction/{payment_id}", PAYMENT_ID=pid),
            run("GET /api/transactions"),
            run("GET /api/statistics"),
            run("GET /api/events"),
            run("POST /api/webhooks/recover"),
            # From the beginning of time (a position at 1970), up to the first event: its paid one.
            run("GET /api/events/stream", LAST_EVENT_ID="c1.0", MAX_EVENTS="1"),
        )
        (first,) = streamed.answer["events"]
        assert (first["type"], first["transaction_id"]) == ("paid", pid), streamed.stdout
        assert first["id"].startswith("evt_") and first["position"].startswith("c1."), streamed.stdout
        assert detail.answer["data"]["transaction_id"] == pid
        assert isinstance(page.answer["data"]["items"], list)
        assert stats.answer["data"]
        # type=paid: this merchant's only paid event (forged deliveries are no events of paycenter's).
        assert [e["transaction_id"] for e in events.answer["data"]["items"]] == [pid]
        assert recovered.answer["data"]["resent"] == 0

        # A second payment, cancelled.
        second = await run(
            "POST /api/payment/init", WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=webhook_secret, ORDER_ID=f"DOCS-{key}-2"
        )
        pid2 = second.answer["data"]["transaction_id"]
        # The payer-side calls of the old API: a visit, then paying "at Kaspi" (a sandbox payment:
        # the answer links to the page), and the methods to choose from.
        visit, started, methods, active = await asyncio.gather(
            run("POST /api/payment/{payment_id}/track-visit", PAYMENT_ID=pid2),
            run("POST /api/payment/{payment_id}/kaspi", PAYMENT_ID=pid2),
            run("GET /api/payment-methods"),
            run("GET /api/payment-methods/active"),
        )
        assert visit.answer["data"] is None
        assert started.answer["data"]["payment_url"].endswith(f"/pay/{pid2}")
        assert [m["code"] for m in methods.answer["data"]] == [m["code"] for m in active.answer["data"]]
        assert (await run("POST /api/payment/{payment_id}/cancel", PAYMENT_ID=pid2)).answer["data"]
        await receiver.expect(rf"^accepted cancelled {pid2} sequence=1 status=cancelled$")

        # A payment link for 5,000 KZT (its payment made at once), then the list of links.
        link = (await run("POST /api/links")).answer["data"]
        assert (link["kind"], link["amount"], link["status"]) == ("one_off", "5000.00", "pending")
        listed = (await run("GET /api/links")).answer["data"]["items"]
        assert link["id"] in [item["id"] for item in listed]
    finally:
        await receiver.stop()

    missing = set(_operations(spec)) - runner.ran
    assert not missing, f"{key}: samples never run: {sorted(missing)}"


# --- "Test request" in the browser --------------------------------------------------------------------


@pytest.mark.browser
async def test_try_it_in_the_reference_with_a_pasted_token(
    server: Server, api: httpx.AsyncClient, browser: Any
) -> None:
    from playwright.async_api import expect

    windows = Windows(browser, {"viewport": {"width": 1400, "height": 900}}, timeout_ms=30_000)
    try:
        tab = await windows.open()
        page = tab.page
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        await page.goto(f"{server.base_url}/docs#tag/payments/POST/api/payment/init")
        await expect(page.get_by_text("PHP (curl)").first).to_be_visible(timeout=15_000)
        await page.get_by_role("button", name="Test Request").first.click()
        # Scalar 1.76's API key field in its API client (the last one shown: the client is on top).
        await page.locator(f'input[placeholder="{SCALAR_API_KEY_PLACEHOLDER}"]:visible').last.fill(server.token)
        await page.get_by_role("button", name=re.compile(r"^Send")).first.click()
        await expect(page.get_by_text("201 Created").first).to_be_visible(timeout=15_000)
        body = await page.inner_text("body")
        created = re.search(r'"transaction_id": "([0-9A-F]{32})"', body)
        assert created, body[-2000:]
        r = await api.get(f"/api/payment/{created.group(1)}")
        assert r.status_code == 200 and r.json()["data"]["status"] == "pending"
        outside = [u for u in requests if not u.startswith(server.base_url) and not u.startswith("data:")]
        assert outside == [], outside
        assert tab.errors == []
    finally:
        await windows.close()
