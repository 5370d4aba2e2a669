"""``paycenter config check``: validate a configuration and say what is missing (filled in)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
