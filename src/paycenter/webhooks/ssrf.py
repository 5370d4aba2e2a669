"""Keep webhook requests away from private networks (SSRF guard).

A merchant chooses the webhook URL, so a URL is untrusted input that our server will connect to.
What counts is the address a socket connects to, not the text of the URL: aiohttp's URL library
(yarl) maps a host through IDNA / UTS #46 (``１２７.０.０.１``, ``𝟏𝟐𝟕。0。0。1`` become
``127.0.0.1``), and resolvers accept short, decimal, octal and hex IPv4 forms. So, in layers:
- at connect time (the one that must hold alone), the connector's socket factory judges the
  socket address of every connection it opens, whatever the URL said and whichever path led there
  (literal IP, resolved name; aiohttp skips the resolver for hosts it reads as IP literals);
- the resolver hook refuses a name if any address it resolves to is blocked (a clear message, and
  the connector then connects only to addresses that passed: no second lookup to rebind);
- before a request, and when a merchant gives a webhook URL, the URL is parsed by yarl itself (so
  we cannot disagree with the client) and a host that names a blocked address by itself, in any
  notation, is refused.
Only ``PAYCENTER_WEBHOOK_ALLOWED_NETWORKS`` opens private ranges (local development and tests).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

# A host name as yarl leaves it (lowercase, IDNA-encoded): letters, digits, "-" and "_" in labels.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges that `is_global` misses or that must never be reached whatever the registry says.
_ALWAYS_BLOCKED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",
        "198.18.0.0/15",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(OSError):
    """The target is, or resolves to, an address webhooks may not reach."""


def parse_networks(value: str | Iterable[str]) -> list[Network]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """An IPv4 address hidden in an IPv6 one (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (deprecated) ::a.b.c.d
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def is_blocked(ip: IPAddress, allowed: list[Network]) -> bool:
    if any(ip in net for net in allowed if net.version == ip.version):
        return False
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return is_blocked(inner, allowed)
    if any(ip in net for net in _ALWAYS_BLOCKED if net.version == ip.version):
        return True
    return not ip.is_global


def client_url(url: str | URL) -> URL:
    """The URL exactly as aiohttp will read it (``ClientSession`` builds ``URL(url)``).

    Raises ``ValueError`` for what the client cannot parse (bad port, malformed brackets, a host
    IDNA refuses), so a URL we accept is one the client can send to.
    """
    parsed = url if isinstance(url, URL) else URL(url)
    parsed.port  # noqa: B018 - raises on a port out of range
    return parsed


def client_host(host: str) -> str:
    """A host in the form a lenient client or resolver would end up reading it.

    yarl applies IDNA / UTS #46 (fullwidth digits and dots, ``。``, mathematical digits, ...) but
    keeps percent-escapes and trailing dots, which other URL parsers (WHATWG) decode and resolvers
    may drop: judge the host after all of them, repeated until nothing changes (a few rounds at
    most: percent-escapes nested deeper than that are no URL's host).
    """
    for _ in range(4):
        before = host
        host = unquote(host.strip("[]"))
        try:
            host = URL.build(scheme="http", host=host).raw_host or host
        except ValueError:
            pass  # a host yarl refuses is judged as it stands
        host = host.rstrip(".")
        if host == before:
            break
    return host


def _notation_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    # Resolvers accept short, decimal, octal and hex IPv4 forms; so must the check.
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names by itself, in any notation ``inet_aton`` or IPv6 accepts, before or
    after the mappings of ``client_host``."""
    ip = _notation_ip(host.strip("[]"))
    return ip if ip is not None else _notation_ip(client_host(host))


def check_url(url: str | URL, allowed: list[Network]) -> URL:
    """The URL as the client reads it; refused (``BlockedAddress``) if the client cannot parse it,
    its scheme is not http(s), or its host is a blocked address by itself in any notation."""
    try:
        parsed = client_url(url)
    except ValueError as exc:
        raise BlockedAddress(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise BlockedAddress(f"scheme {parsed.scheme!r} is not allowed")
    host = parsed.raw_host or ""
    if not host:
        raise BlockedAddress("URL has no host")
    ip = literal_ip(host)
    if ip is not None and is_blocked(ip, allowed):
        raise BlockedAddress(f"address {ip} is not allowed")
    return parsed


def readable_webhook_url(url: str | None, *, field: str = "webhook_url") -> str | None:
    """Refuse (``ValueError``) a webhook URL the HTTP client could not even parse."""
    if url is not None:
        try:
            client_url(url)
        except ValueError as exc:
            raise ValueError(f"{field} is not a valid URL: {exc}") from None
    return url


def check_webhook_url(url: str | None, allowed: list[Network], *, field: str = "webhook_url") -> str | None:
    """A webhook URL a merchant or an operator gives, refused (``ValueError``, for the field's error)
    if it can never be delivered or names a blocked address by itself. Returns the text as given."""
    if url is None:
        return None
    try:
        host = check_url(url, allowed).raw_host or ""
    except BlockedAddress as exc:
        raise ValueError(f"{field} is refused: {exc} (webhooks may not reach private networks)") from None
    ip = literal_ip(host)
    if ip is not None and not any(ip in network for network in allowed):
        # A public address too: the published contract takes host names only (the document's
        # pattern cannot tell public from private in every notation), and a deployment that
        # delivers to an address lists it in PAYCENTER_WEBHOOK_ALLOWED_NETWORKS.
        raise ValueError(
            f"{field} must name its host: an IP address ({ip}) is taken only inside PAYCENTER_WEBHOOK_ALLOWED_NETWORKS"
        )
    if ip is None and not _HOST_NAME.fullmatch(host):
        # e.g. percent-escapes, or what IDNA made of a bracketed host it could not map: no
        # resolver can find such a host, so no webhook could ever be delivered to it.
        raise ValueError(f"{field} has no usable host: {host!r} is neither a host name nor an IP address")
    return url


class ConnectGuard:
    """The webhook connector's socket factory: judges the address each socket is about to connect to.

    aiohappyeyeballs calls it with the addrinfo whose sockaddr it then hands to ``connect()``, for
    every connection the connector opens, literal IPs included: this check holds even if every
    check on the URL's text was fooled. Refusals are also noted for the sender (``watch``), since
    aiohttp folds several failed addresses into one plain ``OSError``.
    """

    def __init__(self, allowed: list[Network]) -> None:
        self.allowed = allowed
        self._refusals: ContextVar[list[BlockedAddress] | None] = ContextVar("ssrf_refusals", default=None)

    def __call__(self, addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        ip = _socket_ip(family, sockaddr)
        if ip is None or is_blocked(ip, self.allowed):
            shown = str(ip) if ip is not None else repr(sockaddr)
            refused = BlockedAddress(f"address {shown} is not allowed (refused at connect)")
            noted = self._refusals.get()
            if noted is not None:
                noted.append(refused)
            raise refused
        return socket.socket(family=family, type=type_, proto=proto)

    @contextmanager
    def watch(self) -> Iterator[list[BlockedAddress]]:
        """The refusals made while the block runs (in this task and the tasks it starts)."""
        noted: list[BlockedAddress] = []
        token = self._refusals.set(noted)
        try:
            yield noted
        finally:
            self._refusals.reset(token)


def _socket_ip(family: int, sockaddr: Any) -> IPAddress | None:
    """The address a sockaddr names, if it is a plain numeric one of its family.

    Anything else (a name, a legacy IPv4 form, another family) is refused rather than guessed at:
    ``loop.sock_connect`` would resolve a name itself, out of our sight.
    """
    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(sockaddr, tuple) or not sockaddr:
        return None
    host = sockaddr[0]
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version != (4 if family == socket.AF_INET else 6):
        return None
    return ip


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses the name if any address is blocked.

    Any blocked address refuses the whole name: a name that resolves to one public and one private
    address is an attack, not a configuration to work around.
    """

    def __init__(self, allowed: list[Network], inner: AbstractResolver | None = None) -> None:
        self.allowed = allowed
        self.inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # Lenient to refuse (any reading of the host that names a blocked address), strict to
        # resolve: only the notations a system resolver reads as addresses skip ``inner``.
        literal = literal_ip(host)
        if literal is not None and is_blocked(literal, self.allowed):
            raise BlockedAddress(f"address {literal} is not allowed")
        literal = _notation_ip(host.strip("[]"))
        if literal is not None:
            return [_result(host, str(literal), port)]
        results = await self.inner.resolve(host, port, family)
        for result in results:
            ip = ipaddress.ip_address(result["host"].split("%", 1)[0])
            if is_blocked(ip, self.allowed):
                raise BlockedAddress(f"{host} resolves to {ip}, which is not allowed")
        return results

    async def close(self) -> None:
        await self.inner.close()


def _result(hostname: str, host: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return {"hostname": hostname, "host": host, "port": port, "family": family, "proto": 0, "flags": 0}


class StaticResolver(AbstractResolver):
    """A resolver from a fixed table, for tests: ``{"shop.test": "10.0.0.1"}``."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise OSError(f"cannot resolve {host}")
        return [_result(host, self.table[host], port)]

    async def close(self) -> None:
        return None
