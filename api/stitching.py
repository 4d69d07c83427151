"""Request-stitching fields shared by the synthesis bodies (`/v1/tts/generate`, `/v1/audio/speech` as extra body
fields; the ElevenLabs routes pass the same three through): ElevenLabs' names and limits. What they do is
`services.continuity`'s: `previous_request_ids` continues those requests; the two texts are accepted, never spoken."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from services.continuity import MAX_PREVIOUS_REQUESTS

MAX_CONTEXT_CHARS = 5000
_REQUEST_ID = r"^[A-Za-z0-9._:-]{1,128}$"  # what X-Server-Request-ID can be


class StitchingFields(BaseModel):
    previous_request_ids: list[str] | None = Field(
        None,
        max_length=MAX_PREVIOUS_REQUESTS,
        description="Continue these earlier requests of this API key (their X-Server-Request-ID, oldest first, at most "
        "3, finished within TTS_CONTINUITY_RETENTION_S): same voice, and the prompt continues the end of their speech "
        "so tempo and pitch carry on. Unknown, expired, another key's or unfinished: 404/409.",
    )
    previous_text: str | None = Field(
        None,
        max_length=MAX_CONTEXT_CHARS,
        description="Text spoken before this request. Accepted for compatibility "
        "and never spoken; with previous_request_ids the stored words of those requests are used.",
    )
    next_text: str | None = Field(
        None,
        max_length=MAX_CONTEXT_CHARS,
        description="Text that will follow. Accepted for compatibility and never "
        "spoken or sent to the model (every word of a Spark prompt is read out).",
    )

    @field_validator("previous_request_ids")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        for request_id in value or []:
            if not re.match(_REQUEST_ID, request_id):
                raise PydanticCustomError(
                    "request_id",
                    "holds server request ids (X-Server-Request-ID): 1-128 "
                    "characters of letters, digits and . _ : -",
                )
        seen: set[str] = set()
        for request_id in value or []:
            if request_id in seen:  # its tail would go into the prompt twice
                raise PydanticCustomError(
                    "duplicate_request_id",
                    "names request {request_id} twice; name each previous request once, oldest first",
                    {"request_id": repr(request_id)},
                )
            seen.add(request_id)
        return value or None

    def stitching(self) -> dict[str, Any]:
        """The SpeechRequest fields."""
        return {
            "previous_request_ids": tuple(self.previous_request_ids or ()),
            "previous_text": self.previous_text,
            "next_text": self.next_text,
        }
