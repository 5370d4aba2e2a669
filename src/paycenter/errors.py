"""The API's envelope and its errors.

Every answer under ``/api`` is ``{"success": bool, "message": str, "data": ...}`` (the old system's
contract). Errors add a stable machine code and, for bad fields, which field and why:
``{"success": false, "message": "...", "error": {"code": "validation_error", "fields": [...]}}``.
Old clients read ``success`` and ``message`` and ignore the rest.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from paycenter import versions
from paycenter.storable import clean_text

log = logging.getLogger("paycenter.errors")


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.fields = fields
        self.headers = headers


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "invalid_state"


class Unprocessable(ApiError):
    status_code = 422
    code = "validation_error"


# --- schemas used in the OpenAPI document --------------------------------------------------


class FieldError(BaseModel):
    field: str
    message: str


class ErrorInfo(BaseModel):
    code: str
    fields: list[FieldError] | None = None


class ErrorEnvelope(BaseModel):
    success: bool = False
    message: str
    error: ErrorInfo


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the error statuses a route can return (an
    authenticated route can always be rate limited: 429 comes with 401)."""
    if 401 in codes and 429 not in codes:
        codes = (*codes, 429)
    descriptions = {
        400: "Malformed request",
        401: "Missing, unknown or revoked API token",
        404: "No such payment for this merchant",
        409: "The payment's state does not allow this, or an Idempotency-Key was reused",
        413: "Request body too large",
        422: "Invalid field values",
        429: "Too many requests (see Retry-After)",
    }
    return {c: {"model": ErrorEnvelope, "description": descriptions.get(c, "Error")} for c in codes}


def envelope(data: Any = None, message: str = "OK") -> dict[str, Any]:
    return {"success": True, "message": message, "data": data}


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict[str, Any]:
    # Messages may quote what was sent (a key, a field name): cleaned, so that quoting a lone
    # surrogate cannot make the refusal itself fail to encode.
    error: dict[str, Any] = {"code": code}
    if fields:
        error["fields"] = [{k: clean_text(str(v)) for k, v in f.items()} for f in fields]
    return {"success": False, "message": clean_text(message), "error": error}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.fields),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _clean_message(msg: str) -> str:
    # Pydantic prefixes messages of our own validators with "Value error, ".
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError("Request body is not valid JSON", code="malformed_json", status_code=400)
    fields = [
        {"field": _field_name(tuple(e.get("loc", ()))), "message": _clean_message(e.get("msg", ""))} for e in errors
    ]
    if any(
        f["field"] == "body" and e.get("type") in ("missing", "model_attributes_type", "dict_type")
        for f, e in zip(fields, errors, strict=True)
    ):
        return Unprocessable("Request body must be a JSON object", fields=fields)
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return Unprocessable(f"Invalid request: {summary}", fields=fields)


# The old API answered bad input and refused state changes (a cancel of a paid payment) with 400
# (legacy-api.md §1): merchants on the 'legacy' version get that code, with the same body.
LEGACY_STATUS = {409: 400, 422: 400}


def versioned(request: Request, response: JSONResponse) -> JSONResponse:
    """The refusal in the status code of the request's API version (``paycenter.versions``)."""
    if versions.is_legacy(request.scope) and response.status_code in LEGACY_STATUS:
        response.status_code = LEGACY_STATUS[response.status_code]
    return response


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return versioned(request, error_response(exc))

    @app.exception_handler(versions.UnknownVersion)
    async def _unknown_version(_request: Request, exc: versions.UnknownVersion) -> JSONResponse:
        return error_response(ApiError(str(exc), code="unknown_api_version"))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return versioned(request, error_response(validation_error(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 400 and "parsing the body" in message:
            # FastAPI's answer to a body its JSON parser gave up on (e.g. nested too deep).
            return error_response(ApiError("Request body is not valid JSON", code="malformed_json"))
        if exc.status_code == 404 and message == "Not Found":
            message = "Not found"
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "Internal server error"), status_code=500)
