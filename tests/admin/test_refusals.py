"""A service's refusal, shown in the panel, is said in the panel's language (paycenter.admin.refusals).

The messages are read from the services' source, not listed by hand: a new ``raise Conflict(...)``
in a module the panel calls fails here until its Russian and Kazakh words are written.
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.languages import latin_words
from paycenter import storable
from paycenter.admin import refusals
from paycenter.admin.refusals import REFUSALS, say, translate
from paycenter.providers.kaspi_biller import REFUNDS_REFUSED
from paycenter.providers.kaspi_qr import R1_NO_REFUNDS

SRC = Path(refusals.__file__).resolve().parents[1]
# The modules whose refusals reach the panel: its own, and the services its actions call.
PANEL_MODULES = [
    "admin/links.py",
    "admin/pages.py",
    "admin/queries.py",
    "admin/web.py",
    "contract.py",
    "merchants/service.py",
    "money.py",
    "pagination.py",
    "payments/links.py",
    "payments/queries.py",
    "payments/refunds.py",
    "payments/schemas.py",
    "payments/service.py",
    "providers/terminals.py",
    "versions.py",
    "webhooks/ssrf.py",
    "webhooks/service.py",
]
REFUSING = {
    "ApiError",
    "BadInput",
    "BlockedAddress",
    "Conflict",
    "MoneyError",
    "NotFound",
    "Unprocessable",
    "UnknownVersion",
    "ValueError",
}
# What a placeholder of a message stands for when it is another message (an exception's words).
DETAIL = "amount must be greater than zero"
# Messages no operator can meet in the panel: the panel never calls what raises them.
NOT_IN_THE_PANEL = {
    "naive datetime given to a UTC column",
}
# Said alike in both languages: "мерчант" is a Kazakh word too.
SHARED = {"merchant {detail}"}
EXTRA = [storable.NUL, storable.SURROGATE, storable.NON_FINITE, R1_NO_REFUNDS, REFUNDS_REFUSED]


def _sample(node: ast.expr) -> str | None:
    """A message as the code would write it: a literal, or an f-string with its values made up
    (an exception's own words stand in for a value that is an exception or a check's finding)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            else:
                assert isinstance(part, ast.FormattedValue)
                source = ast.unparse(part.value)
                detail = re.search(r"\bexc\b|found|problem|msg|message", source)
                out.append(DETAIL if detail else "x1")
        return "".join(out)
    if isinstance(node, ast.IfExp):
        return _sample(node.body)
    return None


def _messages(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "message" for t in node.targets):
            value = _sample(node.value)
            if value is not None:
                found.append((node.lineno, value))
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name == "_invalid" and len(node.args) == 2:  # "field: message"
            value = _sample(node.args[1])
            if value is not None:
                found += [(node.lineno, value), (node.lineno, f"x1: {value}")]
        elif name in REFUSING:
            value = _sample(node.args[0])
            if value is not None:
                found.append((node.lineno, value))
            if isinstance(node.args[0], ast.IfExp):  # the other branch of a conditional message
                value = _sample(node.args[0].orelse)
                if value is not None:
                    found.append((node.lineno, value))
    return found


def _all_messages() -> list[tuple[str, str]]:
    out = [(f"{m}:{line}", text) for m in PANEL_MODULES for line, text in _messages(SRC / m)]
    out += [(f"extra {i}", text) for i, text in enumerate(EXTRA)]
    return [(where, text) for where, text in out if text not in NOT_IN_THE_PANEL]


def test_the_scan_finds_the_services_messages() -> None:
    """The scan itself: it must see the refusals it is meant to check (or it checks nothing)."""
    texts = {text for _, text in _all_messages()}
    assert "Payment is x1 and has received no money to refund" in texts
    assert "Refund amount exceeds the refundable sum of x1 x1" in texts
    assert f"x1: {DETAIL}" in texts  # admin/links.py f"amount: {exc}" and the like
    assert "a one-off link needs a fixed amount" in texts
    assert len(texts) > 80


@pytest.mark.parametrize("lang", ["ru", "kk"])
def test_every_refusal_the_panel_can_meet_has_its_words(lang: str) -> None:
    missing = [(where, text) for where, text in _all_messages() if not translate(text, lang)[1]]
    assert missing == []


def _fields(text: str) -> list[str]:
    return sorted(name for _, name, _, _ in string.Formatter().parse(text) if name)


def _words_outside_code(text: str) -> list[str]:
    return latin_words([re.sub(r"`[^`]*`", " ", text)])


@pytest.mark.parametrize("template", sorted(REFUSALS))
def test_each_refusal_takes_the_same_values_and_reads_as_its_language(template: str) -> None:
    ru, kk = REFUSALS[template]
    assert _fields(ru) == _fields(kk) == _fields(template)
    assert ru.count("`") % 2 == 0 and kk.count("`") % 2 == 0
    if re.search(r"[а-яё]{3,}", ru, re.I) and template not in SHARED:
        assert kk != ru, "a Kazakh refusal equal to the Russian one was not translated"
    values = {name: (DETAIL if name == "detail" else "x_1") for name in _fields(template)}
    message = template.format(**values)
    for lang in ("ru", "kk"):
        said, complete = translate(message, lang)
        assert complete, (lang, message)
        assert _words_outside_code(said) == [], (lang, said)
        assert "x_1" not in re.sub(r"`[^`]*`", "", said), "a value is shown as code, not as words"
    assert say(message, "en") == message


@given(st.text(max_size=200))
def test_any_text_is_said_safely(message: str) -> None:
    """Whatever a service (or a library under it) writes, the panel shows it: in English as it is,
    otherwise translated or, as code, after a sentence of the page's language. No words of
    another language outside code, and nothing raises."""
    assert say(message, "en") == message
    for lang in ("ru", "kk"):
        said, complete = translate(message, lang)
        if not complete:
            assert said == refusals.UNTRANSLATED[lang].format(message="`" + message.replace("`", "'") + "`")
        assert _words_outside_code(said) == []


def test_a_detail_without_words_is_not_half_translated() -> None:
    said, complete = translate("amount: the moon is made of cheese", "ru")
    assert not complete and said == "Отказ: `amount: the moon is made of cheese`"
    assert translate("amount: amount must be greater than zero", "ru") == (
        "`amount`: сумма должна быть больше нуля",
        True,
    )
    assert translate("Payment is paid and can no longer be cancelled", "kk") == (
        "Төлем `paid` күйінде, оны енді болдырмау мүмкін емес",
        True,
    )
