"""The voices of a text's `[voice:NAME]` segments (processing/voice_segments.py), for the speech service.

Every name is resolved as the request's own voice would be (a built-in voice or alias, or a custom voice of the
caller's key), so an unknown name gets the route's usual refusal naming it. Names that resolve to the same voice
(an alias, the request's own voice) share one `Voice` object: the synthesis job keeps one speaker per object, whose
global tokens, once known, condition every chunk of that speaker (services/pipeline/synthesis.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processing.voice_segments import voice_names
from services.pipeline.text_plan import TextPlan, check_plan_fits

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from core.voices import Voice
    from services.pipeline.resources import PipelineResources


async def resolve_segment_voices(
    text: str, voice: Voice, own_name: str | None, resolve: Callable[[str], Awaitable[Voice]]
) -> dict[str, Voice]:
    """Each name the markers of `text` use -> its voice by `resolve` (the speech service's, at the request's speed);
    `voice` is the request's own, asked for as `own_name`."""
    by_id: dict[str, Voice] = {voice.id: voice}
    named: dict[str, Voice] = {}
    for name in voice_names(text):
        resolved = voice if name == own_name else await resolve(name)
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
