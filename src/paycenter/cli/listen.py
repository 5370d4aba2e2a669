"""``paycenter listen`` and ``paycenter trigger``: a merchant's webhooks on a developer's machine.

``listen`` reads the events stream of a (remote) paycenter with the merchant's API token
(``GET /api/events/stream``, server-sent events) and POSTs each event to a local URL with the
exact body and headers a webhook delivery of it carries, so the receiver's signature checks run
unchanged; one line per event with the local answer. On a lost connection it reconnects with
backoff from the last position the stream gave (``Last-Event-ID``): no event is lost or repeated
across a server restart. Ctrl-C (or SIGTERM) stops it with exit code 0 and a last line.

When the local URL cannot be reached (connection refused or reset, no answer within
``FORWARD_TIMEOUT``: the developer's app is restarting or not started yet), the same event is tried
again after 1, 2, 4, 8, 8, ... s for up to ``--retry-for`` seconds (default 60; 0: no retries),
one line per failed try; then a line says it was not delivered and listen goes on with the next.
The events after it wait meanwhile, so a receiver that comes back gets them in order. Any HTTP
status is the receiver's own answer: printed, never retried. (A timed-out try may have been
processed: a retry then repeats it, with the same ``webhook-id``, as a real redelivery would.)

``trigger`` makes an event on demand: a sandbox payment created through the API and then paid (or
cancelled, ...) as the payer would on its payment page.

Only aiohttp (a runtime dependency) and the standard library: the commands talk HTTP to a server
and need none of paycenter's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import typer

app = typer.Typer()

TOKEN_ENV = "PAYCENTER_API_TOKEN"
API_URL_ENV = "PAYCENTER_API_URL"
DEFAULT_API_URL = "http://127.0.0.1:8000"
# The server sends a heartbeat every 15 s: three missed ones mean the connection is dead.
READ_TIMEOUT = 45.0
FORWARD_TIMEOUT = 30.0
MAX_BACKOFF = 10.0
RETRY_FOR = 60.0  # --retry-for's default
FIRST_RETRY = 1.0
MAX_RETRY_WAIT = 8.0


def _out(line: str) -> None:
    typer.echo(line)
    sys.stdout.flush()  # one line per event, as it happens, even through a pipe


def _token(token: str | None) -> str:
    token = token or os.environ.get(TOKEN_ENV, "")
    if not token:
        typer.echo(f"error: give the merchant's API token with --token or {TOKEN_ENV}", err=True)
        raise typer.Exit(2)
    return token


def _http_url(value: str, option: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        typer.echo(f"error: {option} must be an http(s) URL, got {value!r}", err=True)
        raise typer.Exit(2)
    return value.rstrip("/") if option == "--api-url" else value


# --- server-sent events ----------------------------------------------------------------------


@dataclass
class Message:
    event: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None  # the position after this message, when it carries one


async def sse_messages(content: aiohttp.StreamReader) -> AsyncIterator[Message]:
    """The messages of a server-sent events stream (the WHATWG parsing rules we need: ``event``,
    ``data``, ``id``; comments skipped), any line length."""
    buffer = b""
    message = Message()
    async for chunk in content.iter_any():
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut].rstrip(b"\r").decode(), buffer[cut + 1 :]
            if not line:
                if message.data or message.id is not None:
                    yield message
                message = Message()
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                message.data.append(value)
            elif name == "event":
                message.event = value
            elif name == "id" and "\x00" not in value:
                message.id = value


# --- listen ------------------------------------------------------------------------------------


class Fatal(Exception):
    """The server refused us for good (bad token, bad option): retrying will not help."""


@dataclass
class Listener:
    api_url: str
    token: str
    forward_to: str
    events: str | None
    position: str | None = None
    retry_for: float = RETRY_FOR
    forwarded: int = 0  # events the local URL answered (with any status)
    undelivered: int = 0  # events it never answered, retries exhausted or stopped meanwhile
    connected_once: bool = False
    live: bool = False  # the current connection was accepted

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=READ_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as stream_http, aiohttp.ClientSession() as forward_http:
            while not stop.is_set():
                self.live = False
                try:
                    await self._stream(stream_http, forward_http)
                    problem = "the server closed the stream"
                except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
                if self.live:
                    backoff = 0.5  # it was up: try again soon (a restart takes a moment)
                _out(f"{_now()}  connection lost ({problem}); reconnecting in {backoff:.1f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _stream(self, http: aiohttp.ClientSession, forward: aiohttp.ClientSession) -> None:
        headers = {"X-API-Token": self.token, "Accept": "text/event-stream"}
        if self.position:
            headers["Last-Event-ID"] = self.position
        params = {"types": self.events} if self.events else {}
        async with http.get(f"{self.api_url}/api/events/stream", headers=headers, params=params) as response:
            if response.status != 200:
                refusal = await _error_message(response)
                if response.status in (400, 401, 403, 404, 422):
                    raise Fatal(f"HTTP {response.status}: {refusal}")
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status, message=refusal)
            _out(
                f"{_now()}  {'reconnected, resuming' if self.connected_once else 'ready'}: "
                f"forwarding {self.events or 'all'} events to {self.forward_to}"
            )
            self.connected_once = self.live = True
            # One message at a time, so events reach the local URL in the stream's order: while an
            # event's retries wait (up to --retry-for, longer than READ_TIMEOUT), this loop reads
            # nothing. The connection does not go idle meanwhile: aiohttp's protocol goes on
            # receiving into the response's buffer (heartbeats included, which is what its
            # sock_read timeout watches; a full buffer pauses the socket and that timeout with
            # it). If the connection dies or times out anyway, the next read raises, even with
            # messages still buffered, and we reconnect from ``position``: it moves only once a
            # message is handled (forwarded, or given up on), so the server resends exactly the
            # messages after it, never the event already forwarded, never skipping one.
            async for message in sse_messages(response.content):
                if message.event == "webhook" and message.data:
                    await self._forward(forward, json.loads("\n".join(message.data)))
                if message.id is not None:
                    self.position = message.id  # after the event is handled: resumed after it

    async def _forward(self, http: aiohttp.ClientSession, event: dict[str, Any]) -> None:
        what = f"{event.get('type', '?'):<15} {event.get('transaction_id', '?')}  {event.get('id', '')}"
        if event.get("problem"):
            _out(f"{_now()}  {what}  not forwarded: {event['problem']}")
            return
        first = time.monotonic()
        deadline = first + self.retry_for
        wait = FIRST_RETRY
        tries = 0
        while True:
            started = time.monotonic()
            tries += 1
            try:
                async with http.post(
                    self.forward_to,
                    data=str(event["body"]).encode(),
                    headers=event["headers"],
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
                ) as answer:
                    await answer.read()
                    status = f"{answer.status} {answer.reason or ''}".strip()
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                failure = f"failed ({type(exc).__name__}: {exc})".replace(": )", ")")
            else:
                elapsed = (time.monotonic() - started) * 1000
                self.forwarded += 1
                _out(f"{_now()}  {what}  -> {status} in {elapsed:.0f} ms")
                return
            # The last wait is cut to the deadline: the last try is at --retry-for, not after it.
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                self.undelivered += 1
                spent = time.monotonic() - first
                _out(f"{_now()}  {what}  -> NOT DELIVERED: {failure} after {tries} tries in {spent:.0f} s; going on")
                return
            _out(f"{_now()}  {what}  -> {failure}; try {tries + 1} in {wait:.1f} s")
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:  # Ctrl-C: stop now, and say what was left behind
                self.undelivered += 1
                _out(f"{_now()}  {what}  -> NOT DELIVERED: stopped before try {tries + 1}")
                raise
            wait = min(wait * 2, MAX_RETRY_WAIT)


async def _error_message(response: aiohttp.ClientResponse) -> str:
    text = await response.text(errors="replace")
    try:
        return str(json.loads(text)["message"])
    except (ValueError, KeyError, TypeError):
        return text[:200]


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


async def _listen(listener: Listener) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(listener.run(stop))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if running.done():
        stopping.cancel()
        try:
            running.result()
        except Fatal as exc:
            typer.echo(f"error: {exc}", err=True)
            code = 1
    else:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    undelivered = f", {listener.undelivered} not delivered" if listener.undelivered else ""
    _out(f"{_now()}  stopped: {listener.forwarded} events forwarded{undelivered}")
    return code


@app.command()
def listen(
    forward_to: Annotated[
        str,
        typer.Option(
            "--forward-to",
            help="Your local webhook endpoint, e.g. http://localhost:3000/webhook (meant for this machine).",
        ),
    ],
    api_url: Annotated[
        str, typer.Option(envvar=API_URL_ENV, help="The paycenter to listen to, e.g. https://pay.example.kz.")
    ] = DEFAULT_API_URL,
    token: Annotated[
        str | None, typer.Option(help=f"The merchant's API token (default: ${TOKEN_ENV}).", show_default=False)
    ] = None,
    events: Annotated[
        str | None, typer.Option(help="Only these event types, comma-separated, e.g. paid,refunded.")
    ] = None,
    retry_for: Annotated[
        float,
        typer.Option(
            min=0,
            max=3600,
            help="When your URL cannot be reached (refused, reset, timed out), try the event again after "
            "1, 2, 4, 8, 8... s for up to this many seconds, later events waiting in order; 0: no retries. "
            "An HTTP status is never retried.",
        ),
    ] = RETRY_FOR,
) -> None:
    """Forward your webhook events, as they happen, to a URL on this machine.

    Each event is POSTed with the exact body and headers a real delivery carries (both
    signatures included), and one line is printed with your endpoint's answer. An endpoint that
    cannot be reached (not started yet, restarting) gets the event again, in order, for up to
    --retry-for seconds. The connection is resumed after a drop without losing or repeating
    events. Ctrl-C stops it.
    """
    listener = Listener(
        api_url=_http_url(api_url, "--api-url"),
        token=_token(token),
        forward_to=_http_url(forward_to, "--forward-to"),
        events=events,
        retry_for=retry_for,
    )
    raise typer.Exit(asyncio.run(_listen(listener)))


# --- trigger ---------------------------------------------------------------------------------

TRIGGERS = ("paid", "partially_paid", "cancelled", "refunded")


async def _trigger(api_url: str, token: str, event: str, amount: int, webhook_secret: str | None) -> str:
    headers = {"X-API-Token": token}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            key = {"Idempotency-Key": str(uuid.uuid4())} if method == "POST" else {}
            async with http.request(method, f"{api_url}{path}", headers={**headers, **key}, **kwargs) as r:
                if r.status >= 300:
                    raise Fatal(f"{method} {path}: HTTP {r.status}: {await _error_message(r)}")
                data: dict[str, Any] = (await r.json())["data"]
                return data

        created = await call(
            "POST",
            "/api/payment/init",
            json={
                "amount": amount,
                "currency": "KZT",
                "description": f"paycenter trigger {event}",
                "metadata": {"trigger": event},
                **({"webhook_secret": webhook_secret} if webhook_secret else {}),
            },
        )
        payment_id = str(created["transaction_id"])
        if event == "cancelled":
            await call("POST", f"/api/payment/{payment_id}/cancel")
            return payment_id
        form = {"action": "pay"}
        if event == "partially_paid":
            form["amount"] = str(amount // 2)
        # The sandbox's "pay" button on the payment page (a form POST answered with a redirect).
        async with http.post(f"{api_url}/pay/{payment_id}/sandbox", data=form, allow_redirects=False) as r:
            location = r.headers.get("Location", "")
            if r.status != 303 or "error=" in location:
                reason = location.partition("error=")[2] or f"HTTP {r.status}"
                raise Fatal(f"the sandbox did not take the payment ({reason}): is the sandbox its provider?")
        if event == "refunded":
            await call("POST", f"/api/payment/{payment_id}/refund", json={"amount": amount})
        return payment_id


@app.command()
def trigger(
    event: Annotated[str, typer.Argument(help=f"The event to produce: {', '.join(TRIGGERS)}.")] = "paid",
    api_url: Annotated[str, typer.Option(envvar=API_URL_ENV, help="The paycenter to use.")] = DEFAULT_API_URL,
    token: Annotated[
        str | None, typer.Option(help=f"The merchant's API token (default: ${TOKEN_ENV}).", show_default=False)
    ] = None,
    amount: Annotated[int, typer.Option(min=2, max=10_000_000, help="Amount in KZT.")] = 500,
    webhook_secret: Annotated[
        str | None, typer.Option(help="The payment's webhook_secret: its events then carry X-Webhook-Signature.")
    ] = None,
) -> None:
    """Create a sandbox payment and pay it (or cancel, refund, pay half of it): an event on demand.

    Prints the payment's transaction id.
    """
    if event not in TRIGGERS:
        typer.echo(f"error: EVENT must be one of {', '.join(TRIGGERS)}", err=True)
        raise typer.Exit(2)
    try:
        payment_id = asyncio.run(
            _trigger(_http_url(api_url, "--api-url"), _token(token), event, amount, webhook_secret)
        )
    except Fatal as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        typer.echo(f"error: cannot reach {api_url}: {exc}", err=True)
        raise typer.Exit(1) from None
    _out(payment_id)
