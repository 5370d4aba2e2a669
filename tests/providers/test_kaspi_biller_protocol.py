"""The Kaspi biller protocol's rules (providers/kaspi_biller.py, kaspi.md §C) and our account numbers'
check digit (payments/accounts.py), without a database: reading requests, writing replies, the gate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paycenter.payments import accounts
from paycenter.providers import kaspi_biller as kb
from paycenter.providers.kaspi_biller import BadRequest, Command, Gate, Reply, Result


def fields(**values: str) -> dict[str, list[str]]:
    return kb.collect(values.items())


def test_a_pay_is_read_with_its_sum_in_tiyn_and_its_date_in_almaty_time():
    call = kb.parse(
        fields(command="pay", txn_id="12345678901234567890", account="0012", sum="1500.5", txn_date="20261206150000")
    )
    assert call.command is Command.PAY and call.txn_id == "12345678901234567890" and call.account == "0012"
    assert call.amount == 150050
    # Almaty is UTC+5 since 2024-03-01 (kaspi.md §C: Kazakhstan local time).
    assert call.txn_date == datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    # ... and was UTC+6 before: zoneinfo knows.
    before = kb.parse(fields(command="pay", txn_id="1", account="1", sum="1", txn_date="20240101120000"))
    assert before.txn_date == datetime(2024, 1, 1, 6, 0, tzinfo=UTC)


def test_a_check_takes_its_placeholder_sum_or_none():
    assert kb.parse(fields(command="check", txn_id="1", account="5", sum="")).amount is None
    assert kb.parse(fields(command="check", txn_id="1", account="5", sum="0.00")).amount == 0
    assert kb.parse(fields(command="check", txn_id="1", account="5")).txn_date is None


@pytest.mark.parametrize(
    ("values", "txn_echo"),
    [
        ({"command": "refund", "txn_id": "1", "account": "1"}, "1"),
        ({"txn_id": "1", "account": "1"}, "1"),
        ({"command": "check", "txn_id": "1a", "account": "1"}, None),
        ({"command": "check", "txn_id": "123456789012345678901", "account": "1"}, None),
        ({"command": "check", "txn_id": "", "account": "1"}, None),
        ({"command": "check", "txn_id": "-1", "account": "1"}, None),
        ({"command": "check", "txn_id": "٣", "account": "1"}, None),  # another script's digit
        ({"command": "check", "txn_id": "1", "account": "12 3"}, "1"),
        ({"command": "check", "txn_id": "1", "account": "123456789012345678901"}, "1"),
        ({"command": "check", "txn_id": "1"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1"}, "1"),  # no sum
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "0.00"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "1.001"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "1e3"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "-5"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "1,50"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "NaN"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "5", "txn_date": "2026120615000"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "5", "txn_date": "20261306150000"}, "1"),
        ({"command": "pay", "txn_id": "1", "account": "1", "sum": "5", "txn_date": "00010101000000"}, "1"),
    ],
)
def test_malformed_requests_are_refused_and_echo_only_a_well_formed_txn_id(values, txn_echo):
    with pytest.raises(BadRequest) as caught:
        kb.parse(fields(**values))
    assert caught.value.txn_id == txn_echo


def test_a_field_given_twice_is_refused():
    with pytest.raises(BadRequest, match="more than once"):
        kb.parse(kb.collect([("command", "pay"), ("txn_id", "1"), ("txn_id", "2"), ("account", "1"), ("sum", "1")]))


def test_json_reply_is_written_as_the_spec_shows_it():
    reply = Reply(Result.OK, txn_id="777", prv_txn=42, amount=150000)
    body, content_type = kb.render(reply, "json")
    assert content_type == "application/json; charset=utf-8"
    assert body == b'{"txn_id": "777", "prv_txn_id": 42, "prv_txn": 42, "result": 0, "sum": 1500.00, "comment": "OK"}'
    assert json.loads(body, parse_float=Decimal)["sum"] == Decimal("1500.00")
    checked, _ = kb.render(
        Reply(Result.OK, txn_id="1", amount=5, fields=(("Получатель", 'Shop "A"'), ("Назначение", "x\\y"))), "json"
    )
    assert json.loads(checked)["fields"] == {
        "field1": {"name": "Получатель", "value": 'Shop "A"'},
        "field2": {"name": "Назначение", "value": "x\\y"},
    }
    assert b'"sum": 0.05' in checked


def test_xml_reply_is_escaped_and_well_formed():
    reply = Reply(Result.OK, txn_id="9", amount=100, fields=(("a&b", "x<y>\"z'\x01"),))
    body, content_type = kb.render(reply, "xml")
    assert content_type == "application/xml; charset=utf-8"
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<response><txn_id>9</txn_id><sum>1.00</sum><result>0</result>'
        b'<comment>OK</comment><fields><field1 name="a&amp;b">x&lt;y&gt;"z\'\xef\xbf\xbd</field1></fields></response>'
    )
    root = ET.fromstring(body)
    assert root.find("fields/field1").attrib["name"] == "a&b"
    paid, _ = kb.render(Reply(Result.OK, txn_id="9", prv_txn=3, amount=100), "xml")
    assert b"<prv_txn>3</prv_txn><prv_txn_id>3</prv_txn_id><sum>1.00</sum>" in paid


def test_forbidden_echoes_nothing():
    assert kb.render(kb.forbidden(), "json")[0] == b'{"result": 5, "comment": "forbidden"}'


def test_the_gate_judges_the_actual_address_and_data1():
    gate = Gate(networks=kb.parse_networks("127.0.0.1/32, 10.0.0.0/8,2001:db8::/32"), secret="s3cret")
    assert gate.address_allowed("127.0.0.1") and gate.address_allowed("10.1.2.3")
    assert gate.address_allowed("::ffff:127.0.0.1")  # IPv4-mapped: the IPv4 client it is
    assert gate.address_allowed("2001:db8::5")
    for host in ("127.0.0.2", "::1", "::ffff:127.0.0.2", "", None, "not-an-ip", "127.0.0.1/32"):
        assert not gate.address_allowed(host), host
    assert not Gate().address_allowed("127.0.0.1")  # empty list: nobody
    assert gate.secret_matches(["s3cret"])
    assert not gate.secret_matches(None) and not gate.secret_matches(["S3CRET"])
    assert not gate.secret_matches(["s3cret", "s3cret"]) and not gate.secret_matches(["ы"])
    assert Gate().secret_matches(None)  # no secret set: data1 is not asked for
    with pytest.raises(ValueError, match="ALLOWED_NETWORKS"):
        kb.parse_networks("10.0.0.0/33")


# --- account numbers: Luhn ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(digits=st.integers(min_value=6, max_value=20))
def test_generated_accounts_have_the_length_a_leading_non_zero_and_a_valid_check_digit(digits):
    account = accounts.generate(digits)
    assert len(account) == digits and account[0] != "0" and account.isdigit()
    assert accounts.luhn_valid(account)


@settings(max_examples=300, deadline=None)
@given(body=st.text(alphabet="0123456789", min_size=1, max_size=19))
def test_the_check_digit_catches_every_single_digit_typo_and_adjacent_swap(body):
    account = body + accounts.luhn_digit(body)
    assert accounts.luhn_valid(account)
    for i, typed in enumerate(account):
        for other in "0123456789":
            if other != typed:
                wrong = account[:i] + other + account[i + 1 :]
                assert not accounts.luhn_valid(wrong), (account, wrong)
    for i in range(len(account) - 1):
        a, b = account[i], account[i + 1]
        if a == b:
            continue
        swapped = account[:i] + b + a + account[i + 2 :]
        # Luhn's one blind spot, of the algorithm itself: 09 <-> 90 (both sum alike doubled or not).
        assert accounts.luhn_valid(swapped) is ({a, b} == {"0", "9"}), (account, swapped)


def test_luhn_known_values():
    assert accounts.luhn_digit("7992739871") == "3"  # the textbook example
    assert accounts.luhn_valid("79927398713") and not accounts.luhn_valid("79927398710")
    assert not accounts.luhn_valid("7") and not accounts.luhn_valid("１２")
