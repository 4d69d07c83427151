"""OpenAI-compatible routes: `POST /v1/audio/speech`, `GET /v1/audio/voices`, `GET /v1/models`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from api.access import AccessGrant, require_access
from api.routes.tts import SynthesisParams, start_synthesis
from api.schemas import OpenAISpeechRequest
from services.synthesis import SamplingOptions

router = APIRouter(tags=["openai"])

# OpenAI's speech endpoint answers 24 kHz for every format; clients of `pcm` assume it.
OPENAI_SAMPLE_RATE = 24_000
MODEL_IDS = ("spark-tts", "tts-1", "tts-1-hd")
_CREATED = int(time.time())


@router.post("/v1/audio/speech", summary="OpenAI-compatible speech (audio bytes or SSE)")
async def speech(body: OpenAISpeechRequest, request: Request, grant: AccessGrant = Depends(require_access)) -> Response:
    settings = request.app.state.settings
    sampling = SamplingOptions(
        temperature=settings.default_temperature, top_k=settings.default_top_k, top_p=settings.default_top_p,
        max_tokens=settings.default_max_tokens, repetition_penalty=settings.default_repetition_penalty, seed=None,
    )
    params = SynthesisParams(
        text=body.input, speaker=body.voice_name, audio_format=body.response_format, sample_rate=OPENAI_SAMPLE_RATE,
        want_sr=True, stream=True, normalize=True, chunking=True, sampling=sampling,
        speed=None if body.speed == 1.0 else body.speed, text_field="input", voice_field="voice",
    )
    return await start_synthesis(request, params, grant, sse=body.stream_format == "sse")


@router.get("/v1/audio/voices", summary="Voices this server offers")
async def voices(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    listed = [] if runtime.voices is None else runtime.voices.list()
    return JSONResponse({"voices": listed, "default": None if runtime.voices is None else runtime.voices.default_voice_id})


@router.get("/v1/models", summary="Models this server offers (OpenAI format)")
async def models(request: Request) -> JSONResponse:
    version = request.app.state.runtime.model_version
    data = [{"id": model_id, "object": "model", "created": _CREATED, "owned_by": "spark-tts-service",
             "root": version} for model_id in MODEL_IDS]
    return JSONResponse({"object": "list", "data": data})
