"""A request's text read once (`read_document`): its `[voice:NAME]` segments (processing/voice_segments.py), its SSML
(breaks and the `<prosody rate>` around all of it, processing/ssml.py) and its alias rules (processing/lexicon.py),
as one typed value, `SpeechDocument`. The speech service resolves the voices it names, planning speaks its segments,
and timestamps map the words back to its text as written; nothing downstream looks at the raw text for markup again.

Alias rules are carried, not applied: applying them may compile a large rule set, which planning does off the event
loop (services/pipeline/speech.py), and a rule set too costly to apply is refused there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processing.ssml import SsmlParser, looks_like_ssml, ssml_problem, uniform_rate
from processing.voice_segments import split_voice_segments, strip_voice_markers, voice_names

if TYPE_CHECKING:
    from processing.lexicon import Lexicon


class SsmlProblem(ValueError):
    """SSML that would not be spoken as written (`ssml_problem`'s sentence naming the tag); a route's 400."""


@dataclass(frozen=True, slots=True)
class DocumentSegment:
    """Text spoken in one voice: `voice` None is the request's own; `pieces` its SSML read in order (text runs and
    breaks in seconds), empty for text that is not SSML."""

    voice: str | None
    text: str
    pieces: tuple[str | float, ...] = ()


@dataclass(frozen=True)
class SpeechDocument:
    """What a request's text asks for. Text without voice markers is one segment (the whole text, even blank), so a
    refusal names the whole text as before; with markers, the segments in order, blank ones dropped."""

    text: str  # as the client sent it
    segments: tuple[DocumentSegment, ...]
    voice_names: tuple[str, ...] = ()  # the voices the markers name, each once, in order of first use
    ssml: bool = False
    lexicon: Lexicon | None = None  # alias rules to apply before normalising; None when there are none
    rate: float | None = None  # SSML: a `<prosody rate>` around all the spoken text (the request's speed)

    @property
    def marked(self) -> bool:
        """The text holds `[voice:NAME]` markers."""
        return bool(self.voice_names)

    @property
    def plain(self) -> bool:
        """Neither SSML nor alias rules: planned as plain text."""
        return not self.ssml and self.lexicon is None

    @property
    def written(self) -> str:
        """The text as written without its markers (what the spoken words' timestamps map back to)."""
        return strip_voice_markers(self.text) if self.marked else self.text


def read_document(text: str, lexicon: Lexicon | None = None, *, ssml: bool | None = None) -> SpeechDocument:
    """`text` read once: SSML when `ssml` says so (None: when it looks like SSML), the alias rules when there are
    any. SsmlProblem for SSML that would not be spoken as written (a break over 3 s, an unclosed `<sub>`, a tag with
    no '>')."""
    is_ssml = looks_like_ssml(text) if ssml is None else ssml
    problem = ssml_problem(text) if is_ssml else None
    if problem is not None:
        raise SsmlProblem(problem)
    if lexicon is not None and not lexicon.rules:
        lexicon = None
    names = tuple(voice_names(text))
    if not names:
        if not is_ssml:
            return SpeechDocument(text, (DocumentSegment(None, text),), lexicon=lexicon)
        parser = SsmlParser()  # one reading gives the pieces and the rate
        pieces = tuple(parser.feed(text) + parser.finish())
        segment = DocumentSegment(None, text, pieces)
        return SpeechDocument(text, (segment,), ssml=True, lexicon=lexicon, rate=parser.uniform_rate)
    # Each segment's SSML is read on its own (a marker ends the tags open before it); the rate around all the text
    # is read across the markers.
    segments = tuple(
        DocumentSegment(s.voice, s.text, _ssml_pieces(s.text) if is_ssml else ())
        for s in split_voice_segments(text)
    )
    rate = uniform_rate(text) if is_ssml else None
    return SpeechDocument(text, segments, names, ssml=is_ssml, lexicon=lexicon, rate=rate)


def _ssml_pieces(text: str) -> tuple[str | float, ...]:
    parser = SsmlParser()
    return tuple(parser.feed(text) + parser.finish())
