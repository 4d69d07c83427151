"""OpenAI-compatible routes: `POST /v1/audio/speech`, `GET /v1/models` (ElevenLabs' list to ElevenLabs' clients),
`GET /v1/audio/models` (`GET /v1/audio/voices`: api/protocols/native/voices.py)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.deps import Grant, Model, SettingsDep, Speech
from api.protocols.elevenlabs import models as elevenlabs_models
from api.protocols.native.routes import ERROR_RESPONSES, name_ignored_fields, respond, unknown_fields
from api.protocols.native.schemas import OpenAISpeechRequest
from api.protocols.openai.models import OPENAI_MODEL_IDS
from services.model_status import ServingModel

router = APIRouter(tags=["openai"])

MODEL_IDS = OPENAI_MODEL_IDS
_CREATED = int(time.time())


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


def _model_list(model: ServingModel) -> list[dict[str, Any]]:
    return [
        {
            "id": model_id,
            "object": "model",
            "created": _CREATED,
            "owned_by": "spark-tts-service",
            "root": model.model_version,
        }
        for model_id in MODEL_IDS
    ]


@router.get("/v1/models", summary="Models this server offers (OpenAI's list; ElevenLabs' to its clients)")
async def models(request: Request, model: Model) -> JSONResponse:
    if elevenlabs_models.is_elevenlabs_client(request.headers):  # one path, two vendors' answers
        return JSONResponse(elevenlabs_models.model_list(model.model_version))
    return JSONResponse({"object": "list", "data": _model_list(model)})


@router.get("/v1/audio/models", summary="Speech models (OpenAI list format; Open WebUI reads `models`)")
async def audio_models(model: Model) -> JSONResponse:
    # Open WebUI's OpenAI TTS engine asks `{base}/audio/models` and reads `models`; OpenAI-style clients read `data`.
    listed = _model_list(model)
    return JSONResponse({"object": "list", "data": listed, "models": listed})
