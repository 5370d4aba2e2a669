"""The SSRF guard: private targets are refused in every notation, before any packet leaves."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest

from paycenter.webhooks.sender import Sender
from paycenter.webhooks.ssrf import StaticResolver, is_blocked, literal_ip, parse_networks
from sink import Sink


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("example.com", None),
        ("deadbeef.example", None),
    ],
)
def test_literal_ip_in_any_notation(host, ip):
    assert literal_ip(host) == (ipaddress.ip_address(ip) if ip else None)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "255.255.255.255", "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::1", "::127.0.0.1",
    ],
)  # fmt: skip
def test_private_addresses_are_blocked(address):
    assert is_blocked(ipaddress.ip_address(address), [])


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert not is_blocked(ipaddress.ip_address(address), [])


def test_allowed_networks_open_only_themselves():
    allowed = parse_networks("127.0.0.0/8,::1/128")
    assert not is_blocked(ipaddress.ip_address("127.0.0.5"), allowed)
    assert not is_blocked(ipaddress.ip_address("::1"), allowed)
    assert is_blocked(ipaddress.ip_address("10.0.0.1"), allowed)


@pytest.fixture
async def canaries() -> AsyncIterator[tuple[Sink, Sink]]:
    """Listeners on loopback that must never hear from a guarded sender."""
    v4 = await Sink(host="127.0.0.1").start()
    v6 = await Sink(host="::1", port=v4.port).start()
    yield v4, v6
    await v4.stop()
    await v6.stop()


async def test_bypass_corpus_is_blocked_and_nothing_is_sent(canaries):
    v4, v6 = canaries
    port = v4.port
    # The only reachable endpoint is 127.0.0.2 (allowed); it redirects to the canary on 127.0.0.1.
    redirector = await Sink(host="127.0.0.2").start()
    try:
        redirect = redirector.on("/go", 302, headers={"Location": f"http://127.0.0.1:{port}/stolen"})
        corpus = [
            f"http://127.0.0.1:{port}/",
            f"http://0.0.0.0:{port}/",
            f"http://2130706433:{port}/",
            f"http://0x7f.1:{port}/",
            f"http://017700000001:{port}/",
            f"http://127.1:{port}/",
            f"http://[::1]:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            "http://169.254.169.254/latest/meta-data/",
            f"http://internal.shop.test:{port}/",  # the injected resolver maps it to 10.0.0.1
            f"http://loopback.shop.test:{port}/",  # ... and this one to 127.0.0.1
            "ftp://example.com/",
            redirect,
        ]
        resolver = StaticResolver({"internal.shop.test": "10.0.0.1", "loopback.shop.test": "127.0.0.1"})
        sender = Sender(allowed_networks=parse_networks("127.0.0.2/32"), resolver=resolver, total_timeout=3)
        try:
            results = {url: await sender.send(url, {"Content-Type": "application/json"}, b"{}") for url in corpus}
        finally:
            await sender.close()
        for url, result in results.items():
            assert result.error_class == "blocked", (url, result)
            assert not result.ok
        assert len(redirector.at("/go")) == 1  # the allowed endpoint was reached, its redirect was not
        assert v4.received == [] and v6.received == []  # not one request reached loopback
    finally:
        await redirector.stop()


async def test_allowed_loopback_is_reachable(canaries):
    v4, _ = canaries
    sender = Sender(allowed_networks=parse_networks("127.0.0.0/8"))
    try:
        result = await sender.send(v4.url("/ok"), {"Content-Type": "application/json"}, b"{}")
    finally:
        await sender.close()
    assert result.ok and result.status == 200
    assert len(v4.received) == 1


async def test_unresolvable_name_is_a_dns_error():
    sender = Sender(allowed_networks=[], resolver=StaticResolver({}), total_timeout=3)
    try:
        result = await sender.send("http://nowhere.shop.test/", {}, b"{}")
    finally:
        await sender.close()
    assert result.error_class == "dns"


async def test_error_classes_and_the_response_cap(canaries):
    v4, _ = canaries
    v4.bodies["/big"] = "x" * 100_000
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    sender = Sender(allowed_networks=parse_networks("127.0.0.0/8"), total_timeout=0.5)
    try:
        big = await sender.send(v4.url("/big"), {}, b"{}")
        refused = await sender.send(f"http://127.0.0.1:{closed_port}/", {}, b"{}")
        slow = await sender.send(v4.url("/hang"), {}, b"{}")
    finally:
        await sender.close()
        v4.release_hang.set()
    assert big.ok and len(big.response_body) == 16 * 1024  # stored capped, the rest dropped
    assert (refused.error_class, refused.status) == ("connect", None)
    assert slow.error_class == "timeout"
