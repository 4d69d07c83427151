"""Audio-flow debug routes behind the admin key: per-stage counts, losses and recent events."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.access import require_admin

router = APIRouter(tags=["debug"], dependencies=[Depends(require_admin)])


@router.get("/v1/tts/debug/stats", summary="Pipeline efficiency, losses by stage, recent events (admin)")
async def debug_stats(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.access.monitor.snapshot())


@router.post("/v1/tts/debug/reset", summary="Reset the audio-flow statistics (admin)")
async def debug_reset(request: Request) -> JSONResponse:
    request.app.state.access.monitor.reset()
    return JSONResponse({"reset": True})
