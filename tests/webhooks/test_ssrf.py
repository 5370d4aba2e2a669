"""The SSRF guard: private targets are refused in every notation, before any packet leaves."""

from __future__ import annotations

import ipaddress
import socket
import sys
import unicodedata
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import quote

import idna
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from yarl import URL

from kit.api import create_payment, make_merchant, sandbox
from kit.db import row_counts
from kit.sink import Sink, eventually
from paycenter.config import Settings
from paycenter.payments.models import Payment
from paycenter.webhooks.models import Delivery, DeliveryAttempt
from paycenter.webhooks.sender import Sender
from paycenter.webhooks.ssrf import StaticResolver, is_blocked, literal_ip, parse_networks
from paycenter.worker import Worker


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


# --- notations the HTTP client maps onto an address (issue 11, defect 1) -----------------------
# yarl, which aiohttp uses, maps a host through IDNA / UTS #46 before anything else sees it:
# ``http://１２７.０.０.１/`` is a request to 127.0.0.1, and aiohttp then skips the resolver hook for
# what it reads as an IP literal. The tests below generate the class, not a few examples: any
# character that UTS #46 maps onto a digit, a hex letter, the ``x`` of ``0x`` or a dot may stand
# for it, in any IPv4 notation a resolver accepts or any IPv6 spelling.

