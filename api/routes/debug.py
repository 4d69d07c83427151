"""Audio-flow debug routes behind the admin key: per-stage counts, losses and recent events."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Access, Admin

router = APIRouter(tags=["debug"], dependencies=[Admin])


@router.get("/v1/tts/debug/stats", summary="Pipeline efficiency, losses by stage, recent events (admin)")
async def debug_stats(access: Access) -> JSONResponse:
    return JSONResponse(access.monitor.snapshot())


@router.post("/v1/tts/debug/reset", summary="Reset the audio-flow statistics (admin)")
async def debug_reset(access: Access) -> JSONResponse:
    access.monitor.reset()
    return JSONResponse({"reset": True})
