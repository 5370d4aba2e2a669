"""Debian's Chromium driven by Playwright, for the browser tests: ``/usr/bin/chromium`` (the package
``.ci/run`` installs), never a browser Playwright would download.

Chromium missing: the test is skipped, or fails when ``PAYCENTER_TEST_REQUIRE`` contains
``chromium`` (CI sets it, so there a browser test cannot pass by being skipped). Playwright is
imported only when a browser starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kit.db import REQUIRED

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (tests may run as root in a container), no GPU, and none of Chromium's own traffic:
# every request a page makes goes to the server under test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}, "locale": "ru-RU"}
TIMEOUT_MS = 10_000  # every wait of a window's page unless a test says otherwise


def require_chromium() -> None:
    """Skip the test when Chromium is missing, or fail it when the run requires Chromium. Call it
    before starting anything a browser test needs (a server process) to spare that work."""
    if CHROMIUM.exists():
        return
    if "chromium" in REQUIRED:
        pytest.fail(f"{CHROMIUM} is required (PAYCENTER_TEST_REQUIRE) but missing")
    pytest.skip(f"{CHROMIUM} is not installed")


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium (Playwright's ``Browser``), closed when the block ends."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    page: Any
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    dialogs: list[str] = field(default_factory=list)  # for tests that answer alert/confirm dialogs


def watch_errors(page: Any, errors: list[str]) -> None:
    """Append the page's console errors and uncaught script exceptions to ``errors``."""
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text} ({msg.location.get('url')})") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))


class Windows:
    """The browser windows one test opens: each a context of its own (its own cookies), with the
    same options and default timeout, its page watched for script errors. ``close`` closes all."""

    def __init__(self, browser: Any, options: dict[str, Any] = LAPTOP, timeout_ms: int = TIMEOUT_MS) -> None:
        self.browser = browser
        self.options = options
        self.timeout_ms = timeout_ms
        self.tabs: list[Tab] = []
        self._contexts: list[Any] = []

    async def open(self) -> Tab:
        context = await self.browser.new_context(**self.options)
        self._contexts.append(context)
        context.set_default_timeout(self.timeout_ms)
        tab = Tab(await context.new_page())
        watch_errors(tab.page, tab.errors)
        self.tabs.append(tab)
        return tab

    def errors(self) -> list[str]:
        return [e for tab in self.tabs for e in tab.errors]

    async def close(self) -> None:
        for context in self._contexts:
            await context.close()
