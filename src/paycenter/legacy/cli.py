"""The ``paycenter import-legacy`` command (filled in by the legacy import)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
