"""ElevenLabs' text-to-dialogue routes: `POST /v1/text-to-dialogue` (a complete file), `.../stream` (chunked audio),
`.../with-timestamps` and `.../stream/with-timestamps` (as the text-to-speech routes of that name, `timed.py`).

The body's `inputs` (`[{text, voice_id}]`, in order) become one request in our `[voice:NAME]` segment markup
(processing/voice_segments.py), so a dialogue is planned, priced, streamed and timed like any text: each input in its
voice, joined with the usual crossfade, each voice keeping its global tokens across the dialogue. The answers with
timestamps add ElevenLabs' `voice_segments` (`voice_segments.py`): each input's voice, times and characters. The first input's
voice is the request's own (an unknown one is refused naming `voice_id`, as a marker's would be). `seed` and
`apply_text_normalization` change the speech; `model_id`, `settings`, `language_code` and
`pronunciation_dictionary_locators` are accepted and ignored. Errors are in ElevenLabs' shape (`messages.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.deps import Grant, SettingsDep, Speech
from api.dialects.elevenlabs import timed
from api.dialects.elevenlabs.messages import parse_output_format
from api.routes.tts import ERROR_RESPONSES, respond
from api.schemas import MAX_TEXT_CHARS, reject_control_characters
from processing.voice_segments import has_voice_markers, voice_marker
from services.pipeline.speech import SpeechRequest
from services.pipeline.synthesis import SamplingOptions
from shared.settings import Settings

router = APIRouter(tags=["elevenlabs"])

RESPONSES: dict[int | str, dict[str, Any]] = {status: dict(doc) for status, doc in ERROR_RESPONSES.items()}
# Distinct voices in one dialogue, as ElevenLabs documents.
MAX_DIALOGUE_VOICES = 10


class DialogueInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    voice_id: str = Field(..., min_length=1, max_length=128)

    @field_validator("text")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        if has_voice_markers(value):
            raise ValueError("holds a [voice:...] marker; give each voice its own input")
        return reject_control_characters(value)

    @field_validator("voice_id")
    @classmethod
    def _markable(cls, value: str) -> str:
        voice_marker(value)  # ValueError (a 400) for an id with spaces or brackets
        return value


class TextToDialogueBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: list[DialogueInput] = Field(..., min_length=1)
    model_id: str | None = None
    settings: dict[str, Any] | None = None  # `stability`: accepted, ignored
    seed: int | None = Field(None, ge=0, le=4_294_967_295)
    apply_text_normalization: str = "auto"

    @model_validator(mode="after")
    def _few_voices(self) -> TextToDialogueBody:
        voices = {i.voice_id for i in self.inputs}
        if len(voices) > MAX_DIALOGUE_VOICES:
            raise ValueError(
                f"at most {MAX_DIALOGUE_VOICES} distinct voice_id values per dialogue, got {len(voices)}"
            )
        return self

    def segments(self) -> list[tuple[str, str]]:
        """(voice id, text) per input, for the answers' `voice_segments`."""
        return [(i.voice_id, i.text) for i in self.inputs]

    def text(self) -> str:
        """The inputs in segment markup: each input after its voice's marker."""
        return "\n".join(f"{voice_marker(i.voice_id)} {i.text}" for i in self.inputs)

    def to_speech_request(
        self, settings: Settings, output_format: str, *, stream: bool, timed: bool = False
    ) -> SpeechRequest:
        output = parse_output_format(output_format)
        return SpeechRequest(
            text=self.text(),
            voice=self.inputs[0].voice_id,
            audio_format=output.audio_format,
            sample_rate=output.sample_rate,
            sampling=SamplingOptions.with_defaults(settings, seed=self.seed),
            stream=stream,
            normalize=self.apply_text_normalization != "off",
            chunking=True,
            text_field="inputs",
            voice_field="voice_id",
            timestamps="character" if timed else None,
        )


@router.post("/v1/text-to-dialogue", responses=RESPONSES, summary="ElevenLabs: a dialogue as a file")
async def text_to_dialogue(
    body: TextToDialogueBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    return await respond(
        request, body.to_speech_request(settings, output_format, stream=False), service, grant
    )


@router.post("/v1/text-to-dialogue/stream", responses=RESPONSES, summary="ElevenLabs: a dialogue streamed")
async def text_to_dialogue_stream(
    body: TextToDialogueBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    return await respond(
        request, body.to_speech_request(settings, output_format, stream=True), service, grant
    )


@router.post(
    "/v1/text-to-dialogue/with-timestamps",
    responses=RESPONSES,
    summary="ElevenLabs: a dialogue as base64 with character timings",
)
async def text_to_dialogue_with_timestamps(
    body: TextToDialogueBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    speech = body.to_speech_request(settings, output_format, stream=False, timed=True)
    return await respond(request, speech, service, grant, timed=timed.dialogue_complete(body.segments()))


@router.post(
    "/v1/text-to-dialogue/stream/with-timestamps",
    responses=RESPONSES,
    summary="ElevenLabs: a dialogue streamed as JSON lines with character timings",
)
async def text_to_dialogue_stream_with_timestamps(
    body: TextToDialogueBody,
    request: Request,
    service: Speech,
    grant: Grant,
    settings: SettingsDep,
    output_format: str = Query("mp3_44100_128"),
) -> Response:
    speech = body.to_speech_request(settings, output_format, stream=True, timed=True)
    return await respond(request, speech, service, grant, framing=timed.dialogue_framing(body.segments()))
