"""Only a domain's service writes its tables (issue 14).

Reads the source of every module: a write is ``insert(Model)``, ``update(Model)``, ``delete(Model)``,
``insert_values(session, Model, ...)`` or ``session.add(Model(...))``/``merge``; the model's owner is the package that
defines it. A domain's tables are written by its service modules alone; a kit or jobs module writes
only the tables it defines itself. Writes through a variable (``session.add(row)``) are not seen: the
check catches the common shape of a stray write, the review catches the rest.
"""

from __future__ import annotations

import ast
from pathlib import Path

import paycenter.models  # noqa: F401  (every table registered)
from paycenter.db import Base

SRC = Path(__file__).resolve().parents[2] / "src" / "paycenter"

# The service layer of each domain: the only modules that may write its tables.
SERVICES = {
    "payments": {
        "payments.service",
        "payments.attempts",
        "payments.refunds",
        "payments.accounts",
        "payments.biller",
        "payments.links",
    },
    "webhooks": {"webhooks.service"},
    "merchants": {"merchants.service"},
    "providers": {"providers.terminals"},
    "operators": {"operators.service"},
    "idempotency": {"idempotency.service"},
}
WRITES = {"insert", "update", "delete", "insert_values"}
ADDS = {"add", "merge"}


def _owners() -> dict[str, str]:
    """Model class name -> the module that defines it, without the ``paycenter.`` prefix."""
    return {m.class_.__name__: m.class_.__module__.removeprefix("paycenter.") for m in Base.registry.mappers}


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func, first = node.func, node.args[0]
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in WRITES:
            # the model is a positional argument: the first (insert(Model)) or after the session
            # (insert_values(session, Model, values)); stray_writes keeps the names that are models
            found.extend((node.lineno, arg.id) for arg in node.args[:2] if isinstance(arg, ast.Name))
        elif name in ADDS and isinstance(first, ast.Call) and isinstance(first.func, ast.Name):
            found.append((node.lineno, first.func.id))
    return found


def _allowed(writer: str, owner: str) -> bool:
    package = owner.split(".")[0]
    if package in SERVICES:
        return writer in SERVICES[package]
    # kit modules (leadership, quarantine, ratelimit) and jobs write what they define themselves
    return writer == owner or writer.split(".")[0] == package


def stray_writes(sources: dict[str, str], owners: dict[str, str]) -> list[str]:
    stray = []
    for writer, text in sorted(sources.items()):
        for line, model in _writes(ast.parse(text)):
            if model in owners and not _allowed(writer, owners[model]):
                stray.append(f"{writer}:{line} writes {model} ({owners[model]})")
    return stray


def _sources() -> dict[str, str]:
    return {
        ".".join(path.relative_to(SRC).with_suffix("").parts): path.read_text()
        for path in SRC.rglob("*.py")
        if "migrations" not in path.parts
    }


def test_only_a_domains_service_writes_its_tables() -> None:
    stray = stray_writes(_sources(), _owners())
    assert not stray, "tables written outside their domain's service:\n" + "\n".join(stray)


def test_the_check_sees_a_stray_write() -> None:
    """The scan can fail: a router deleting a payment and a CLI adding a merchant are both caught,
    the payments service writing its own table is not."""
    owners = _owners()
    sources = {
        "api.payments": "async def f(session):\n    await session.execute(delete(Payment).where(x))\n",
        "cli.merchant": "def g(session):\n    session.add(Merchant(name='x'))\n",
        "payments.service": "async def h(session):\n    await session.execute(update(Payment).values(x=1))\n",
        "api.payer": "async def i(session):\n    await insert_values(session, Payment, {})\n",
    }
    assert stray_writes(sources, owners) == [
        "api.payer:2 writes Payment (payments.models)",
        "api.payments:2 writes Payment (payments.models)",
        "cli.merchant:2 writes Merchant (merchants.models)",
    ]
