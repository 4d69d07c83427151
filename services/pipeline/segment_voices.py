"""The voices a request speaks in (`SpeakingVoices`), among them those of its `[voice:NAME]` segments
(processing/voice_segments.py), and the check that each voice's prompts leave the model room (`check_voices_fit`).

Every name is resolved as the request's own voice would be (a built-in voice or alias, or a custom voice of the
caller's key), so an unknown name gets the route's usual refusal naming it. Names that resolve to the same voice
(an alias, the request's own voice) share one `Voice` object: the synthesis job keeps one speaker per object, whose
global tokens, once known, condition every chunk of that speaker (services/pipeline/synthesis.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from processing.voice_segments import VOICE_MARKER_RE
from services.errors import ServiceError, SynthesisError
from services.pipeline.text_plan import TextPlan, plan_misfit, stitched_misfit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from core.voices import Voice
    from processing.speech_document import SpeechDocument
    from services.pipeline.resources import PipelineResources


@dataclass(frozen=True)
class SpeakingVoices:
    """A request's voices, resolved once: its own (`voice`, stitched when asked; `unstitched` before that), each
    `[voice:NAME]` marker's (`segments`), and the tempo change left for the audio (`time_stretch`)."""

    voice: Voice
    time_stretch: float = 1.0
    unstitched: Voice | None = None  # None: not stitched
    segments: Mapping[str, Voice] = field(default_factory=dict)


async def resolve_segment_voices(
    document: SpeechDocument,
    voice: Voice,
    own_name: str | None,
    resolve: Callable[[str], Awaitable[Voice]],
    text_field: str | None = None,
) -> dict[str, Voice]:
    """Each name the markers of `document` use -> its voice by `resolve` (the speech service's, at the request's speed);
    `voice` is the request's own, asked for as `own_name`. An unknown name in markers the client wrote (in
    `text_field`) is refused naming that field, the marker and its position, not the voice field; ElevenLabs'
    dialogue (`inputs`) writes its markers from each input's `voice_id`, which its refusal names."""
    field = None if text_field == "inputs" else text_field
    by_id: dict[str, Voice] = {voice.id: voice}
    named: dict[str, Voice] = {}
    for name in document.voice_names:
        try:
            resolved = voice if name == own_name else await resolve(name)
        except ServiceError as exc:
            raise (exc if field is None else _marker_error(exc, document.text, name, field)) from None
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


def check_voices_fit(resources: PipelineResources, plan: TextPlan, voices: SpeakingVoices) -> None:
    """Refuse, before any GPU work, a chunk whose prompt leaves its voice no room to speak it (`plan_misfit`), each
    voice over the chunks it speaks; a chunk that fits only without a stitched voice's prefix names
    `previous_request_ids` (`stitched_misfit`)."""
    speakers: dict[int, tuple[Voice, list[str]]] = {}
    names = plan.chunk_voices or (None,) * len(plan.chunks)
    for chunk, name in zip(plan.chunks, names, strict=True):
        speaker = voices.voice if name is None else voices.segments.get(name, voices.voice)
        speakers.setdefault(id(speaker), (speaker, []))[1].append(chunk)
    # A segmented plan's voices are checked as they are; only a whole plan in one stitched voice is told apart.
    unstitched = None if plan.chunk_voices else voices.unstitched
    for speaker, chunks in speakers.values():
        misfit = plan_misfit(resources, chunks, speaker)
        if misfit is None:
            continue
        if (
            unstitched is None
            or unstitched is speaker
            or plan_misfit(resources, chunks, unstitched) is not None
        ):
            raise misfit
        raise stitched_misfit(misfit)


def is_private(voice: Voice) -> bool:
    """Built from a key's own recordings (custom, reference, a stitched tail): its prompts are cached per key."""
    return voice.source != "builtin" or voice.reference_semantic is not None
