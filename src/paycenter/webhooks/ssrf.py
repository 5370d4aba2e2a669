"""Keep webhook requests away from private networks (SSRF guard).

A merchant chooses the webhook URL, so a URL is untrusted input that our server will connect to.
Two checks, both needed:
- before a request, a host that is a literal IP in any notation a resolver accepts (``127.1``,
  ``2130706433``, ``0x7f.1``, ``017700000001``, ``[::ffff:127.0.0.1]``) is checked directly;
- at connect time, the resolver hook checks every address a name resolves to, and the connector
  then connects only to the addresses that passed (no second lookup an attacker could rebind).
Only ``PAYCENTER_WEBHOOK_ALLOWED_NETWORKS`` opens private ranges (local development and tests).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

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


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names by itself, in any notation ``inet_aton`` or IPv6 accepts."""
    host = host.strip("[]")
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


def check_url(url: str, allowed: list[Network]) -> None:
    """Refuse a URL whose scheme is not http(s) or whose host is a blocked literal address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress(f"scheme {parts.scheme!r} is not allowed")
    host = parts.hostname or ""
    if not host:
        raise BlockedAddress("URL has no host")
    ip = literal_ip(host)
    if ip is not None and is_blocked(ip, allowed):
        raise BlockedAddress(f"address {ip} is not allowed")


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
        literal = literal_ip(host)
        if literal is not None:
            if is_blocked(literal, self.allowed):
                raise BlockedAddress(f"address {literal} is not allowed")
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
    result: Any = {"hostname": hostname, "host": host, "port": port, "family": family, "proto": 0, "flags": 0}
    return result  # type: ignore[no-any-return]


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
