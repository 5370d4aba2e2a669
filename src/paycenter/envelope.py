"""The shapes every body of the merchant API shares, whatever the domain: the answer envelope and the
base of request bodies. In the kit so that each domain's router and the edges (docs, admin) take them
without importing payments.

The answer's component names in ``/openapi.json`` come from the class name and its parameter
(``Envelope_PaymentDetail_``), never from this module's path: moving it leaves the document as it was.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationInfo, field_validator

from paycenter import storable

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """Every answer: ``{"success": bool, "message": str, "data": ...}`` (``errors.envelope``)."""

    success: bool = True
    message: str
    data: T


class RequestBody(BaseModel):
    """A request body. Everything in it must be storable on every backend and renderable by every
    answer and page (``paycenter.storable``): no NUL characters (PostgreSQL cannot store them), no
    lone surrogates (no UTF-8 encoder takes them), finite numbers only (Python's JSON parser takes
    NaN, Infinity and 1e999), nesting at most ``storable.MAX_DEPTH`` deep. Refused here with a 422
    naming the field, the same on every backend, before anything is written. Fields a body does
    not know are ignored, unread and unstored, as the old system did."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        found = storable.problem(value)
        if found:
            raise ValueError(f"{info.field_name} {found}")
        return value
