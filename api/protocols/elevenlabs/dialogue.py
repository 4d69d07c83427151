"""ElevenLabs' text-to-dialogue routes: `POST /v1/text-to-dialogue` (a complete file), `.../stream` (chunked audio),
`.../with-timestamps` and `.../stream/with-timestamps` (as the text-to-speech routes of that name, `timed.py`).

The body's `inputs` (`[{text, voice_id}]`, in order) become one request in our `[voice:NAME]` segment markup
(processing/voice_segments.py), so a dialogue is planned, priced, streamed and timed like any text: each input in its
voice, joined with the usual crossfade, each voice keeping its global tokens across the dialogue. The answers with
timestamps add ElevenLabs' `voice_segments` (`voice_segments.py`): each input's voice, times and characters. The first input's
voice is the request's own (an unknown one is refused naming `voice_id`, as a marker's would be). `seed` and
`apply_text_normalization` change the speech, and `pronunciation_dictionary_locators` apply the key's dictionaries to
every input (as on text-to-speech); `model_id`, `settings` and `language_code` are accepted and ignored. The four
handlers are generated from `variants.py`. Errors are in ElevenLabs' shape (`requests.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.deps import Grant, SettingsDep, Speech
from api.errors import ApiError
from api.http.fields import MAX_TEXT_CHARS, reject_control_characters
from api.http.respond import ERROR_RESPONSES, respond
from api.pronunciation_schemas import LocatorsField
from api.protocols.elevenlabs.formats import parse_output_format
from api.protocols.elevenlabs.variants import DEFAULT_OUTPUT_FORMAT, Variant, add_variant_routes
from processing.voice_segments import has_voice_markers, voice_marker
from services.errors import ServiceError
from services.pipeline.speech import SpeechRequest, SpeechService
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


class TextToDialogueBody(LocatorsField):
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
            bitrate=output.bitrate,
            sampling=SamplingOptions.with_defaults(settings, seed=self.seed),
            stream=stream,
            normalize=self.apply_text_normalization != "off",
            chunking=True,
            text_field="inputs",
            voice_field="voice_id",
            timestamps="character" if timed else None,
            dictionaries=self.locators(),
        )


async def _segments(
    body: TextToDialogueBody, speech: SpeechRequest, service: SpeechService, key_id: str | None
) -> list[tuple[str, str]]:
    """(voice id, text) per input as the answer's `alignment` writes it: with the dictionaries' aliases in (the
    timings are of the words spoken), so each `voice_segments` entry spans its own input's characters."""
    if not speech.dictionaries:
        return body.segments()
    try:
        lexicon = await service.lexicon(speech, key_id)
    except ServiceError as exc:  # a dictionary this key cannot use: the same 404 `respond` would give
        raise ApiError.from_service(exc) from None
    return [(voice, text if lexicon is None else lexicon.apply(text)) for voice, text in body.segments()]


def _handler(variant: Variant) -> Callable[..., Awaitable[Response]]:
    async def handler(
        body: TextToDialogueBody,
        request: Request,
        service: Speech,
        grant: Grant,
        settings: SettingsDep,
        output_format: str = Query(DEFAULT_OUTPUT_FORMAT),
    ) -> Response:
        speech = body.to_speech_request(settings, output_format, stream=variant.stream, timed=variant.timed)
        segments = await _segments(body, speech, service, grant.key_id) if variant.timed else None
        return await respond(request, speech, service, grant, **variant.answer(segments))

    return handler


add_variant_routes(
    router,
    "/v1/text-to-dialogue",
    _handler,
    family="text_to_dialogue",
    noun="a dialogue",
    responses=RESPONSES,
)
