"""Timestamps beside the audio: each text chunk is aligned as soon as its audio is decoded, and its words, mapped
back to the text as sent, travel in the job's output queue ahead of that chunk's audio.

`TimestampTrack` is one request's state: the written->spoken map (`processing.spoken_map`), the crossfaded
timeline (where each text chunk's audio starts in the output), and the spoken spans not yet claimed by a written
group. `align_chunk` is blocking (run it in a worker thread); everything else is bookkeeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.align import SAMPLE_RATE, WordSpan, align, character_spans
from core.align.units import script_language
from processing.spoken_map import spoken_map, spoken_words_of

if TYPE_CHECKING:
    from core.align import AlignMethod, CharSpan
    from core.align.ctc import CtcAligner
    from processing.spoken_map import TokenGroup

TimestampsKind = Literal["word", "character"]


@dataclass(frozen=True, slots=True)
class TimestampsEvent:
    """Spans for one aligned piece, seconds from the start of the request's audio. `words`: the text as sent (a
    normalised token once, covering what was said for it); `normalized`: the words the model spoke."""

    words: tuple[WordSpan, ...]
    normalized: tuple[WordSpan, ...]

    @property
    def characters(self) -> tuple[CharSpan, ...]:
        return character_spans(self.words)

    @property
    def normalized_characters(self) -> tuple[CharSpan, ...]:
        return character_spans(self.normalized)

    def to_json(self, kind: TimestampsKind = "word") -> dict:
        out: dict = {"words": [w.to_json() for w in self.words],
                     "normalized_words": [w.to_json() for w in self.normalized]}
        if kind == "character":
            out["characters"] = [c.to_json() for c in self.characters]
            out["normalized_characters"] = [c.to_json() for c in self.normalized_characters]
        return out


class TimestampTrack:
    """One request's timestamps: `add_text` for each piece of written text with what is spoken for it, then per text
    chunk in order `start_segment`/`align_chunk` with that chunk's 16 kHz audio."""

    def __init__(self, *, overlap_samples: int = 0, ctc: Mapping[str, CtcAligner] | None = None,
                 time_stretch: float = 1.0) -> None:
        """`ctc`: models by language ("*" for any); a chunk whose language has none uses the estimate method.
        `time_stretch`: the tempo change the audio chain applies after the crossfade (`speed`): times divide by it."""
        self.ctc = ctc or {}
        self.time_scale = 1.0 / time_stretch
        self.overlap = overlap_samples
        self._groups: deque[TokenGroup] = deque()
        self._spoken: deque[WordSpan] = deque()  # aligned spoken words no group has claimed yet
        self._produced = 0  # samples of the crossfaded output so far (the fold's length)
        self._last_end = 0.0  # end of the last written group handed out
        self._spoken_end = 0.0  # end of the last spoken word aligned

    def add_text(self, written: str, spoken: str) -> None:
        self._groups.extend(spoken_map(written, spoken).groups)

    def align_chunk(self, audio16: np.ndarray, chunk_text: str, end: float | None = None) -> TimestampsEvent:
        """Align one text chunk's audio (the whole decoded segment, before crossfade) and return the written and
        spoken spans it completes, in output time. Chunks must come in order; `end` (the last chunk): the output's
        true length, which no span passes."""
        length = int(audio16.size)
        fade = min(self.overlap, self._produced, length)
        offset = (self._produced - fade) / SAMPLE_RATE
        self._produced += length - fade
        words = spoken_words_of(chunk_text)
        model = self.ctc.get(script_language(chunk_text)) or self.ctc.get("*")
        method: AlignMethod = "ctc" if model is not None else "estimate"
        spans = align(audio16, words, method=method, ctc=model).shifted(offset).scaled(self.time_scale).words
        normalized = tuple(_after(spans, self._spoken_end, end))
        if normalized:
            self._spoken_end = normalized[-1].end
        self._spoken.extend(normalized)
        return TimestampsEvent(tuple(self._claim()), normalized)

    def _claim(self) -> list[WordSpan]:
        out: list[WordSpan] = []
        while self._groups and len(self._groups[0].spoken) <= len(self._spoken):
            group = self._groups.popleft()
            said = [self._spoken.popleft() for _ in group.spoken]
            start = said[0].start if said else self._last_end
            end = said[-1].end if said else self._last_end
            scores = [s.score for s in said if s.score is not None]
            score = min(scores) if scores else None
            out += _share(group.written, start, end, score)
            self._last_end = max(self._last_end, end)
        return out


def _after(spans: tuple[WordSpan, ...], floor: float, ceiling: float | None = None) -> list[WordSpan]:
    """Keep times monotonic across a crossfade (a chunk's first word never starts before the previous one ended)
    and, when the output's length is known, inside it."""
    out = []
    top = float("inf") if ceiling is None else ceiling
    for span in spans:
        start = min(max(span.start, floor), top)
        end = min(max(span.end, start), top)
        out.append(WordSpan(span.text, round(start, 3), round(end, 3), span.score))
        floor = end
    return out


def _share(written: tuple[str, ...], start: float, end: float, score: float | None) -> list[WordSpan]:
    """Several written tokens said together (no finer split was found) share the time by their length."""
    if len(written) == 1:
        return [WordSpan(written[0], start, end, score)]
    total = sum(len(w) for w in written) or 1
    out, t = [], start
    for word in written:
        nxt = t + (end - start) * len(word) / total
        out.append(WordSpan(word, round(t, 3), round(nxt, 3), score))
        t = nxt
    return out
