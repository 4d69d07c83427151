"""`GET /v1/models`: one path, two vendors' lists. ElevenLabs' clients (api/protocols/elevenlabs/models.py says how
one is told) get ElevenLabs' list; every other client OpenAI's (api/protocols/openai/models.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import Model
from api.protocols.elevenlabs import models as elevenlabs
from api.protocols.openai import models as openai

router = APIRouter(tags=["openai"])


@router.get("/v1/models", summary="Models this server offers (OpenAI's list; ElevenLabs' to its clients)")
async def models(request: Request, model: Model) -> JSONResponse:
    if elevenlabs.is_elevenlabs_client(request.headers):
        return JSONResponse(elevenlabs.model_list(model.model_version))
    return JSONResponse({"object": "list", "data": openai.model_list(model)})
