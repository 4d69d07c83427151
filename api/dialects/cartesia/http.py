"""Cartesia's `POST /tts/bytes` on the same request path as ours (`api/routes/tts.py:respond`): the whole answer as
one file, `wav`, `mp3` or `raw` (`pcm_s16le`, `pcm_mulaw`). Errors use our envelope (see the README)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import Grant, SettingsDep, Speech
from api.dialects.cartesia.messages import GenerationConfig, Rate, Voice
from api.routes.tts import ERROR_RESPONSES, respond
from api.schemas import MAX_TEXT_CHARS, reject_control_characters
from services.pipeline.speech import SpeechRequest
from services.pipeline.synthesis import SamplingOptions

router = APIRouter(tags=["cartesia"])


class BytesFormat(Rate):
    container: Literal["raw", "wav", "mp3"] = "wav"
    encoding: Literal["pcm_s16le", "pcm_mulaw"] | None = None  # pcm_f32le is streamed (WebSocket) only

    def ours(self) -> tuple[str, int]:
        if self.container == "raw" and self.encoding == "pcm_mulaw":
            return "mulaw", 8000
        return ("pcm" if self.container == "raw" else self.container), self.sample_rate


class BytesBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    transcript: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    model_id: str | None = None  # accepted; there is one model
    voice: Voice
    output_format: BytesFormat = BytesFormat()
    language: str | None = None  # accepted; the normaliser detects the script
    generation_config: GenerationConfig | None = None

    @field_validator("transcript")
    @classmethod
    def _text(cls, value: str) -> str:
        return reject_control_characters(value, "transcript")


@router.post("/tts/bytes", responses=ERROR_RESPONSES, summary="Cartesia: speech as one file")
async def tts_bytes(body: BytesBody, request: Request, service: Speech, grant: Grant, settings: SettingsDep) -> Response:
    audio_format, rate = body.output_format.ours()
    speed = body.generation_config.speed if body.generation_config else None
    speech = SpeechRequest(text=body.transcript, voice=body.voice.id, audio_format=audio_format, sample_rate=rate,
                           sampling=SamplingOptions.with_defaults(settings), stream=False, normalize=True,
                           chunking=True, speed=None if speed in (None, 1.0) else speed, text_field="transcript",
                           voice_field="voice.id")
    return await respond(request, speech, service, grant)
