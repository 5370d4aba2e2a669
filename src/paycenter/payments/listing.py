"""The query of ``GET /api/transactions``, read per API version into one ``TransactionFilter``.

Current version: a fixed set of parameters, checked as the document states them (422 naming the
field), and an unknown parameter refused by name, so that a misspelt filter never silently lists
everything. ``legacy``: the old API's parameters as it read them (legacy-api.md §4): ``status``,
``date_from``/``date_to`` (Almaty days), ``amount_from``/``amount_to``, ``limit`` (default 100, at
most 1000, 0 lists nothing) and ``offset``; empty and ``"0"`` filter values mean no filter.

The parameters are read here rather than declared on the handler because the versions disagree
on them (``limit=500`` is fine in one and refused in the other) and FastAPI would refuse a legacy
query before the handler knew its version; the document lists them through ``PARAMETERS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paycenter import pagination
from paycenter.contract import TEXT_PATTERN, DateTime
from paycenter.errors import Unprocessable, validation_error
from paycenter.payments import queries

DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Major units, as plain decimal text (the document's rule; the server parses exactly this).
AMOUNT_FILTER_PATTERN = "^[0-9]{1,15}(?:\\.[0-9]{1,4})?$"

LEGACY_DEFAULT_LIMIT = 100
LEGACY_MAX_LIMIT = 1000
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}\Z", re.ASCII)


def _day(value: Any) -> Any:
    if isinstance(value, str):
        if re.fullmatch(DATE_PATTERN, value) is None:
            raise ValueError("must be a date such as 2024-05-01 (YYYY-MM-DD)")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a calendar date (YYYY-MM-DD)") from None
    return value


class CurrentQuery(BaseModel):
    """What the current version takes, in the document's order."""

    model_config = ConfigDict(extra="forbid")

    status: Annotated[
        str | None,
        Field(pattern=queries.STATUSES_PATTERN, description="One status or several, comma-separated; empty: all."),
    ] = None
    created_from: Annotated[DateTime | None, Field(description="Created at or after (RFC 3339).")] = None
    created_to: Annotated[DateTime | None, Field(description="Created before (RFC 3339).")] = None
    date_from: Annotated[
        date | None,
        Field(description="Created on or after this day in Asia/Almaty (YYYY-MM-DD)."),
    ] = None
    date_to: Annotated[date | None, Field(description="Created on or before this day in Asia/Almaty (YYYY-MM-DD).")] = (
        None
    )
    amount_from: Annotated[
        str | None, Field(pattern=AMOUNT_FILTER_PATTERN, description="Amount at least this (major units).")
    ] = None
    amount_to: Annotated[
        str | None, Field(pattern=AMOUNT_FILTER_PATTERN, description="Amount at most this (major units).")
    ] = None
    order_id: Annotated[
        str | None, Field(max_length=500, pattern=TEXT_PATTERN, description="metadata.order_id equals")
    ] = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[
        str | None, Field(pattern=pagination.CURSOR_PATTERN, description="next_cursor of the previous page")
    ] = None


_DATE_SCHEMA = {"type": "string", "format": "date", "pattern": DATE_PATTERN}


def _parameters() -> list[dict[str, Any]]:
    """``CurrentQuery`` as OpenAPI query parameters (what FastAPI would have written for them)."""
    props = CurrentQuery.model_json_schema()["properties"]
    out = []
    for name, schema in props.items():
        if name in ("date_from", "date_to"):
            schema = {"anyOf": [_DATE_SCHEMA, {"type": "null"}], "description": schema.get("description")}
        schema.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
        if schema.get("description"):
            param["description"] = schema["description"]
        out.append(param)
    return out


PARAMETERS = _parameters()
KNOWN = tuple(CurrentQuery.model_fields)


def _single(query: Mapping[str, str] | Any) -> dict[str, str]:
    """One value per name, the last one given (as PHP's $_GET keeps)."""
    items = query.multi_items() if hasattr(query, "multi_items") else list(query.items())
    return dict(items)


@dataclass(frozen=True)
class CurrentListing:
    filter: queries.TransactionFilter
    limit: int
    cursor: str | None


def current(merchant_id: str, query: Any) -> CurrentListing:
    values = _single(query)
    unknown = [name for name in values if name not in KNOWN]
    if unknown:
        names = ", ".join(repr(n[:40]) for n in unknown[:5])
        message = f"Unknown query parameter {names}: use {', '.join(KNOWN)}"
        raise Unprocessable(message, fields=[{"field": n[:40], "message": "unknown query parameter"} for n in unknown])
    for name in ("date_from", "date_to"):
        if name in values:
            try:
                _day(values[name])
            except ValueError as exc:
                raise Unprocessable(
                    f"Invalid request: {name}: {exc}", fields=[{"field": name, "message": str(exc)}]
                ) from None
    try:
        q = CurrentQuery.model_validate(values)
    except ValidationError as exc:
        errors = [e | {"loc": ("query", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        raise validation_error(RequestValidationError(errors)) from None
    flt = queries.TransactionFilter(
        merchant_id=merchant_id,
        statuses=queries.parse_statuses(q.status),
        created_from=q.created_from,
        created_to=q.created_to,
        order_id=q.order_id,
        date_from=q.date_from,
        date_to=q.date_to,
        amount_from=Decimal(q.amount_from) if q.amount_from is not None else None,
        amount_to=Decimal(q.amount_to) if q.amount_to is not None else None,
    )
    return CurrentListing(flt, q.limit, q.cursor)


# --- legacy ---------------------------------------------------------------------------------


def _refuse(name: str, message: str) -> Unprocessable:
    return Unprocessable(f"{name}: {message}", fields=[{"field": name, "message": message}])


def _integer(values: dict[str, str], name: str, default: int) -> int:
    raw = values.get(name, "")
    if raw == "":
        return default
    if _INTEGER.fullmatch(raw.strip()) is None:
        raise _refuse(name, "must be an integer")
    number = int(raw)
    if number < 0:
        raise _refuse(name, "must not be negative")
    return number


def _filter_value(values: dict[str, str], name: str) -> str | None:
    raw = values.get(name)
    return None if raw in (None, "", "0") else raw


def legacy_day(values: dict[str, str], name: str) -> date | None:
    raw = _filter_value(values, name)
    if raw is None:
        return None
    try:
        day: date = _day(raw.strip())  # a date, given text
        return day
    except ValueError as exc:
        raise _refuse(name, str(exc)) from None


def _legacy_amount(values: dict[str, str], name: str) -> Decimal | None:
    raw = _filter_value(values, name)
    if raw is None:
        return None
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise _refuse(name, "must be a number") from None
    if not value.is_finite() or abs(value.adjusted()) > 20:
        raise _refuse(name, "must be a number")
    return value


@dataclass(frozen=True)
class LegacyListing:
    filter: queries.TransactionFilter
    limit: int
    offset: int


def legacy(merchant_id: str, query: Any) -> LegacyListing:
    values = _single(query)
    status = _filter_value(values, "status")
    flt = queries.TransactionFilter(
        merchant_id=merchant_id,
        statuses=[status] if status is not None else None,
        date_from=legacy_day(values, "date_from"),
        date_to=legacy_day(values, "date_to"),
        amount_from=_legacy_amount(values, "amount_from"),
        amount_to=_legacy_amount(values, "amount_to"),
    )
    limit = min(_integer(values, "limit", LEGACY_DEFAULT_LIMIT), LEGACY_MAX_LIMIT)
    return LegacyListing(flt, limit, _integer(values, "offset", 0))
