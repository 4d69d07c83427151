"""ElevenLabs' text-to-speech routes on the same request path as ours (`api/http/respond.py:respond`): `POST
/v1/text-to-speech/{voice_id}` and its `/stream`, `/with-timestamps` and `/stream/with-timestamps` (one handler each,
generated from `variants.py`). The key comes from `xi-api-key` (or our headers). Errors are in ElevenLabs' shape
(`requests.py:http_error`, applied by `api/protocols/http_errors.py`); the voice routes are in `voices.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Query, Request, Response
from pydantic import ConfigDict, Field, field_validator

from api.deps import Grant, SettingsDep, Speech
from api.http.fields import MAX_TEXT_CHARS, reject_control_characters
from api.http.respond import ERROR_RESPONSES, respond
from api.pronunciation_schemas import LocatorsField
from api.protocols.elevenlabs.formats import parse_output_format
from api.protocols.elevenlabs.requests import VoiceSettings
from api.protocols.elevenlabs.variants import DEFAULT_OUTPUT_FORMAT, Variant, add_variant_routes
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
            bitrate=output.bitrate,
            sampling=SamplingOptions.with_defaults(settings, seed=self.seed),
            stream=stream,
            normalize=self.apply_text_normalization != "off",
            chunking=True,
            speed=None if speed in (None, 1.0) else speed,
            voice_field="voice_id",
            timestamps="character" if timed else None,
            dictionaries=self.locators(),
        )


def _handler(variant: Variant) -> Callable[..., Awaitable[Response]]:
    async def handler(
        voice_id: str,
        body: TextToSpeechBody,
        request: Request,
        service: Speech,
        grant: Grant,
        settings: SettingsDep,
        output_format: str = Query(DEFAULT_OUTPUT_FORMAT),
    ) -> Response:
        speech = body.to_speech_request(
            settings, voice_id, output_format, stream=variant.stream, timed=variant.timed
        )
        return await respond(request, speech, service, grant, **variant.answer())

    return handler


add_variant_routes(
    router,
    "/v1/text-to-speech/{voice_id}",
    _handler,
    family="text_to_speech",
    noun="speech",
    responses=ERROR_RESPONSES,
)
