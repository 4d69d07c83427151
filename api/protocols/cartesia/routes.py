"""Cartesia's HTTP routes on the same request path as ours (`api/http/respond.py:respond`): `POST /tts/bytes`, one
file (`wav`, `mp3` or `raw` with `pcm_s16le`, `pcm_mulaw`) streamed as it is generated (at the device's speed: its
clients read it whole), and `POST /tts/sse`, server-sent events in the WebSocket's shapes (`chunk`, `timestamps` when
`add_timestamps`, then `done`, or `error`), paced like every played stream. Errors before
the first event are in Cartesia's shape (`requests.py:http_error`, applied by `api/protocols/http_errors.py`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from api.delivery import Delivery, Framing
from api.deps import Grant, SettingsDep, Speech
from api.http.fields import MAX_TEXT_CHARS, reject_control_characters
from api.http.respond import ERROR_RESPONSES, respond
from api.protocols.cartesia.requests import GenerationConfig, OutputFormat, Rate, Voice
from api.protocols.cartesia.responses import (
    Event,
    chunk_event,
    done_event,
    error_event,
    f32,
    timestamps_event,
)
from services.pipeline.speech import SpeechRequest
from services.pipeline.synthesis import SamplingOptions
from services.pipeline.timestamps import TimestampsKind

router = APIRouter(tags=["cartesia"])


class BytesFormat(Rate):
    container: Literal["raw", "wav", "mp3"] = "wav"
    encoding: Literal["pcm_s16le", "pcm_mulaw"] | None = None  # pcm_f32le is streamed (WebSocket) only

    def ours(self) -> tuple[str, int]:
        if self.container == "raw" and self.encoding == "pcm_mulaw":
            return "mulaw", 8000
        return ("pcm" if self.container == "raw" else self.container), self.sample_rate


class _SpeechBody(BaseModel):
    """What both routes' bodies share; each names its own `output_format`."""

    model_config = ConfigDict(extra="ignore")
    transcript: str = Field(..., min_length=1)
    model_id: str | None = None  # accepted; there is one model
    voice: Voice
    language: str | None = None  # accepted; the normaliser detects the script
    generation_config: GenerationConfig | None = None

    @field_validator("transcript")
    @classmethod
    def _text(cls, value: str) -> str:
        if (
            len(value) > MAX_TEXT_CHARS
        ):  # TEXT_TOO_LONG (413), as a text over the limit is on every other route
            raise PydanticCustomError(
                "text_too_long",
                f"{len(value)} characters long; at most {MAX_TEXT_CHARS} are accepted",
                {"error_code": "TEXT_TOO_LONG"},
            )
        return reject_control_characters(value, "transcript")


class BytesBody(_SpeechBody):
    output_format: BytesFormat = BytesFormat()


class SseBody(_SpeechBody):
    output_format: OutputFormat = OutputFormat()  # raw only, as on the WebSocket
    add_timestamps: bool = False
    use_normalized_timestamps: bool = (
        False  # the words the model spoke (numbers spelt out) instead of the text's
    )
    context_id: str | None = Field(None, max_length=128)


def _sse_framing(body: SseBody) -> Framing:
    wide = body.output_format.encoding == "pcm_f32le"

    async def events(items: AsyncIterator[Any], delivery: Delivery) -> AsyncIterator[bytes]:
        async for item in items:
            if isinstance(item, bytes):
                event = chunk_event(f32(item) if wide else item, body.context_id)
            elif words := (
                item.normalized if body.use_normalized_timestamps else item.words
            ):  # TimestampsEvent
                event = timestamps_event(words, body.context_id)
            else:
                continue
            yield _sse(event)
        if delivery.final_status == "completed":
            yield _sse(done_event(body.context_id))
        else:
            code = delivery.job.error.code if delivery.job.error else "STREAMING_ERROR"
            yield _sse(error_event(code, "The stream ended early.", body.context_id))

    return "text/event-stream", events


def _sse(event: Event) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def _speech(
    body: _SpeechBody,
    settings: Any,
    audio_format: str,
    rate: int,
    *,
    stream: bool,
    timestamps: TimestampsKind | None = None,
    read_whole: bool = False,
) -> SpeechRequest:
    speed = body.generation_config.speed if body.generation_config else None
    return SpeechRequest(
        text=body.transcript,
        voice=body.voice.id,
        voice_attributes=body.voice.attributes(),
        audio_format=audio_format,
        sample_rate=rate,
        sampling=SamplingOptions.with_defaults(settings),
        stream=stream,
        read_whole=read_whole,
        normalize=True,
        chunking=True,
        speed=None if speed in (None, 1.0) else speed,
        text_field="transcript",
        voice_field="voice.id",
        timestamps=timestamps,
    )


@router.post("/tts/sse", responses=ERROR_RESPONSES, summary="Cartesia: speech as server-sent events")
async def tts_sse(
    body: SseBody, request: Request, service: Speech, grant: Grant, settings: SettingsDep
) -> Response:
    output = body.output_format
    speech = _speech(
        body,
        settings,
        output.audio_format,
        output.rate,
        stream=True,
        timestamps="word" if body.add_timestamps else None,
    )
    return await respond(request, speech, service, grant, framing=_sse_framing(body))


@router.post("/tts/bytes", responses=ERROR_RESPONSES, summary="Cartesia: speech as one streamed file")
async def tts_bytes(
    body: BytesBody, request: Request, service: Speech, grant: Grant, settings: SettingsDep
) -> Response:
    """Streamed as it is generated (chunked), as Cartesia does: a WAV's header says 'length unknown'; a client that
    hangs up stops the generation like on every streamed route. Not paced to playback (`read_whole`): its clients
    read the file whole (Pipecat's CartesiaHttpTTSService), so it comes at the device's speed."""
    audio_format, rate = body.output_format.ours()
    speech = _speech(body, settings, audio_format, rate, stream=True, read_whole=True)
    return await respond(request, speech, service, grant)
