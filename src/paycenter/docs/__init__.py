"""Interactive API documentation (served locally) and the examples embedded in it."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Mount the documentation on ``app``. (Filled in by the docs package.)"""
    return None
