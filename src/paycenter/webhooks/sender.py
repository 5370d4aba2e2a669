"""One HTTP try of a webhook, with its outcome classified for the log.

aiohttp does the sending (on this machine about 20x httpx's rate against one loopback sink). The
SSRF guard (ssrf.py) sits in its connector: the socket factory judges every address a socket
connects to, the resolver hook every name; redirects are never followed; the response body is read
up to 16 KiB and the rest dropped. Each endpoint (URL) gets its own small concurrency bound, so one
endpoint that hangs occupies only its own slots and nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from paycenter.webhooks.models import ErrorClass
from paycenter.webhooks.ssrf import BlockedAddress, ConnectGuard, GuardedResolver, Network, check_url, literal_ip

MAX_RESPONSE_BODY = 16 * 1024
# Less than the 5 s after which uvicorn, Apache and Node.js close an idle connection (aiohttp: 15).
KEEPALIVE_SECONDS = 4.0


@dataclass
class SendResult:
    started_at: datetime
    duration_ms: int
    status: int | None = None
    response_headers: dict[str, str] | None = None
    response_body: str | None = None
    error_class: ErrorClass | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


def classify(exc: BaseException) -> tuple[ErrorClass, str]:
    """Name a failure the way an operator reads the log: where did it break?"""
    cause = getattr(exc, "os_error", None)
    if isinstance(exc, BlockedAddress) or isinstance(cause, BlockedAddress):
        return ErrorClass.BLOCKED, str(cause if isinstance(cause, BlockedAddress) else exc)
    if isinstance(exc, aiohttp.InvalidURL):
        return ErrorClass.BLOCKED, f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorClass.DNS, f"name resolution failed: {cause or exc}"
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return ErrorClass.TLS, str(exc)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return ErrorClass.TIMEOUT, "timed out" + (f": {exc}" if str(exc) else "")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ErrorClass.CONNECT, f"{type(exc).__name__}: {exc}"[:500]
    return ErrorClass.CONNECT, f"{type(exc).__name__}: {exc}"[:500]


class Sender:
    def __init__(
        self,
        *,
        allowed_networks: list[Network],
        resolver: AbstractResolver | None = None,
        connect_timeout: float = 5.0,
        total_timeout: float = 15.0,
        per_endpoint: int = 8,
    ) -> None:
        self.allowed = allowed_networks
        self.resolver: AbstractResolver = GuardedResolver(allowed_networks, inner=resolver)
        self.guard = ConnectGuard(allowed_networks)
        self.timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self.per_endpoint = per_endpoint
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self.per_endpoint))
        self._session: aiohttp.ClientSession | None = None
        self._verdicts: dict[str, str] = {}

    async def start(self) -> None:
        if self._session is None:
            # No global or per-host limit in the pool: waiting for a pooled connection would count
            # against the connect timeout. Our per-endpoint semaphores bound concurrency instead.
            # Idle connections go after KEEPALIVE_SECONDS: before a receiver on Apache, Node.js or
            # uvicorn (5 s) closes them, so a delivery never goes out on a connection being closed
            # (a reset, and the delivery's retry minutes later).
            connector = aiohttp.TCPConnector(
                resolver=self.resolver,
                socket_factory=self.guard,
                limit=0,
                limit_per_host=0,
                ttl_dns_cache=10,
                keepalive_timeout=KEEPALIVE_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=True, trust_env=False
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _check(self, url: str) -> None:
        """check_url, remembered per URL: the same few endpoints get most deliveries."""
        verdict = self._verdicts.get(url)
        if verdict is None:
            try:
                check_url(url, self.allowed)
                verdict = ""
            except BlockedAddress as exc:
                verdict = str(exc)
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            self._verdicts[url] = verdict
        if verdict:
            raise BlockedAddress(verdict)

    def endpoint_busy(self, url: str) -> bool:
        slot = self._slots.get(url)
        return slot is not None and slot.locked()

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        await self.start()
        assert self._session is not None
        async with self._slots[url]:
            started = datetime.now(UTC)
            t0 = time.perf_counter()
            result = await self._send(url, headers, body, started)
            result.duration_ms = int((time.perf_counter() - t0) * 1000)
            return result

    async def _send(self, url: str, headers: dict[str, str], body: bytes, started: datetime) -> SendResult:
        assert self._session is not None
        refused: list[BlockedAddress] = []
        try:
            self._check(url)
            with self.guard.watch() as refused:
                response = self._session.post(url, data=body, headers=headers, allow_redirects=False)
                async with response as resp:
                    return await self._read(url, resp, started)
        except Exception as exc:  # every failure is an outcome to record, never a crash
            # No connection could be made and the guard refused an address on the way: that is the
            # reason, whatever other addresses did (aiohttp keeps only the last address's error).
            refusal = refused[0] if refused and isinstance(exc, aiohttp.ClientConnectorError) else None
            error_class, message = classify(refusal or exc)
            return SendResult(started_at=started, duration_ms=0, error_class=error_class, error=message[:500])

    async def _read(self, url: str, resp: aiohttp.ClientResponse, started: datetime) -> SendResult:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(4096):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_RESPONSE_BODY:
                break
        text = b"".join(chunks)[:MAX_RESPONSE_BODY].decode("utf-8", "replace")
        result = SendResult(
            started_at=started,
            duration_ms=0,
            status=resp.status,
            response_headers={k: v for k, v in resp.headers.items()},
            response_body=text,
        )
        if not result.ok:
            result.error_class, result.error = await self._status_error(url, resp)
            result.retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        return result

    async def _status_error(self, url: str, resp: aiohttp.ClientResponse) -> tuple[ErrorClass, str]:
        if not 300 <= resp.status < 400:
            return ErrorClass.HTTP_STATUS, f"HTTP {resp.status}"
        location = resp.headers.get("Location", "")
        try:
            # Read as the client would read it had it followed: yarl's join and host mapping.
            target = check_url(URL(url).join(URL(location)), self.allowed)
            host = target.raw_host
            if host and literal_ip(host) is None:
                await self.resolver.resolve(host, 0)
        except BlockedAddress as exc:
            return ErrorClass.BLOCKED, f"redirect to a blocked address ({exc}); redirects are not followed"
        except (OSError, ValueError):
            pass  # an unresolvable or unreadable redirect target is just a redirect
        return ErrorClass.HTTP_STATUS, f"HTTP {resp.status} redirect to {location[:200]}; redirects are not followed"
