"""The lock files hold what pyproject.toml asks for: every dependency (and every test extra) pinned
once, at a version its range admits, with hashes; the runtime lock the same versions as the test
lock. A change to pyproject.toml without `make lock` fails here, not in a half-installed venv."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^ \\;]+)", re.MULTILINE)


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    pins = {canonicalize_name(n.split("[")[0]): v for n, v in PIN.findall(text)}
    assert pins, f"{name} pins nothing"
    # Hashes for every pin: pip installs it with --require-hashes.
    assert text.count("--hash=sha256:") >= len(pins), f"{name} has pins without hashes"
    return pins


def _requirements(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if extra:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def _check(lock: str, reqs: list[Requirement]) -> None:
    pins = _pins(lock)
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in {lock}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}: run `make lock`"
        )


def test_the_test_lock_holds_every_dependency_and_test_extra() -> None:
    _check("requirements-test.lock", _requirements("test"))


def test_the_runtime_lock_holds_the_dependencies_at_the_test_locks_versions() -> None:
    _check("requirements.lock", _requirements(None))
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    assert {n: v for n, v in runtime.items() if test.get(n) != v} == {}, "the locks disagree: run `make lock`"
    assert not {"pytest", "ruff", "hypothesis"} & set(runtime), "test tools in the runtime lock"
