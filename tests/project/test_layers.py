"""No import cycle between paycenter's top-level packages and modules (DESIGN §7, issue 14).

`lint-imports` (the contracts in pyproject.toml) checks the layer map; this test checks cycles over
the whole package-level import graph (imports inside functions included), which a contract with an
ignored import could hide. There were 27 at the start of issue 14; there are none, and a new one fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import grimp


def _package_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("paycenter")
    deps: dict[str, set[str]] = {}
    for module in graph.modules:
        if module == "paycenter":
            continue
        top = module.split(".")[1]
        deps.setdefault(top, set())
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != "paycenter" and imported.split(".")[1] != top:
                deps[top].add(imported.split(".")[1])
    return deps


def _cycles(deps: dict[str, set[str]]) -> Iterator[tuple[str, ...]]:
    """Every elementary cycle once, starting from its smallest name (small graph: a plain search)."""

    def walk(start: str, path: list[str]) -> Iterator[tuple[str, ...]]:
        for nxt in sorted(deps.get(path[-1], ())):
            if nxt == start:
                yield tuple(path)
            elif nxt > start and nxt not in path:
                yield from walk(start, [*path, nxt])

    for start in sorted(deps):
        yield from walk(start, [start])


def test_no_cycle_between_top_level_packages() -> None:
    found = sorted(set(_cycles(_package_graph())), key=len)
    assert not found, "import cycle(s) between paycenter's packages:\n" + "\n".join(
        " -> ".join((*c, c[0])) for c in found
    )


def test_the_cycle_check_sees_a_cycle() -> None:
    """The search itself can fail: a two-package loop and a three-package loop are both reported."""
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"b"}, "e": set()}
    assert set(_cycles(graph)) == {("a", "b"), ("b", "c", "d")}