LOOPBACK = ["127.0.0.1", "127.0.0.2", "0.0.0.0", "::1", "::ffff:127.0.0.1"]
# Never sent to (a send test only ever targets loopback): judged at init and by the pre-check.
PRIVATE = ["10.0.0.1", "169.254.169.254", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fe80::1", "fd00::1"]


def _uts46_forms() -> dict[str, list[str]]:
    """Every non-ASCII character that UTS #46 maps onto one character of an address: fullwidth,
    superscript, subscript, circled, mathematical bold/sans/monospace/double-struck, segmented
    digits, ideographic full stops..."""
    wanted = set("0123456789abcdefx.:")
    # The full stops UTS #46 treats as label separators (NFKC does not map U+3002 to ".").
    forms: dict[str, list[str]] = defaultdict(list, {".": ["\u3002", "\uff0e", "\uff61"]})
    for cp in range(0x80, min(sys.maxunicode, 0x2FFFF) + 1):
        ch = chr(cp)
        if unicodedata.normalize("NFKC", ch).lower() not in wanted:
            continue  # a fast filter; UTS #46 decides below
        try:
            mapped = idna.uts46_remap(ch, std3_rules=False, transitional=False)
        except idna.IDNAError:
            continue
        if mapped in wanted and mapped != ".":
            forms[mapped].append(ch)
    return dict(forms)


def _kept(forms: dict[str, list[str]], maps) -> dict[str, list[str]]:
    return {a: kept for a, chars in forms.items() if (kept := [ch for ch in chars if maps(ch, a)])}


def _maps_in_a_name(ch: str, a: str) -> bool:
    try:
        return URL(f"http://1{ch}1.b/").raw_host == f"1{a}1.b"
    except ValueError:
        return False


def _maps_in_brackets(ch: str, a: str) -> bool:
    # yarl reads a bracketed host with another mapping (Python's IDNA 2003 codec): fewer characters.
    if a == "x":
        return False  # no hex prefix in IPv6
    if a == ":":
        probe, expected = f"[1{ch}{ch}1]", "1::1"
    elif a == ".":
        probe, expected = f"[::ffff:1{ch}2{ch}3{ch}4]", "::ffff:102:304"
    else:
        probe, expected = f"[::{ch}]", f"::{a}"
    try:
        return URL(f"http://{probe}/").raw_host == expected
    except ValueError:
        return False


_ALL_FORMS = _uts46_forms()
# What the HTTP client (yarl) really maps, in a host name and inside IPv6 brackets.
FORMS = _kept(_ALL_FORMS, _maps_in_a_name)
FORMS6 = _kept(_ALL_FORMS, _maps_in_brackets)


def test_the_unicode_table_covers_several_scripts_and_separators():
    assert len(FORMS["."]) >= 3 and all(len(FORMS[d]) >= 8 for d in "0123456789")
    for ch in "１𝟏𝟙𝟷①¹₁🯱":  # fullwidth, math bold/double-struck/monospace, circled, super/subscript, segmented
        assert ch in FORMS["1"], ch
    assert "ｘ" in FORMS["x"] and "Ｆ" in FORMS["f"] and "\u3002" in FORMS["."]


def _ipv4_parts(address: str, parts: int) -> list[int]:
    """``127.0.0.1`` as inet_aton's 1, 2, 3 or 4 parts: the last part holds the remaining bytes."""
    octets = ipaddress.IPv4Address(address).packed
    head = list(octets[: parts - 1])
    return [*head, int.from_bytes(octets[parts - 1 :], "big")]


@st.composite
def _number(draw: st.DrawFn, value: int) -> str:
    style = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
    if style == "dec" or (style == "oct" and value == 0):
        return str(value)
    if style == "oct":
        return "0" + format(value, "o")
    text = "0x" + format(value, "x")
    return text.upper() if style == "HEX" else text


@st.composite
def _spelled(draw: st.DrawFn, text: str, table: dict[str, list[str]]) -> str:
    """``text`` with some characters swapped for Unicode forms the client maps back to them."""
    out = []
    for ch in text:
        forms = table.get(ch.lower(), [])
        if forms and draw(st.booleans()):
            out.append(draw(st.sampled_from(forms)))
        else:
            out.append(ch)
    return "".join(out)


@st.composite
def ipv4_host(draw: st.DrawFn, address: str) -> str:
    parts = draw(st.sampled_from([4, 4, 3, 2, 1]))
    text = ".".join([draw(_number(v)) for v in _ipv4_parts(address, parts)])
    host = draw(_spelled(text, FORMS))
    if draw(st.integers(0, 4)) == 0:
        host += draw(st.sampled_from([".", *FORMS["."]]))  # a trailing dot: a resolver may drop it
    return host


@st.composite
def ipv6_host(draw: st.DrawFn, address: str) -> str:
    ip = ipaddress.IPv6Address(address)
    spellings = [ip.compressed, ip.exploded, ":".join(f"{int(h, 16):x}" for h in ip.exploded.split(":"))]
    if ip.ipv4_mapped is not None:
        spellings.append(f"::ffff:{ip.ipv4_mapped}")
    text = draw(st.sampled_from(spellings))
    text = text.upper() if draw(st.booleans()) else text
    return "[" + draw(_spelled(text, FORMS6)) + "]"


@st.composite
def _percent_encoded(draw: st.DrawFn, host: str) -> str:
    """Some characters of a host percent-encoded (as UTF-8): WHATWG URL parsers decode them."""
    if host.startswith("[") or draw(st.integers(0, 3)) > 0:
        return host
    return "".join(quote(ch, safe="") if ch != "." and draw(st.booleans()) else ch for ch in host) or host


@st.composite
def hostile_host(draw: st.DrawFn, addresses: list[str]) -> str:
    """A host naming one of ``addresses`` in a notation the HTTP client or a resolver maps onto it."""
    address = draw(st.sampled_from(addresses))
    if ":" in address:
        return draw(ipv6_host(address))
    return draw(_percent_encoded(draw(ipv4_host(address))))


# Fixed examples of the same class, one per kind, for the tests that need a database and a worker.
CORPUS = [
    "１２７.０.０.１",  # fullwidth digits (the example)
    "１２７．０．０．１",  # ... and fullwidth full stops
    "127。0。0。1",  # ideographic full stop
    "127｡0｡0｡1",  # halfwidth ideographic full stop
    "𝟏𝟐𝟕.𝟎.𝟎.𝟏",  # mathematical bold digits
    "𝟷𝟸𝟽.𝟶.𝟶.𝟷",  # mathematical monospace digits
    "①②⑦｡⓪｡⓪｡①",  # circled digits
    "¹²⁷.⁰.⁰.¹",  # superscript digits
    "🯱🯲🯷.🯰.🯰.🯱",  # segmented digits
    "１２７.1",  # short form, mixed scripts
    "０x７f.1",  # hex, fullwidth
    "０ｘ７Ｆ０００００１",  # one hex number, fullwidth
    "２１３０７０６４３３",  # one decimal number, fullwidth
    "０１７７.０.０.１",  # octal, fullwidth
    "%31%32%37.0.0.1",  # percent-encoded
    "%EF%BC%91%EF%BC%92%EF%BC%97.0.0.1",  # percent-encoded fullwidth
    "127.0.0.1.",  # trailing dot
    "１２７.０.０.１。",  # trailing ideographic full stop
    "０.０.０.０",  # "this host"
    "[::１]",  # fullwidth inside IPv6 brackets
    "[０:０:０:０:０:０:０:１]",
    "[::ｆｆｆｆ:１２７.０.０.１]",  # IPv4-mapped, fullwidth
]
PRIVATE_CORPUS = ["１６９.２５４.１６９.２５４", "１０.０.０.１", "𝟏𝟗𝟐.𝟏𝟔𝟖.𝟎.𝟏", "[ｆｅ８０::1]", "[ｆｄ00::1]"]


@pytest.mark.parametrize("host", CORPUS + PRIVATE_CORPUS)
def test_the_corpus_names_a_blocked_address_once_read_as_the_client_reads_it(host):
    url = URL(f"http://{host}:8080/internal")  # yarl, exactly as aiohttp builds it
    ip = literal_ip(url.raw_host)
    assert ip is not None and is_blocked(ip, []), (host, url.raw_host)


@pytest.mark.slow  # hypothesis: generated notations
@settings(max_examples=300, deadline=None)
@given(hostile_host(LOOPBACK + PRIVATE))
def test_every_generated_notation_is_read_as_its_address(host):
    """The generator makes what it promises: the client reads each host as the blocked address,
    or cannot read the URL at all (then it can send nothing either)."""
    try:
        url = URL(f"http://{host}/")
    except ValueError:
        event("the client refuses the URL")
        return
    event("the client reads an address")
    ip = literal_ip(url.raw_host)
    assert ip is not None and is_blocked(ip, []), (host, url.raw_host)


def _urls(hosts: list[str], port: int) -> list[str]:
    return [f"http://{host}:{port}/internal" for host in hosts]


async def _send_all(sender: Sender, urls: list[str]):
    try:
        return {url: await sender.send(url, {"Content-Type": "application/json"}, b"{}") for url in urls}
    finally:
        await sender.close()


async def test_non_ascii_notations_are_blocked_and_nothing_is_sent(canaries):
    v4, v6 = canaries
    results = await _send_all(Sender(allowed_networks=[], total_timeout=3), _urls(CORPUS + PRIVATE_CORPUS, v4.port))
    for url, result in results.items():
        assert (result.error_class, result.status) == ("blocked", None), (url, result)
    assert v4.received == [] and v6.received == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=hostile_host(LOOPBACK))
