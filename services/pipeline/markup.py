"""Text with markup planned for the model: SSML (processing/ssml.py) and alias rules (processing/lexicon.py).

`plan_marked_text` reads the SSML before any cut, so no tag is ever cut, spoken or charged as text: each run of text
between pauses is planned on its own (`plan_text`: aliases, normalisation, chunks) and each pause becomes silence
before the next chunk (`TextPlan.pauses`), within the request's `BreakBudget` (the key's per-minute window is taken
on the event loop when the job opens: `take_key_silence`). Plain text never comes here (`markup_for` is None).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from processing.ssml import (
    BreakBudget,
    SilenceWindow,
    SsmlParser,
    looks_like_ssml,
    ssml_problem,
    uniform_rate,
)
from services.errors import SynthesisError
from services.pipeline.text_plan import (
    NothingToSpeak,
    TextPlan,
    plan_request_parts,
    plan_request_text,
    plan_text,
)

if TYPE_CHECKING:
    from processing.lexicon import Lexicon
    from shared.settings import Settings


@dataclass(frozen=True)
class TextMarkup:
    ssml: bool = False
    lexicon: Lexicon | None = None
    rate: float | None = (
        None  # SSML: a `<prosody rate>` around all the text (the request's speed), read with it
    )


def markup_for(
    text: str, lexicon: Lexicon | None, *, ssml: bool | None = None, text_field: str = "text"
) -> TextMarkup | None:
    """The markup a request's text carries: SSML when `ssml` says so (None: when the text looks like SSML), alias
    rules when there are any; None for plain text (the plain path, unchanged). SSML that would not be spoken as
    written (a break over 3 s, an unclosed <sub>, a tag with no '>') is a 400 naming the tag (`text_field`)."""
    is_ssml = looks_like_ssml(text) if ssml is None else ssml
    problem = ssml_problem(text) if is_ssml else None
    if problem is not None:
        raise SynthesisError("VALIDATION_ERROR", f"Invalid '{text_field}': {problem}.", text_field)
    if lexicon is not None and not lexicon.rules:
        lexicon = None
    if not is_ssml and lexicon is None:
        return None
    return TextMarkup(ssml=is_ssml, lexicon=lexicon, rate=uniform_rate(text) if is_ssml else None)


def plan_request(
    text: str, settings: Settings, markup: TextMarkup | None, *, normalize: bool, chunking: bool
) -> TextPlan:
    """A request's plan within the per-request limits: `plan_request_text`, or `plan_marked_text` with markup
    (each `[voice:NAME]` segment on its own, so SSML and alias rules work in dialogue too)."""
    if markup is None:
        return plan_request_text(text, settings, normalize=normalize, chunking=chunking)

    budget = BreakBudget(settings.limits.ssml_max_total_break_s)  # one per request, whatever its segments

    def plan_part(part: str) -> TextPlan:
        return plan_marked_text(part, settings, markup, normalize=normalize, chunking=chunking, budget=budget)

    return plan_request_parts(text, plan_part, settings)


def plan_marked_text(
    text: str,
    settings: Settings,
    markup: TextMarkup,
    *,
    normalize: bool,
    chunking: bool,
    budget: BreakBudget | None = None,
) -> TextPlan:
    threshold, target = settings.text.chunking_threshold_chars, settings.text.chunk_target_chars
    if not markup.ssml:
        plan = plan_text(
            text,
            normalize=normalize,
            chunking=chunking,
            threshold=threshold,
            target=target,
            lexicon=markup.lexicon,
        )
        assert markup.lexicon is not None
        return replace(plan, written=markup.lexicon.apply(text))
    parser = SsmlParser()
    items = parser.feed(text) + parser.finish()
    if budget is None:
        budget = BreakBudget(settings.limits.ssml_max_total_break_s)
    chunks: list[str] = []
    spoken: list[str] = []
    written: list[str] = []
    pauses: dict[int, float] = {}
    for item in items:
        if isinstance(item, float):
            granted = budget.take(item)
            if granted > 0:
                pauses[len(chunks)] = pauses.get(len(chunks), 0.0) + granted
            continue
        budget.note_text(item)
        try:
            part = plan_text(
                item,
                normalize=normalize,
                chunking=chunking,
                threshold=threshold,
                target=target,
                lexicon=markup.lexicon,
            )
        except SynthesisError:
            continue  # nothing speakable here (spaces, emoji): the pauses around it join
        if not any(c.isalnum() for c in part.text):
            continue  # punctuation only: nothing to say, as on the sockets
        chunks += part.chunks
        spoken.append(part.text)
        written.append(markup.lexicon.apply(item) if markup.lexicon is not None else item)
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
