"""JSON values that every backend can store and every page can render.

Python's JSON parser hands over more than that: NaN and ±Infinity (as bare tokens, or a number
like ``1e999999`` that overflows the float), integers past the float's range (``1`` and 400
zeros, which JavaScript and PHP read as Infinity and PHP's json_encode then refuses), lone
surrogates (``"\\ud800"``, which no UTF-8 encoder takes), NUL characters (which PostgreSQL refuses
in text and JSON), and nesting as deep as its recursion allows. SQLite stores some of these and
PostgreSQL refuses them; the first JSON answer or page that shows them fails. So:

- ``problem`` is the one rule at every way in (request bodies, the legacy importer): the first
  reason a value cannot be taken, or None.
- ``sanitized`` is for what was stored before that rule (or is stored by someone else): the same
  value made renderable, and the very same object when there was nothing to change, so reads and
  webhook bodies of good rows are untouched.

Both walk with an explicit stack or a depth bound, never unbounded recursion.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

# Objects and arrays nest at most this deep; the outermost object (metadata itself) is level 1.
MAX_DEPTH = 10
REPLACEMENT = "\ufffd"
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")

NUL = "must not contain NUL characters"
SURROGATE = "must be valid Unicode text (no lone surrogates such as \\ud800)"
NON_FINITE = "must hold finite numbers only (no NaN, Infinity or numbers beyond ±1.8e308)"


def too_deep(max_depth: int) -> str:
    return f"must not nest objects and arrays more than {max_depth} levels deep"


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE
    return None


def _finite(number: float | Decimal | int) -> bool:
    if isinstance(number, int):
        if number.bit_length() <= 1023:
            return True
        try:
            float(number)
        except OverflowError:
            return False
        return True
    return number.is_finite() if isinstance(number, Decimal) else math.isfinite(number)


def problem(value: Any, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``value`` (a parsed JSON value) cannot be stored and shown everywhere, or None."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            found = text_problem(item)
            if found:
                return found
        elif isinstance(item, float | Decimal | int) and not isinstance(item, bool):
            if not _finite(item):
                return NON_FINITE
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return too_deep(max_depth)
            if isinstance(item, dict):
                for key, inner in item.items():
                    stack.append((key, depth + 1))
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)
    return None


def clean_text(text: str) -> str:
    """Text with NUL characters and lone surrogates replaced by U+FFFD."""
    if text_problem(text) is None:
        return text
    return _BAD_CHARS.sub(REPLACEMENT, text)


def _compact(value: Any) -> str:
    """A subtree too deep to show as a tree, as its JSON text instead (nothing is lost)."""
    try:
        return clean_text(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))
    except (ValueError, RecursionError):
        return "…"


def _rebuilt(value: Any, depth: int, max_depth: int) -> Any:
    # Recursion bounded by max_depth: anything deeper becomes text and is not walked.
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float | Decimal | int) and not isinstance(value, bool):
        return value if _finite(value) else None  # what JSON.stringify makes of NaN, too
    if isinstance(value, dict | list | tuple):
        if depth >= max_depth:
            return _compact(value)
        if isinstance(value, dict):
            return {clean_text(str(k)): _rebuilt(v, depth + 1, max_depth) for k, v in value.items()}
        return [_rebuilt(v, depth + 1, max_depth) for v in value]
    return value


def sanitized(value: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` as every encoder and template can take it: NUL and lone surrogates become
    U+FFFD, NaN, ±Infinity and integers past the float's range become null, subtrees deeper than
    ``max_depth`` become their JSON text. A value with no such problem is returned as it is (the same object)."""
    if problem(value, max_depth=max_depth) is None:
        return value
    return _rebuilt(value, 0, max_depth)


def loads(text: str | None) -> Any:
    """Stored JSON text, parsed and sanitized; None when it is not JSON at all."""
    if not text:
        return None
    try:
        return sanitized(json.loads(text))
    except (ValueError, RecursionError):
        return None
