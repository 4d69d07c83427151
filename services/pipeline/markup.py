"""A request's read text (processing/speech_document.py) planned for the model, SSML and alias rules included.

`plan_document` plans each `[voice:NAME]` segment on its own (a chunk never spans two voices). A segment with SSML is
planned from its pieces, read before any cut, so no tag is ever cut, spoken or charged as text: each run of text
between pauses is planned on its own (`plan_text`: aliases, normalisation, chunks) and each pause becomes silence
before the next chunk (`TextPlan.pauses`), within the request's `BreakBudget` (the key's per-minute window is taken
on the event loop when the job opens: `take_key_silence`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from processing.speech_document import DocumentSegment, SpeechDocument, SsmlProblem, read_document
from processing.ssml import BreakBudget, SilenceWindow
from services.errors import SynthesisError
from services.pipeline.text_plan import (
    NothingToSpeak,
    TextPlan,
    apply_lexicon,
    check_request_plan,
    plan_text,
    plan_voice_segments,
)

if TYPE_CHECKING:
    from processing.lexicon import Lexicon
    from shared.settings import Settings


def read_request_text(
    text: str, lexicon: Lexicon | None, *, ssml: bool | None = None, text_field: str = "text"
) -> SpeechDocument:
    """`read_document`, its SSML problem a 400 naming the tag and the protocol's text field."""
    try:
        return read_document(text, lexicon, ssml=ssml)
    except SsmlProblem as exc:
        raise SynthesisError("VALIDATION_ERROR", f"Invalid '{text_field}': {exc}.", text_field) from None


def plan_document(
    document: SpeechDocument,
    settings: Settings,
    *,
    normalize: bool,
    chunking: bool,
    pause: Callable[[], None] = lambda: None,
) -> TextPlan:
    """A request's plan within the per-request limits (`check_request_plan`); its `written` is the text as written
    once markers, tags and aliases are resolved. `pause`: called between pieces of the work (`plan_text`)."""
    threshold, target = settings.text.chunking_threshold_chars, settings.text.chunk_target_chars
    budget = BreakBudget(settings.limits.ssml_max_total_break_s)  # one per request, whatever its segments

    def plan_segment(segment: DocumentSegment) -> TextPlan:
        if document.plain:
            return plan_text(
                segment.text,
                normalize=normalize,
                chunking=chunking,
                threshold=threshold,
                target=target,
                pause=pause,
            )
        return plan_marked_segment(
            segment,
            document,
            normalize=normalize,
            chunking=chunking,
            threshold=threshold,
            target=target,
            budget=budget,
            pause=pause,
        )

    if document.marked:
        plan = plan_voice_segments(document.segments, plan_segment)
    else:
        plan = plan_segment(document.segments[0])
    if plan.written is None:
        plan = replace(plan, written=document.written)
    return check_request_plan(plan, settings)


def plan_marked_segment(
    segment: DocumentSegment,
    document: SpeechDocument,
    *,
    normalize: bool,
    chunking: bool,
    threshold: int,
    target: int,
    budget: BreakBudget,
    pause: Callable[[], None] = lambda: None,
) -> TextPlan:
    """One segment of a document with SSML or alias rules (without SSML, its text is planned whole). The alias rules
    apply once to each text: what is planned is also the text as written (a rule set too costly for it is refused,
    `apply_lexicon`, as on a socket)."""
    lexicon = document.lexicon
    if not document.ssml:
        assert lexicon is not None
        aliased = apply_lexicon(lexicon, segment.text, pause)
        plan = plan_text(
            aliased, normalize=normalize, chunking=chunking, threshold=threshold, target=target, pause=pause
        )
        return replace(plan, written=aliased)
    chunks: list[str] = []
    spoken: list[str] = []
    written: list[str] = []
    pauses: dict[int, float] = {}
    for item in segment.pieces:
        if isinstance(item, float):
            granted = budget.take(item)
            if granted > 0:
                pauses[len(chunks)] = pauses.get(len(chunks), 0.0) + granted
            continue
        budget.note_text(item)
        aliased = item if lexicon is None else apply_lexicon(lexicon, item, pause)
        try:
            part = plan_text(
                aliased,
                normalize=normalize,
                chunking=chunking,
                threshold=threshold,
                target=target,
                pause=pause,
            )
        except NothingToSpeak:
            continue  # nothing speakable here (spaces, emoji): the pauses around it join
        if not any(c.isalnum() for c in part.text):
            continue  # punctuation only: nothing to say, as on the sockets
        chunks += part.chunks
        spoken.append(part.text)
        written.append(aliased)
    if not chunks:
        raise NothingToSpeak("Invalid 'text': nothing left to speak after reading its SSML.")
    return TextPlan(
        text=" ".join(spoken),
        chunks=chunks,
        chunked=len(chunks) > 1,
        pauses=pauses,
        written=" ".join(" ".join(w.split()) for w in written),
    )


def take_key_silence(plan: TextPlan, window: SilenceWindow) -> TextPlan:
    """The plan's pauses within what the key's per-minute window still grants (on the event loop: no lock)."""
    if not plan.pauses:
        return plan
    granted = {index: window.take(seconds) for index, seconds in sorted(plan.pauses.items())}
    return replace(plan, pauses={index: seconds for index, seconds in granted.items() if seconds > 0})
