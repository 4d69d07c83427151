"""The error envelope `{"error": {"message", "type", "param", "code"}}` and the handlers that produce it.

Every failure the API can return goes through here, FastAPI's own validation errors, unknown routes and
methods, bodies that are not JSON and oversize bodies included.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.form_body import came_as_form
from services.errors import ERROR_CODES, ServiceError

logger = logging.getLogger("api.errors")


class ApiError(Exception):
    """Raise anywhere under a route to answer with the envelope."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        default_status, error_type = ERROR_CODES.get(code, (500, "server_error"))
        self.code = code
        self.message = message
        self.param = param
        self.status = status or default_status
        self.error_type = error_type
        self.headers = headers or {}

    @classmethod
    def from_service(cls, exc: ServiceError) -> ApiError:
        """A service refusal in the envelope (429s and 503s keep their Retry-After)."""
        headers = dict(exc.headers)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return cls(exc.code, exc.message, param=exc.param, status=exc.status, headers=headers)

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.code, self.message, param=self.param, error_type=self.error_type)


def error_envelope(
    code: str, message: str, *, param: str | None = None, error_type: str | None = None
) -> dict[str, Any]:
    if error_type is None:
        error_type = ERROR_CODES.get(code, (500, "server_error"))[1]
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(error: ApiError, extra_headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**error.headers, **(extra_headers or {})}
    if error.status == 503 and not any(k.lower() == "retry-after" for k in headers):
        headers["Retry-After"] = "5"  # every 503 says when to come back
    return JSONResponse(error.envelope(), status_code=error.status, headers=headers)


def _field_name(loc: Sequence[object]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _validation_to_api_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if not errors:
        return ApiError("VALIDATION_ERROR", "The request is invalid.")
    first = errors[0]
    kind = first.get("type", "")
    field = _field_name(first.get("loc", ()))
    if kind == "json_invalid":
        return ApiError("INVALID_JSON", "The request body is not valid JSON; send a JSON object.", param=None)
    if kind in ("model_attributes_type", "dict_type") and field is None:
        return ApiError("VALIDATION_ERROR", "The request body must be a JSON object.")
    if kind == "missing" and field is None:
        return ApiError("VALIDATION_ERROR", "The request body is empty; send a JSON object.")
    if kind == "missing":
        return ApiError("VALIDATION_ERROR", f"Field '{field}' is required.", param=field)
    # Custom validators put a full sentence in msg (prefixed 'Value error, ').
    detail = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    ctx_code = (first.get("ctx") or {}).get("error_code") if isinstance(first.get("ctx"), dict) else None
    code = ctx_code if isinstance(ctx_code, str) and ctx_code in ERROR_CODES else "VALIDATION_ERROR"
    if field in ("text", "input") and "at most" in detail and "character" in detail:
        code = "TEXT_TOO_LONG"
    message = f"Invalid '{field}': {detail}" if field else detail
    if len(errors) > 1:
        others = sorted({f for e in errors[1:] if (f := _field_name(e.get("loc", ())))} - {field})
        if others:
            message += f" (also invalid: {', '.join(others)})"
    return ApiError(code, message, param=field)


def body_validation_error(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """A body's validation errors (pydantic's, `loc` relative to the body) as the envelope a JSON body's get."""
    return _validation_to_api_error(
        RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(ApiError.from_service(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        body_error = any(e.get("loc", ("",))[0] == "body" for e in exc.errors())
        if (
            body_error
            and request.method in ("POST", "PUT", "PATCH")
            and "json" not in content_type.lower()
            and not came_as_form(request)
        ):
            shown = content_type or "none"
            return error_response(
                ApiError(
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"Invalid 'Content-Type': {shown}; send the body as JSON with Content-Type: application/json.",
                    param="Content-Type",
                )
            )
        return error_response(_validation_to_api_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = ApiError(
                "NOT_FOUND", f"No route {request.method} {request.url.path}. See /docs for the API."
            )
        elif exc.status_code == 405:
            err = ApiError(
                "METHOD_NOT_ALLOWED", f"Method {request.method} is not allowed on {request.url.path}."
            )
        elif exc.status_code == 413:
            err = ApiError("PAYLOAD_TOO_LARGE", str(exc.detail))
        elif exc.status_code == 415:
            err = ApiError("UNSUPPORTED_MEDIA_TYPE", str(exc.detail))
        elif exc.status_code == 400 and isinstance(exc.__cause__, UnicodeError):
            # FastAPI's body parser: bytes that are not UTF-8 (nor UTF-16/32) are not JSON text (RFC 8259 §8.1)
            err = ApiError(
                "INVALID_JSON",
                "The request body is not valid JSON: it is not UTF-8 text; send a JSON "
                "object encoded as UTF-8.",
            )
        else:
            code = {
                400: "VALIDATION_ERROR",
                401: "INVALID_API_KEY",
                403: "FORBIDDEN",
                503: "SERVICE_UNAVAILABLE",
            }.get(exc.status_code, "INTERNAL_ERROR")
            err = ApiError(code, str(exc.detail), status=exc.status_code)
        return error_response(err, dict(exc.headers or {}))

    @app.exception_handler(json.JSONDecodeError)
    async def _json_error(_: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(ApiError("INVALID_JSON", f"The request body is not valid JSON: {exc.msg}."))

    @app.exception_handler(Exception)
    async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"error_class": exc.__class__.__name__})
        return error_response(ApiError("INTERNAL_ERROR", "An internal error occurred; it has been logged."))