async def test_generated_notations_never_reach_loopback(canaries, host):
    v4, v6 = canaries
    (result,) = (await _send_all(Sender(allowed_networks=[], total_timeout=3), _urls([host], v4.port))).values()
    assert result.error_class == "blocked", (host, result)
    assert v4.received == [] and v6.received == []


class NumericResolver(AbstractResolver):
    """An unguarded resolver for the connect-time test: reads any numeric notation the system's
    resolver accepts (and names from a table), never asks DNS, judges nothing."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = self.table.get(host, host.rstrip("."))
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            results.append(
                {"hostname": host, "host": sockaddr[0], "port": port, "family": fam, "proto": proto, "flags": 0}
            )
        return results

    async def close(self) -> None:
        return None


def unguarded_sender(allowed: str, table: dict[str, str]) -> Sender:
    """A sender whose checks on the URL's text and on names are switched off: only the connector's
    socket factory is left to judge the addresses."""
    sender = Sender(allowed_networks=parse_networks(allowed), total_timeout=3)
    sender.resolver = NumericResolver(table)  # replaces the guarded resolver before the connector exists
    sender._check = lambda url: None  # type: ignore[method-assign]
    return sender


NAMES = {"loopback.shop.test": "127.0.0.1", "loopback6.shop.test": "::1", "mapped.shop.test": "::ffff:127.0.0.1"}


async def test_the_connect_time_check_holds_alone(canaries):
    v4, v6 = canaries
    hosts = [*CORPUS, "127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "2130706433", "0x7f.1", "127.1", *NAMES]
    results = await _send_all(unguarded_sender("127.0.0.2/32", NAMES), _urls(hosts, v4.port))
    for url, result in results.items():
        assert not result.ok and result.status is None, (url, result)
        if "%" not in url:  # the client and a resolver read every other host as a loopback address
            assert result.error_class == "blocked", (url, result)
            # aiohttp itself refuses the legacy IPv4 forms it reads as literals (127.1, 2130706433).
            assert "refused at connect" in result.error or result.error.startswith("invalid URL"), (url, result)
    assert v4.received == [] and v6.received == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=hostile_host(LOOPBACK))
async def test_the_connect_time_check_holds_alone_for_generated_notations(canaries, host):
    v4, v6 = canaries
    (result,) = (await _send_all(unguarded_sender("", {}), _urls([host], v4.port))).values()
    assert not result.ok and result.error_class in ("blocked", "dns"), (host, result)
    assert v4.received == [] and v6.received == []


async def test_allowed_loopback_still_works_on_both_families(canaries):
    """``make run`` sets PAYCENTER_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8,::1/128 and relies on it."""
    v4, v6 = canaries
    urls = [
        v4.url("/v4"),
        v6.url("/v6"),
        f"http://１２７.０.０.１:{v4.port}/mapped",
        f"http://[::１]:{v6.port}/mapped6",
    ]
    results = await _send_all(Sender(allowed_networks=parse_networks("127.0.0.0/8,::1/128")), urls)
    assert all(r.ok for r in results.values()), results
    assert [r.path for r in v4.received] == ["/v4", "/mapped"]
    assert [r.path for r in v6.received] == ["/v6", "/mapped6"]


async def test_names_resolving_to_blocked_addresses_are_blocked(canaries):
    v4, v6 = canaries
    resolver = StaticResolver({**NAMES, "internal.shop.test": "10.0.0.1", "meta.shop.test": "169.254.169.254"})
    sender = Sender(allowed_networks=[], resolver=resolver, total_timeout=3)
    hosts = [*NAMES, "internal.shop.test", "meta.shop.test", "ＬＯＯＰＢＡＣＫ.shop.test", "loopback。shop。test"]
    results = await _send_all(sender, _urls(hosts, v4.port))
    for url, result in results.items():
        assert result.error_class == "blocked" and "resolves to" in (result.error or ""), (url, result)
    assert v4.received == [] and v6.received == []


async def test_redirect_targets_are_judged_as_the_client_reads_them(canaries):
    v4, v6 = canaries
    redirector = await Sink(host="127.0.0.2").start()
    try:
        locations = [f"http://{host}:{v4.port}/stolen" for host in ("１２７.０.０.１", "%31%32%37.0.0.1", "[::１]")]
        urls = [redirector.on(f"/go{i}", 302, headers={"Location": loc}) for i, loc in enumerate(locations)]
        urls.append(redirector.on("/fine", 302, headers={"Location": "https://example.com/elsewhere"}))
        results = await _send_all(Sender(allowed_networks=parse_networks("127.0.0.2/32"), total_timeout=3), urls)
    finally:
        await redirector.stop()
    *blocked, fine = results.values()
    assert all(r.error_class == "blocked" and "redirect" in r.error for r in blocked), blocked
    assert fine.error_class == "http_status"
    assert v4.received == [] and v6.received == []


# --- at init: refused where the merchant gives the URL ------------------------------------------


def _field_errors(response) -> list[str]:
    return [f["field"] for f in response.json()["error"]["fields"]]


async def test_init_refuses_blocked_notations_and_writes_nothing(client, db, merchant):
    before = await row_counts(db)
    for host in CORPUS + PRIVATE_CORPUS:
        r = await client.post(
            "/api/payment/init",
            json={"amount": 500, "webhook_url": f"http://{host}:8080/internal"},
            headers=merchant.headers,
        )
        assert r.status_code == 422, (host, r.text)
        assert r.json()["success"] is False and _field_errors(r) == ["webhook_url"], (host, r.text)
        # Refused by the published grammar (an ASCII host name: fullwidth digits, dots of other
        # scripts, percent-escapes never get that far), or by the address it names.
        assert any(
            reason in r.json()["message"] for reason in ("is not allowed", "must name its host", "must be an http")
        ), r.text
    assert await row_counts(db) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=hostile_host(LOOPBACK + PRIVATE))
async def test_init_refuses_every_generated_notation(client, merchant, host):
    r = await client.post(
        "/api/payment/init", json={"amount": 500, "webhook_url": f"http://{host}/hook"}, headers=merchant.headers
    )
    assert r.status_code == 422 and _field_errors(r) == ["webhook_url"], (host, r.text)


async def test_init_keeps_a_normal_url_as_written_and_opens_only_allowed_networks(client, ctx, merchant):
    for url in (
        "https://shop.example/hooks?a=1&b=%20",
        "https://Shop.Example:443/Hooks/",
        "https://xn--e1afmkfd.xn--p1ai/хук",
    ):
        data = await create_payment(client, merchant, webhook_url=url)
        r = await client.get(f"/api/transaction/{data['transaction_id']}", headers=merchant.headers)
        assert r.json()["data"]["webhook_url"] == url  # stored and shown as the merchant wrote it

    ctx.settings = Settings(
        database_url=ctx.settings.database_url,
        public_url="http://pay.test",
        run_worker=False,
        webhook_allowed_networks="127.0.0.0/8,::1/128",
        _env_file=None,  # type: ignore[call-arg]
    )
    for host in ("127.0.0.1", "[::1]", "localhost"):
        await create_payment(client, merchant, webhook_url=f"http://{host}:8080/hook")
    # Outside the allowed networks, or not ASCII (an IDN host goes in its xn-- form), or a
    # public address: the contract takes a webhook's IP address only inside the allowed networks.
    for host in ("１０.０.０.１", "[ｆｅ８０::1]", "１２７.０.０.１", "𝟏𝟐𝟕.0.0.1", "пример.рф", "10.0.0.1", "8.8.8.8"):
        r = await client.post(
            "/api/payment/init", json={"amount": 500, "webhook_url": f"http://{host}/h"}, headers=merchant.headers
        )
        assert r.status_code == 422 and _field_errors(r) == ["webhook_url"], r.text


# --- deliveries already in the outbox (old rows, or any other way in) ---------------------------


async def _attempts(db, delivery_id: str) -> list[DeliveryAttempt]:
    async with db.reading() as session:
        rows = await session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id).order_by(DeliveryAttempt.number)
        )
        return list(rows)


async def _deliveries(db) -> list[Delivery]:
    async with db.reading() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.created_at, Delivery.id)))


async def test_deliveries_to_blocked_notations_reach_nothing_even_resent(client, db, ctx, clock, canaries):
    """A payment row that already holds a hostile URL (stored before this check, or written some
    other way): its webhooks reach nothing, and neither do resend and recover."""
    v4, v6 = canaries
    shop = await make_merchant(db, name="Hostile shop")  # no default URL: nothing is enqueued by itself
    urls = _urls(CORPUS, v4.port)
    ids = []
    for url in urls:
        pid = (await create_payment(client, shop, webhook_url=None))["transaction_id"]
        async with db.transaction() as session:  # past init's validation, as an old row would be
            await session.execute(update(Payment).where(Payment.id == pid).values(webhook_url=url))
        ids.append(pid)
    ctx.settings = Settings(
        database_url=ctx.settings.database_url,
        public_url="http://pay.test",
        run_worker=False,
        webhook_allowed_networks="",
        webhook_retry_schedule="",  # one try each: the test waits for "failed"
        worker_poll_interval=0.05,
        _env_file=None,  # type: ignore[call-arg]
    )
    worker = Worker(ctx)
    await worker.start()
    try:
        for i, pid in enumerate(ids):
            await sandbox(client, pid, checkout_id=f"ssrf-{pid}-{i}")

        async def all_failed(count: int) -> list[Delivery]:
            rows = await _deliveries(db)
            done = len(rows) == len(urls) and all(d.status == "failed" and d.attempt_count == count for d in rows)
            return rows if done else []

        rows = await eventually(lambda: all_failed(1), timeout=20, what="every delivery tried once")
        assert sorted(d.url for d in rows) == sorted(urls)
        for d in rows:
            assert (d.last_error_class, d.last_status_code) == ("blocked", None), (d.url, d.last_error)
        r = await client.get(f"/api/payment/{ids[0]}/webhooks", headers=shop.headers)
        (log,) = r.json()["data"]
        (attempt,) = log["attempts"]
        assert attempt["error_class"] == "blocked"
        assert (attempt["response_status"], attempt["response_headers"], attempt["response_body"]) == (None,) * 3

        # The merchant resends one, then recovers them all: still blocked, still silent.
        r = await client.post(f"/api/webhooks/{rows[0].id}/resend", headers=shop.headers)
        assert r.status_code == 200, r.text
        await eventually(lambda: _attempts_at_least(db, rows[0].id, 2), timeout=10, what="the resend's try")
        since = (clock() - timedelta(hours=1)).isoformat()
        r = await client.post("/api/webhooks/recover", json={"since": since}, headers=shop.headers)
        assert r.status_code == 200 and r.json()["data"]["resent"] == len(urls), r.text
        rows = await eventually(lambda: _all_tried(db, len(urls)), timeout=20, what="every recovered try")
        for d in rows:
            tries = await _attempts(db, d.id)
            assert [a.error_class for a in tries] == ["blocked"] * len(tries), d.url
            assert all(a.response_status is None and a.response_body is None for a in tries)
    finally:
        await worker.stop()
    assert v4.received == [] and v6.received == []


async def _attempts_at_least(db, delivery_id: str, n: int) -> bool:
    return len(await _attempts(db, delivery_id)) >= n


async def _all_tried(db, count: int) -> list[Delivery]:
    """Every delivery failed again after recover (the first was resent once before: 3 tries)."""
    rows = await _deliveries(db)
    if len(rows) != count or any(d.status != "failed" for d in rows):
        return []
    tries = sorted(d.attempt_count for d in rows)
    return rows if tries == [2] * (count - 1) + [3] else []
