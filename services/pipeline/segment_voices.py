"""The voices of a text's `[voice:NAME]` segments (processing/voice_segments.py), for the speech service.

Every name is resolved as the request's own voice would be (a built-in voice or alias, or a custom voice of the
caller's key), so an unknown name gets the route's usual refusal naming it. Names that resolve to the same voice
(an alias, the request's own voice) share one `Voice` object: the synthesis job keeps one speaker per object, whose
global tokens, once known, condition every chunk of that speaker (services/pipeline/synthesis.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from processing.voice_segments import voice_names
from services.pipeline.text_plan import TextPlan, check_plan_fits

if TYPE_CHECKING:
    from collections.abc import Mapping

    from core.voices import Voice
    from services.pipeline.resources import PipelineResources
    from services.pipeline.speech import SpeechRequest, SpeechService


async def resolve_segment_voices(
    service: SpeechService, speech: SpeechRequest, voice: Voice, key_id: str | None
) -> dict[str, Voice]:
    """Each name the text's markers use -> its voice (at the request's speed); `voice` is the request's own."""
    by_id: dict[str, Voice] = {voice.id: voice}
    named: dict[str, Voice] = {}
    for name in voice_names(speech.text):
        if name == speech.voice:
            named[name] = voice
            continue
        resolved = await service.voice(
            replace(speech, voice=name, reference_audio=None, reference_text=None), key_id
        )
        named[name] = by_id.setdefault(resolved.id, resolved)
    return named


def check_segments_fit(
    resources: PipelineResources, plan: TextPlan, voice: Voice, segment_voices: Mapping[str, Voice]
) -> None:
    """`check_plan_fits` for each voice of a segmented plan, over the chunks that voice speaks."""
    speakers: dict[int, tuple[Voice, list[str]]] = {}
    for chunk, name in zip(plan.chunks, plan.chunk_voices, strict=True):
        speaker = voice if name is None else segment_voices.get(name, voice)
        speakers.setdefault(id(speaker), (speaker, []))[1].append(chunk)
    for speaker, chunks in speakers.values():
        check_plan_fits(
            resources, TextPlan(text=" ".join(chunks), chunks=chunks, chunked=len(chunks) > 1), speaker
        )


def is_private(voice: Voice) -> bool:
    """Built from a key's own recordings (custom, reference, a stitched tail): its prompts are cached per key."""
    return voice.source != "builtin" or voice.reference_semantic is not None
