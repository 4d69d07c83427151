"""What every socket front end needs besides its wire format: a context's synthesis request from its fields, and a
session on an accepted socket, both through the one session entrance (services/sessions/entrance.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import WebSocket
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocketState

from api.deps import Services
from api.errors import ApiError
from api.ws_connection import Admitted, ContextError, socket_caller
from processing.lexicon import DictionaryLocator
from processing.voice_description import VoiceAttributes
from services.access import ApiKeyRecord
from services.errors import ServiceError
from services.pipeline.speech import SpeechRequest
from services.pipeline.synthesis import SamplingOptions, SynthesisRequest
from services.pipeline.timestamps import TimestampsKind
from services.sessions.entrance import SessionShape
from services.sessions.wire import SessionWire
from services.sessions.ws_outbox import Outbox
from services.sessions.ws_session import WsSession

M = TypeVar("M", bound=BaseModel)


def parse_message(
    raw: str,
    model: type[M],
    *,
    text_field: str,
    closes: Callable[[dict[str, Any]], bool] = lambda data: False,
) -> M:
    """One client frame of a dialect: a JSON object validated by `model`; a refusal names the message's
    `context_id` so the error reaches the right context (`TEXT_TOO_LONG` when `text_field` is over the limit), and
    says whether the message ended its context (`closes`, from the raw fields)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: malformed, or an integer over Python's digit limit
        raise ApiError(
            "INVALID_JSON",
            "The message is not valid JSON (or holds a number too long to read); send "
            "one JSON object per text frame.",
        ) from None
    if not isinstance(data, dict):
        raise ApiError("VALIDATION_ERROR", "A message must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        too_long = field == text_field and first.get("type") == "string_too_long"
        cid = data.get("context_id") if isinstance(data.get("context_id"), str) else None
        raise ContextError(
            "TEXT_TOO_LONG" if too_long else "VALIDATION_ERROR",
            f"Invalid '{field}': {first.get('msg')}",
            context_id=cid,
            param=field,
            closes=closes(data),
        ) from None


async def synthesis_request(
    services: Services,
    key: ApiKeyRecord,
    *,
    voice: str,
    audio_format: str,
    sample_rate: int,
    normalize: bool = True,
    speed: float | None = None,
    voice_field: str = "voice",
    timestamps: TimestampsKind | None = None,
    admit: bool = True,
    dictionaries: tuple[DictionaryLocator, ...] = (),
    voice_attributes: VoiceAttributes | None = None,
) -> SynthesisRequest:
    """A context's settings (its text arrives later); an unknown voice or a server that is not ready raises
    ApiError with the public code. `timestamps` ("word" | "character"): the aligner's events reach the wire format.
    `admit=False`: a check at connect that starts no stream, so admission neither counts nor refuses it.
    `dictionaries`: the key's pronunciation dictionaries whose alias rules the context's text gets.
    `voice_attributes`: a voice created from gender / pitch / speed labels (the dialect's own field names)."""
    settings = services.settings
    speech = SpeechRequest(
        text="",
        voice=voice,
        voice_attributes=voice_attributes,
        audio_format=audio_format,
        sample_rate=sample_rate,
        sampling=SamplingOptions.with_defaults(settings),
        stream=True,
        normalize=normalize,
        chunking=True,
        speed=None if speed in (None, 1.0) else speed,
        voice_field=voice_field,
        timestamps=timestamps,
        dictionaries=dictionaries,
    )
    try:
        return await services.sessions.context(speech, key.key_id, admit=admit)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None


async def open_session(
    websocket: WebSocket,
    services: Services,
    admission: Admitted,
    wire: SessionWire,
    *,
    max_contexts: int,
    multi: bool = True,
    dialect: str,
) -> tuple[WsSession, Outbox]:
    """Accept the admitted socket and build its session: contexts run side by side (`multi`) or one after another. A
    context opening after an earlier one's client fell silent about it supersedes it (a barge-in; README)."""
    if (
        websocket.client_state == WebSocketState.CONNECTING
    ):  # a route that read a first message accepted already
        await websocket.accept(headers=[(b"x-request-id", admission.connection_id.encode())])
    shape = SessionShape(
        dialect=dialect,
        wire=wire,
        serial=not multi,
        max_open=max_contexts if multi else 1,
        max_unfinished=max_contexts,
        supersede_after_s=services.settings.websocket.ws_supersede_after_s,
    )
    session = services.sessions.open(websocket, socket_caller(websocket, *admission), shape)
    return session, session.outbox
