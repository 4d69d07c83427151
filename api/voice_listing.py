"""The voices a caller can use, shaped by a dialect: the model's built-in voices, then the caller's library voices
(ElevenLabs' `/v1/voices`, Cartesia's `/voices`). Each dialect passes its own shapes for the two kinds."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from api.errors import ApiError
from core.voices import Voice
from services.errors import voice_not_found
from services.model_status import ServingModel
from services.voice_library import Caller, VoiceLibrary, VoiceRecord

Builtin = Callable[[Voice], dict[str, Any]]
Custom = Callable[[VoiceRecord], dict[str, Any]]


async def all_voices(
    model: ServingModel, caller: Caller | None, library: VoiceLibrary, builtin: Builtin, custom: Custom
) -> list[dict[str, Any]]:
    """Built-in voices first, then the caller's own (none without a caller)."""
    listed = [] if model.voices is None else [builtin(v) for v in model.voices.voices.values()]
    own = [] if caller is None else [custom(r) for r in await library.list(caller)]
    return listed + own


async def one_voice(
    voice_id: str,
    model: ServingModel,
    caller: Caller | None,
    library: VoiceLibrary,
    builtin: Builtin,
    custom: Custom,
    param: str,
) -> dict[str, Any]:
    """A built-in voice, else the caller's library voice; `voice_not_found` naming `param` otherwise."""
    if model.voices is not None and voice_id in model.voices.voices:
        return builtin(model.voices.voices[voice_id])
    if caller is None:
        raise ApiError.from_service(voice_not_found(voice_id, param))
    return custom(await library.get(voice_id, caller))


def starts_a_word(term: str | None, text: str) -> bool:
    """Whether a search term (whitespace and case aside) starts a word of `text`: "male" is not in "female", "fem"
    is; an empty term matches everything. Underscores separate words."""
    if not term or not term.strip():
        return True
    wanted = re.escape(" ".join(term.casefold().split()))
    return re.search(r"(?<![^\W_])" + wanted, " ".join(text.casefold().split())) is not None
