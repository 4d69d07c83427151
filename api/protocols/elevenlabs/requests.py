"""ElevenLabs' wire vocabulary: the query parameters of a connection, the client messages, and the error body of its
HTTP routes (output formats: `formats.py`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.pronunciation_schemas import LocatorsField
from api.protocols.common import parse_message
from api.protocols.elevenlabs.formats import SOCKET_CODECS, OutputFormat, parse_output_format
from api.protocols.http_errors import DialectErrors, HttpError
from api.protocols.native.schemas import MAX_TEXT_CHARS, Speed, reject_control_characters
from api.voice_attributes import Level
from processing.voice_description import VoiceAttributes, attributes_or_none

MAX_CONTEXTS = 5  # per socket, as ElevenLabs documents
# The missing-key message in the words of ElevenLabs' clients (ours names Authorization and X-API-Key).
MISSING_KEY = (
    "No API key: send it in the 'xi-api-key' header (or 'Authorization: Bearer <key>', or 'X-API-Key')."
)


def ours_to_elevenlabs_message(code: str, message: str) -> str:
    return MISSING_KEY if code == "INVALID_API_KEY" and message.startswith("No API key") else message


class ConnectionParams(BaseModel):
    """The query string of `.../multi-stream-input` and `.../stream-input` (unknown parameters are ignored, as
    ElevenLabs does)."""

    model_config = ConfigDict(extra="ignore")

    output_format: str = "mp3_44100_128"
    model_id: str | None = None  # accepted; there is one model
    language_code: str | None = None  # accepted; the normaliser detects the script
    enable_logging: bool = True  # accepted; the request log is the deployment's choice
    enable_ssml_parsing: bool = False  # True: the SSML subset of processing/ssml.py (breaks are silence)
    apply_text_normalization: Literal["auto", "on", "off"] = "auto"
    auto_mode: bool = False  # True: each message is a complete sentence, spoken at once (as if flushed)
    sync_alignment: bool = False  # True: alignment times from the start of the context (see the README)
    inactivity_timeout: int = Field(20, ge=1, le=180)
    xi_api_key: str | None = None  # older clients send the key here
    authorization: str | None = None

    @property
    def normalize(self) -> bool:
        return self.apply_text_normalization != "off"

    def output(self) -> OutputFormat:
        return parse_output_format(self.output_format, SOCKET_CODECS)


class VoiceSettings(BaseModel):
    """`speed` (our speed) and the voice attributes `gender`, `pitch`, `speed_level` (an extension: a voice created
    from Spark-TTS's labels) change the speech; the others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    speed: Speed | None = None
    gender: Literal["female", "male"] | None = None
    pitch: Level | None = None
    speed_level: Level | None = None
    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None

    def voice_attributes(self) -> VoiceAttributes | None:
        return attributes_or_none(self.gender, self.pitch, self.speed_level)


class ClientMessage(LocatorsField):
    """Every client message is one shape: text to append (" " opens a context, "" is a keep-alive), and flags.
    `pronunciation_dictionary_locators` on the message that opens a context (or an earlier one) apply to it."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    context_id: str | None = Field(None, max_length=128)
    voice_settings: VoiceSettings | None = None
    generation_config: dict[str, Any] | None = None  # chunk_length_schedule: accepted, ignored
    flush: bool = False
    try_trigger_generation: bool = False  # older clients: same as flush
    close_context: bool = False
    immediate: bool = False  # with close_context: cancel instead of finishing (a vendor extension)
    close_socket: bool = False
    xi_api_key: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else reject_control_characters(value)


def parse_client_message(raw: str) -> ClientMessage:
    return parse_message(raw, ClientMessage, text_field="text", closes=ends_context)


def ends_context(data: dict[str, Any]) -> bool:
    """`close_context` (or `close_socket`, every context) ends the message's context."""
    return data.get("close_context") is True or data.get("close_socket") is True


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
