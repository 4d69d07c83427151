"""The `model` ids `/v1/audio/speech` answers to, all the same model: ours and OpenAI's, whose SDKs and front ends
send theirs (gpt-4o-mini-tts also in its dated form, gpt-4o-mini-tts-2025-12-15). Any other id is a 400 naming
them, not a silent substitute."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

OPENAI_MODEL_IDS = ("spark-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
_DATED = re.compile(r"gpt-4o-mini-tts-\d{4}-\d{2}-\d{2}")


def _known(value: str) -> str:
    if value in OPENAI_MODEL_IDS or _DATED.fullmatch(value):
        return value
    raise ValueError(
        f"unknown model {value[:80]!r}; use one of {', '.join(OPENAI_MODEL_IDS)} (the same model)"
    )


OpenAIModel = Annotated[str, AfterValidator(_known)]
