"""The voices of a text's `[voice:NAME]` segments (processing/voice_segments.py), for the speech service.

Every name is resolved as the request's own voice would be (a built-in voice or alias, or a custom voice of the
caller's key), so an unknown name gets the route's usual refusal naming it. Names that resolve to the same voice
(an alias, the request's own voice) share one `Voice` object: the synthesis job keeps one speaker per object, whose
global tokens, once known, condition every chunk of that speaker (services/pipeline/synthesis.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from processing.voice_segments import VOICE_MARKER_RE, voice_names
from services.errors import ServiceError, SynthesisError
from services.pipeline.text_plan import TextPlan, check_plan_fits

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from core.voices import Voice
    from services.pipeline.resources import PipelineResources


async def resolve_segment_voices(
    text: str,
    voice: Voice,
    own_name: str | None,
    resolve: Callable[[str], Awaitable[Voice]],
    text_field: str | None = None,
) -> dict[str, Voice]:
    """Each name the markers of `text` use -> its voice by `resolve` (the speech service's, at the request's speed);
    `voice` is the request's own, asked for as `own_name`. An unknown name in markers the client wrote (in
    `text_field`) is refused naming that field, the marker and its position, not the voice field; ElevenLabs'
    dialogue (`inputs`) writes its markers from each input's `voice_id`, which its refusal names."""
    field = None if text_field == "inputs" else text_field
    by_id: dict[str, Voice] = {voice.id: voice}
    named: dict[str, Voice] = {}
    for name in voice_names(text):
        try:
            resolved = voice if name == own_name else await resolve(name)
        except ServiceError as exc:
            raise (exc if field is None else _marker_error(exc, text, name, field)) from None
        named[name] = by_id.setdefault(resolved.id, resolved)
    return named


def _marker_error(exc: ServiceError, text: str, name: str, text_field: str) -> SynthesisError:
    """The voice's refusal ("unknown voice 'x'; use one of ..."), told of the marker that named it."""
    marker = next(m for m in VOICE_MARKER_RE.finditer(text) if m.group(1) == name)
    detail = re.sub(r"^Invalid '[^']+': ", "", exc.message)
    return SynthesisError(
        exc.code,
        f"Invalid '{text_field}': the voice marker {marker.group(0)!r} at position {marker.start()} names no "
        f"voice this key can use: {detail}",
        text_field,
    )


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
