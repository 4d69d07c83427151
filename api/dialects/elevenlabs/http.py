"""ElevenLabs' HTTP routes on the same request path as ours (`api/routes/tts.py:respond`): `POST
/v1/text-to-speech/{voice_id}` (a complete file) and `.../stream` (chunked audio), and `GET /v1/voices` in
ElevenLabs' shape. The key comes from `xi-api-key` (or our headers). Errors are in ElevenLabs' shape
(`messages.py:http_error`, applied by `api/dialects/http_errors.py`)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, field_validator

from api.deps import Grant, Library, Model, OptionalVoiceCaller, SettingsDep, Speech
from api.dialects.elevenlabs import timed
from api.dialects.elevenlabs.messages import VoiceSettings, parse_output_format
from api.pronunciation_schemas import LocatorsField
from api.routes.tts import ERROR_RESPONSES, respond
from api.schemas import MAX_TEXT_CHARS, reject_control_characters
from services.pipeline.speech import SpeechRequest
from services.pipeline.synthesis import SamplingOptions
from shared.settings import Settings

router = APIRouter(tags=["elevenlabs"])


class TextToSpeechBody(LocatorsField):
    """Only `text` (SSML read as docs/api/ssml.md says), `voice_settings` (`speed`, and `gender` / `pitch` /
    `speed_level`), `seed`, `apply_text_normalization` and `pronunciation_dictionary_locators` change the speech;
    `model_id`,
    `language_code`, `previous_text`, `next_text`, `previous_request_ids`, `next_request_ids` are accepted and
    ignored."""

    model_config = ConfigDict(extra="ignore")
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    model_id: str | None = None
    voice_settings: VoiceSettings | None = None
    seed: int | None = Field(None, ge=0, le=4_294_967_295)
    apply_text_normalization: str = "auto"

    @field_validator("text")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        # A validation error (400 in ElevenLabs' shape), not an exception from inside the route (a 500).
        return reject_control_characters(value)

    def to_speech_request(
        self, settings: Settings, voice_id: str, output_format: str, *, stream: bool, timed: bool = False
    ) -> SpeechRequest:
        output = parse_output_format(output_format)
        speed = self.voice_settings.speed if self.voice_settings else None
        return SpeechRequest(
            text=self.text,
            voice=voice_id,
            voice_attributes=self.voice_settings.voice_attributes() if self.voice_settings else None,
            audio_format=output.audio_format,
            sample_rate=output.sample_rate,
            sampling=SamplingOptions.with_defaults(settings, seed=self.seed),
            stream=stream,
            normalize=self.apply_text_normalization != "off",
            chunking=True,
            speed=None if speed in (None, 1.0) else speed,
            voice_field="voice_id",
            timestamps="character" if timed else None,
            dictionaries=self.locators(),
        )


@router.post(
    "/v1/text-to-speech/{voice_id}", responses=ERROR_RESPONSES, summary="ElevenLabs: speech as a file"
)
async def text_to_speech(
    voice_id: str,
    body: TextToSpeechBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    return await respond(
        request, body.to_speech_request(settings, voice_id, output_format, stream=False), service, grant
    )


@router.post(
    "/v1/text-to-speech/{voice_id}/stream", responses=ERROR_RESPONSES, summary="ElevenLabs: speech streamed"
)
async def text_to_speech_stream(
    voice_id: str,
    body: TextToSpeechBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    return await respond(
        request, body.to_speech_request(settings, voice_id, output_format, stream=True), service, grant
    )


@router.post(
    "/v1/text-to-speech/{voice_id}/with-timestamps",
    responses=ERROR_RESPONSES,
    summary="ElevenLabs: speech as base64 with character timings",
)
async def text_to_speech_with_timestamps(
    voice_id: str,
    body: TextToSpeechBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    speech = body.to_speech_request(settings, voice_id, output_format, stream=False, timed=True)
    return await respond(request, speech, service, grant, timed=timed.complete)


@router.post(
    "/v1/text-to-speech/{voice_id}/stream/with-timestamps",
    responses=ERROR_RESPONSES,
    summary="ElevenLabs: speech streamed as JSON lines with character timings",
)
async def text_to_speech_stream_with_timestamps(
    voice_id: str,
    body: TextToSpeechBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    speech = body.to_speech_request(settings, voice_id, output_format, stream=True, timed=True)
    return await respond(request, speech, service, grant, framing=timed.FRAMING)


@router.get("/v1/voices", summary="ElevenLabs: voices this key can use")
async def voices(model: Model, caller: OptionalVoiceCaller, library: Library) -> JSONResponse:
    builtin = [] if model.voices is None else [(v["id"], v["name"], "premade") for v in model.voices.list()]
    custom = [] if caller is None else [(r.voice_id, r.name, "cloned") for r in await library.list(caller)]
    return JSONResponse(
        {
            "voices": [
                {"voice_id": vid, "name": name, "category": category, "labels": {}, "settings": None}
                for vid, name, category in builtin + custom
            ]
        }
    )
