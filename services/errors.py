"""The service's refusals and failures, each with a public error code (api/errors.py maps codes to statuses)."""

from __future__ import annotations

# code -> (HTTP status, envelope type)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "VALIDATION_ERROR": (400, "invalid_request_error"),
    "TEXT_TOO_LONG": (413, "invalid_request_error"),
    "INVALID_SPEAKER": (400, "invalid_request_error"),
    "INVALID_FORMAT": (400, "invalid_request_error"),
    "INVALID_JSON": (400, "invalid_request_error"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "invalid_request_error"),
    "REQUEST_TIMEOUT": (408, "invalid_request_error"),
    "PAYLOAD_TOO_LARGE": (413, "invalid_request_error"),
    "NOT_FOUND": (404, "invalid_request_error"),
    "VOICE_NOT_FOUND": (404, "invalid_request_error"),
    "REQUEST_NOT_FOUND": (404, "invalid_request_error"),
    "REQUEST_NOT_FINISHED": (409, "invalid_request_error"),
    "JOB_NOT_RESUMABLE": (409, "invalid_request_error"),
    "INVALID_AUDIO": (400, "invalid_request_error"),
    "UNSUPPORTED_AUDIO_FORMAT": (415, "invalid_request_error"),
    "AUDIO_TOO_SHORT": (400, "invalid_request_error"),
    "AUDIO_TOO_LONG": (400, "invalid_request_error"),
    "AUDIO_SILENT": (400, "invalid_request_error"),
    "METHOD_NOT_ALLOWED": (405, "invalid_request_error"),
    "IDLE_TIMEOUT": (408, "invalid_request_error"),
    "CLIENT_CLOSED_REQUEST": (
        499,
        "invalid_request_error",
    ),  # never read: the client left (access logs show 499)
    "INVALID_API_KEY": (401, "authentication_error"),
    "EXPIRED_API_KEY": (401, "authentication_error"),
    "KEY_SUSPENDED": (403, "permission_error"),
    "INSUFFICIENT_CREDITS": (403, "permission_error"),
    "VOICE_LIMIT_REACHED": (403, "permission_error"),
    "FORBIDDEN": (403, "permission_error"),
    "RATE_LIMIT_EXCEEDED": (429, "rate_limit_error"),
    "TOO_MANY_CONCURRENT_REQUESTS": (429, "rate_limit_error"),
    "MODEL_NOT_LOADED": (503, "service_unavailable"),
    "SERVICE_UNAVAILABLE": (503, "service_unavailable"),
    "GPU_FAULT": (503, "service_unavailable"),
    "SERVER_OVERLOADED": (503, "service_unavailable"),
    "GPU_OOM": (503, "service_unavailable"),
    "CLONING_UNAVAILABLE": (501, "server_error"),
    "VOICE_LIBRARY_UNAVAILABLE": (501, "server_error"),
    "GENERATION_FAILED": (500, "server_error"),
    "GENERATION_TIMEOUT": (504, "server_error"),
    "STREAMING_ERROR": (500, "server_error"),
    "INTERNAL_ERROR": (500, "server_error"),
}


def status_of(code: str) -> int:
    """The HTTP status an error code answers with (500 for an unknown code)."""
    return ERROR_CODES.get(code, (500, ""))[0]


class ServiceError(Exception):
    """A refusal or failure with an error code from the public contract (see api/errors.py)."""

    def __init__(
        self,
        code: str,
        message: str,
        param: str | None = None,
        *,
        retry_after: int | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.retry_after = retry_after  # seconds; set on refusals worth retrying (429, 503)
        self.status = status  # only where the code's usual status does not fit
        self.headers = dict(headers or {})


class SynthesisError(ServiceError):
    """A synthesis request refused or failed (text, voice, model, GPU)."""


def voice_not_found(voice_id: str, param: str | None = None) -> ServiceError:
    shown = voice_id if len(voice_id) <= 80 else voice_id[:80] + "..."
    return ServiceError(
        "VOICE_NOT_FOUND",
        f"No voice {shown!r} for this API key; GET /v1/audio/voices lists the voices it can use.",
        param,
    )


def cloning_unavailable(reason: str) -> ServiceError:
    return ServiceError(
        "CLONING_UNAVAILABLE",
        f"Voice cloning is not available on this server: {reason}. Stored "
        "voices can still be imported (POST /v1/audio/voices with JSON global_tokens).",
    )
