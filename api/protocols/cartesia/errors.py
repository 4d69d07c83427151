"""Cartesia's refusals in its own shapes: its HTTP error object (`http_error`, applied by
api/protocols/http_errors.py on Cartesia's paths) and the machine-readable `error_code` its socket errors carry too
(`responses.py:error_event`)."""

from __future__ import annotations

from typing import Any

from api.protocols.http_errors import DialectErrors, HttpError, status_title


def error_code(code: str) -> str:
    """Ours as Cartesia's machine-readable `error_code` (its documented one where it has one, else ours, lower)."""
    return {"TOO_MANY_CONCURRENT_REQUESTS": "concurrency_limited"}.get(code, code.lower())


def http_error(err: HttpError) -> dict[str, Any]:
    """Cartesia's HTTP error object (API version 2026-03-01): `error_code`, `title`, `message`, `request_id`."""
    return {
        "error_code": error_code(err.code),
        "title": status_title(err.status),
        "message": err.message,
        "request_id": err.request_id,
    }


def _is_cartesia_path(path: str) -> bool:
    return path.startswith(("/tts/", "/voices/")) or path == "/voices"


HTTP_ERRORS = DialectErrors("cartesia", _is_cartesia_path, http_error)
