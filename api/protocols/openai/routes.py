"""OpenAI-compatible routes: `POST /v1/audio/speech`, `GET /v1/audio/models` (`GET /v1/models`, which ElevenLabs'
clients share: api/service/models.py; `GET /v1/audio/voices`: api/protocols/native/voices.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.deps import Grant, Model, SettingsDep, Speech
from api.http.fields import name_ignored_fields, unknown_fields
from api.http.respond import ERROR_RESPONSES, respond
from api.protocols.openai.models import model_list
from api.protocols.openai.requests import OpenAISpeechRequest

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/audio/speech", responses=ERROR_RESPONSES, summary="OpenAI-compatible speech (audio bytes or SSE)"
)
async def speech(
    body: OpenAISpeechRequest, request: Request, service: Speech, grant: Grant, settings: SettingsDep
) -> Response:
    ignored = unknown_fields(body)
    response = name_ignored_fields(
        await respond(
            request,
            body.to_speech_request(settings),
            service,
            grant,
            sse=body.stream_format == "sse",
            how_to_stream='"stream": true, a response_format other than wav, or "stream_format": "sse"',
        ),
        ignored,
    )
    described = body.described()
    if described is not None:
        # What `instructions` was read as (processing/voice_description.py), and the words it could not use.
        attributes = described.attributes
        response.headers["X-Voice-Description"] = attributes.header() or "none"
        if described.ignored:
            response.headers["X-Voice-Description-Ignored"] = described.ignored_header()[:1000]
    return response


@router.get("/v1/audio/models", summary="Speech models (OpenAI list format; Open WebUI reads `models`)")
async def audio_models(model: Model) -> JSONResponse:
    # Open WebUI's OpenAI TTS engine asks `{base}/audio/models` and reads `models`; OpenAI-style clients read `data`.
    listed = model_list(model)
    return JSONResponse({"object": "list", "data": listed, "models": listed})
