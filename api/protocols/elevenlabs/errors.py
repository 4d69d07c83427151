"""ElevenLabs' refusals in its own shapes.

- HTTP (`http_error`, applied by api/protocols/http_errors.py on ElevenLabs' paths): `{"detail": {"type", "code",
  "message", "status", "request_id", "param"}}`, with our HTTP status kept.
- A socket refused (`socket_refusal`), the shape it documents for the message sent before it closes one (the SDK's
  `TextToDialogueWebsocketError`; its sockets answer `{"message", "error": "input_timeout_exceeded", "code": 1008}`):
  a readable `message`, a machine-readable `error` id, the close `code` that follows, and `param` when one field is
  at fault. Errors of a context inside a session are `responses.py`'s."""

from __future__ import annotations

import json
from typing import Any

from api.errors import ApiError
from api.protocols.http_errors import DialectErrors, HttpError

# The missing-key message in the words of ElevenLabs' clients (ours names Authorization and X-API-Key).
MISSING_KEY = (
    "No API key: send it in the 'xi-api-key' header (or 'Authorization: Bearer <key>', or 'X-API-Key')."
)


def ours_to_elevenlabs_message(code: str, message: str) -> str:
    return MISSING_KEY if code == "INVALID_API_KEY" and message.startswith("No API key") else message


def socket_refusal(err: ApiError, close_code: int) -> str:
    """The message refusing a connection (a key missing or wrong, a cap, an unknown voice), sent just before
    `close_code`."""
    body: dict[str, Any] = {
        "message": ours_to_elevenlabs_message(err.code, err.message),
        "error": err.code.lower(),
        "code": close_code,
    }
    if err.param is not None:
        body["param"] = err.param
    return json.dumps(body)


# Our codes as ElevenLabs' documented (type, code) pairs (elevenlabs.io/docs/eleven-api/resources/errors).
_ERRORS: dict[str, tuple[str, str]] = {
    "VALIDATION_ERROR": ("validation_error", "invalid_parameters"),
    "TEXT_TOO_LONG": ("validation_error", "text_too_long"),
    "INVALID_FORMAT": ("validation_error", "invalid_output_format"),
    "INVALID_SPEAKER": ("not_found", "voice_not_found"),
    "VOICE_NOT_FOUND": ("not_found", "voice_not_found"),
    "NOT_FOUND": ("not_found", "not_found"),
    "INVALID_JSON": ("invalid_request", "malformed_json"),
    "UNSUPPORTED_MEDIA_TYPE": ("invalid_request", "invalid_content_type"),
    "PAYLOAD_TOO_LARGE": ("invalid_request", "request_too_large"),
    "REQUEST_TIMEOUT": ("invalid_request", "bad_request"),
    "METHOD_NOT_ALLOWED": ("invalid_request", "bad_request"),
    "INVALID_API_KEY": ("authentication_error", "invalid_api_key"),
    "EXPIRED_API_KEY": ("authentication_error", "invalid_api_key"),
    "KEY_SUSPENDED": ("authorization_error", "forbidden"),
    "FORBIDDEN": ("authorization_error", "forbidden"),
    "INSUFFICIENT_CREDITS": ("payment_required", "insufficient_credits"),
    "RATE_LIMIT_EXCEEDED": ("rate_limit_error", "rate_limit_exceeded"),
    "TOO_MANY_CONCURRENT_REQUESTS": ("rate_limit_error", "concurrent_limit_exceeded"),
    "SERVER_OVERLOADED": ("rate_limit_error", "system_busy"),
}
_BY_STATUS = {
    400: ("validation_error", "invalid_parameters"),
    401: ("authentication_error", "unauthorized"),
    402: ("payment_required", "insufficient_credits"),
    403: ("authorization_error", "forbidden"),
    404: ("not_found", "not_found"),
    409: ("conflict", "conflict"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("service_unavailable", "service_unavailable"),
}
# `status` is the legacy field older clients match on; the help centre names these two differently from `code`.
_LEGACY_STATUS = {"insufficient_credits": "quota_exceeded", "text_too_long": "max_character_limit_exceeded"}


def http_error(err: HttpError) -> dict[str, Any]:
    """`{"detail": {"type", "code", "message", "status", "request_id", "param"}}`; the HTTP status stays ours."""
    error_type, code = _ERRORS.get(err.code) or _BY_STATUS.get(
        err.status, ("internal_error", "internal_error")
    )
    message = err.message
    if err.code == "INVALID_API_KEY" and err.message.startswith("No API key"):
        code, message = "missing_api_key", MISSING_KEY
    return {
        "detail": {
            "type": error_type,
            "code": code,
            "message": message,
            "status": _LEGACY_STATUS.get(code, code),
            "request_id": err.request_id,
            "param": err.param,
        }
    }


# The first path segments of ElevenLabs' API (its SDK's routes; `/v1/models` is OpenAI's too, and every `/v2/` path):
# a refusal there, an unknown route included, is in ElevenLabs' shape.
_V1_SEGMENTS = frozenset(
    "assets audio-effects audio-isolation audio-native convai dubbing flows forced-alignment history music "
    "productions pronunciation-dictionaries service-accounts shared-voices similar-voices single-use-token "
    "sound-generation speech-engine speech-to-speech speech-to-text studio text-to-dialogue text-to-speech "
    "text-to-voice usage user voice-changer voices workspace workspaces".split()
)


def _is_http_route(path: str) -> bool:
    version, _, rest = path.lstrip("/").partition("/")
    return version == "v2" or (version == "v1" and rest.partition("/")[0] in _V1_SEGMENTS)


HTTP_ERRORS = DialectErrors("elevenlabs", _is_http_route, http_error)
