"""`POST /v1/tts/normalize`: what the model would be asked to speak, without generating audio.

The same planning code path as synthesis (SSML, alias rules in `lexicon`, tags, normalisation, long-text chunking,
the same limits), behind the same authentication and rate limits.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, field_validator

from api.deps import Grant, SettingsDep, Speech
from api.errors import ApiError
from api.http.fields import MAX_TEXT_CHARS, check_text
from api.pronunciation_schemas import LexiconField
from processing.scripts import script_languages
from services.pipeline.markup import plan_document, read_request_text

router = APIRouter(tags=["tts"])


class NormalizeRequest(LexiconField):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS, description="Text to normalise.")
    normalize: bool = Field(True, description="Expand numbers, currency, dates, abbreviations to words.")
    chunking: bool = Field(True, description="Split long text as synthesis would.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return check_text(value, "text")


@router.post("/v1/tts/normalize", summary="The normalised text and chunks the model would speak (no audio)")
async def normalize(
    body: NormalizeRequest, grant: Grant, settings: SettingsDep, speech: Speech
) -> JSONResponse:
    if len(body.text) > settings.limits.max_text_chars:
        raise ApiError(
            "TEXT_TOO_LONG",
            f"Invalid 'text': at most {settings.limits.max_text_chars} characters.",
            param="text",
        )
    document = read_request_text(body.text, body.to_lexicon())
    # A text step taking turns between keys (free, so a key's text waits while a lighter key synthesises); a
    # refusal (SynthesisError) answers in the envelope through its handler.
    plan = await speech.text_turns.run(
        grant.key.key_id,
        lambda pause: plan_document(
            document, settings, normalize=body.normalize, chunking=body.chunking, pause=pause
        ),
    )
    return JSONResponse(
        {"normalized": plan.text, "languages": script_languages(plan.text), "chunks": plan.chunks},
        headers=grant.headers,
    )
