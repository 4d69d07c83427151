"""`POST /v1/tts/admin/voices/pin` (admin key): pin voices on the running server.

Generates once per voice that has no stored globals (or the ones named), switches the live voices to the pinned
ones at once (later requests carry those 32 globals in their prompt: one timbre, no global-token steps), and, with
`save`, writes the same voices.json the `python -m services.deployment.pin_voices` command writes into the model directory.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Runtime
from api.errors import ApiError
from core.voices import VoiceRegistry
from services.deployment.pin_voices import pin, pinned_voices_document, write_voices_json

router = APIRouter(tags=["admin"], dependencies=[Admin])


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voices: list[str] | None = Field(
        None, description="Voice ids to pin; default: every voice without globals."
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Sampling seed of the pinning generation.")
    save: bool = Field(False, description="Also write voices.json into the model directory.")


@router.post("/v1/tts/admin/voices/pin", summary="Pin voices to their 32 global tokens (admin)")
async def pin_voices(body: PinRequest, runtime: Runtime) -> JSONResponse:
    if not runtime.ready:
        raise ApiError(
            "MODEL_NOT_LOADED", "The model is not ready yet; retry shortly.", headers={"Retry-After": "5"}
        )
    unknown = [v for v in body.voices or [] if v not in runtime.voices.voices]
    if unknown:
        raise ApiError(
            "INVALID_SPEAKER", f"Unknown voice ids {unknown}; available: {runtime.voices.ids}", param="voices"
        )
    pinned = await pin(runtime, body.voices, seed=body.seed)
    document = pinned_voices_document(runtime, pinned)
    runtime.voices = VoiceRegistry.from_dict(document)
    saved_to = None
    if body.save:
        target = runtime.checkpoint.root / "voices.json"
        try:
            write_voices_json(target, document)
        except OSError as exc:
            raise ApiError(
                "SERVICE_UNAVAILABLE",
                f"Pinned in memory, but {target} is not writable ({exc.strerror}).",
                headers={"Retry-After": "5"},
            ) from exc
        saved_to = str(target)
    return JSONResponse(
        {
            "pinned": {voice_id: list(tokens) for voice_id, tokens in pinned.items()},
            "saved_to": saved_to,
            "voices_json": document,
        }
    )
