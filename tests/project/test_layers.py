"""No new import cycle between paycenter's top-level packages and modules (DESIGN §7, issue 14).

`lint-imports` (the contracts in pyproject.toml) checks the layer map; this test checks cycles, which
a layer map with debts can hide: every elementary cycle of the package-level import graph (imports
inside functions included) must be one of KNOWN_CYCLES, and every known cycle must still exist so the
list shrinks as the debts are paid.
"""

from __future__ import annotations

from collections.abc import Iterator

import grimp

# Every cycle is closed by one or more of these debts (the ignored imports of the layers contract):
#   cleanup:  jobs/cleanup.py purges stale admin rows through admin.service, and admin (an edge) reads jobs.
# Each cycle is written starting from its smallest name; the comment names the debts that close it.
KNOWN_CYCLES = {
    ("admin", "jobs"),  # cleanup
}


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


def test_no_new_cycle_between_top_level_packages() -> None:
    found = set(_cycles(_package_graph()))
    new = sorted(found - KNOWN_CYCLES, key=len)
    assert not new, "new import cycle(s) between paycenter's packages:\n" + "\n".join(
        " -> ".join((*c, c[0])) for c in new
    )


def test_known_cycles_still_exist() -> None:
    gone = sorted(KNOWN_CYCLES - set(_cycles(_package_graph())), key=len)
    assert not gone, "paid off, remove from KNOWN_CYCLES:\n" + "\n".join(" -> ".join((*c, c[0])) for c in gone)
