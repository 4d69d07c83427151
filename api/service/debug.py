"""Debug routes behind the admin key: audio-flow counts, losses and recent events; the codec scheduler's state."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Access, Admin, Model
from api.errors import ApiError

router = APIRouter(tags=["debug"], dependencies=[Admin])


@router.get("/v1/tts/debug/stats", summary="Pipeline efficiency, losses by stage, recent events (admin)")
async def debug_stats(access: Access) -> JSONResponse:
    return JSONResponse(access.monitor.snapshot())


@router.post("/v1/tts/debug/reset", summary="Reset the audio-flow statistics (admin)")
async def debug_reset(access: Access) -> JSONResponse:
    access.monitor.reset()
    return JSONResponse({"reset": True})


@router.get(
    "/v1/tts/debug/scheduler",
    summary="Codec scheduler: stats, load, admission's view, why windows wait (admin)",
)
async def debug_scheduler(model: Model, limit: int = 50) -> JSONResponse:
    if not 1 <= limit <= 1000:
        raise ApiError(
            "VALIDATION_ERROR", f"Invalid 'limit': between 1 and 1000, got {limit}.", param="limit"
        )
    snapshot = model.codec_snapshot(limit)
    if snapshot is None:
        raise ApiError(
            "MODEL_NOT_LOADED",
            f"No codec scheduler yet: it is built when the models load (state: {model.state_name}).",
        )
    return JSONResponse(snapshot)
