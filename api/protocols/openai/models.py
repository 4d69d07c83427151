"""The `model` ids `/v1/audio/speech` answers to, all the same model: ours and OpenAI's, whose SDKs and front ends
send theirs (gpt-4o-mini-tts also in its dated form, gpt-4o-mini-tts-2025-12-15). Any other id is a 400 naming
them, not a silent substitute."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from pydantic import AfterValidator

from services.model_status import ServingModel

OPENAI_MODEL_IDS = ("spark-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
_DATED = re.compile(r"gpt-4o-mini-tts-\d{4}-\d{2}-\d{2}")


def _known(value: str) -> str:
    if value in OPENAI_MODEL_IDS or _DATED.fullmatch(value):
        return value
    raise ValueError(
        f"unknown model {value[:80]!r}; use one of {', '.join(OPENAI_MODEL_IDS)} (the same model)"
    )


OpenAIModel = Annotated[str, AfterValidator(_known)]


_CREATED = int(time.time())


def model_list(model: ServingModel) -> list[dict[str, Any]]:
    """The models as OpenAI lists them (`GET /v1/models`, `GET /v1/audio/models`): every id, one model."""
    return [
        {
            "id": model_id,
            "object": "model",
            "created": _CREATED,
            "owned_by": "spark-tts-service",
            "root": model.model_version,
        }
        for model_id in OPENAI_MODEL_IDS
    ]
