"""`POST /v1/tts/admin/voices/pin` (admin key): pin voices on the running server.

Generates once per voice that has no stored globals (or the ones named), switches the live voices to the pinned
ones at once (later requests carry those 32 globals in their prompt: one timbre, no global-token steps), and, with
`save`, writes the same voices.json the `python -m services.deployment.pin_voices` command writes into the model directory.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Pinning
from api.errors import ApiError
from services.errors import ServiceError

router = APIRouter(tags=["admin"], dependencies=[Admin])


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voices: list[str] | None = Field(
        None, description="Voice ids to pin; default: every voice without globals."
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Sampling seed of the pinning generation.")
    save: bool = Field(False, description="Also write voices.json into the model directory.")


@router.post("/v1/tts/admin/voices/pin", summary="Pin voices to their 32 global tokens (admin)")
async def pin_voices(body: PinRequest, pinning: Pinning) -> JSONResponse:
    try:
        result = await pinning.pin(body.voices, seed=body.seed, save=body.save)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None
    return JSONResponse(
        {
            "pinned": {voice_id: list(tokens) for voice_id, tokens in result.pinned.items()},
            "saved_to": None if result.saved_to is None else str(result.saved_to),
            "voices_json": result.document,
        }
    )
