"""The old system's MySQL tables (tests/fixtures/legacy) and a splitter for its SQL scripts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
# Import time for the tests: after every fixture row, so the pending ones are overdue.
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def sql_statements(script: str) -> list[str]:
    """Split a SQL script on the semicolons outside quotes and comments."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(script):
        ch = script[i]
        if quote:
            current.append(ch)
            if ch == "\\":
                current.append(script[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
            current.append(ch)
        elif script.startswith("--", i):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return [s for s in statements if s]
