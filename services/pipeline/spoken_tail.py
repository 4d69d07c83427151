"""The end of what a synthesis spoke: its last semantic ids with the text they speak, bounded, for continuity
(`services.continuity`: a later request continues this one; a liked voice is kept). No audio is kept.

`SpokenTail` is fed per text chunk as ids are generated and keeps only the chunks needed to cover the bound;
`tail_of` cuts the final prefix. Inside a chunk, ids and text are cut in proportion (characters at a word boundary):
Spark has no duration model, so the exact word under a given id is unknown; speech runs at a roughly even rate per
character, and a cut at a word boundary keeps the prefix's text a whole-word transcript of about the kept speech.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from processing.prompt import join_reference_text

SEMANTIC_PER_SECOND = 50  # BiCodec: one semantic id per 20 ms


@dataclass(frozen=True)
class TailSegment:
    """One text chunk (or the end of one) and the semantic ids that speak it."""

    text: str
    semantic: tuple[int, ...]


class SpokenTail:
    """The chunks of one job that hold its last `max_tokens` semantic ids. Fed in chunk order (the pipeline starts
    chunk i+1's generation only after chunk i's is done), from one task at a time."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._segments: list[tuple[str, list[int]]] = []
        self._index: int | None = None
        self._total = 0  # ids held over all segments (add runs for every engine delta: no re-summing)

    def add(self, index: int, text: str, semantic: Sequence[int]) -> None:
        if index != self._index:
            self._segments.append((text, []))
            self._index = index
        self._segments[-1][1].extend(map(int, semantic))
        self._total += len(semantic)
        # Drop whole leading chunks the later ones no longer need.
        while len(self._segments) > 1 and self._total - len(self._segments[0][1]) >= self.max_tokens:
            self._total -= len(self._segments.pop(0)[1])

    def restart(self, index: int) -> None:
        """Chunk `index` is generated again (a generation guard tripped): forget what its discarded try spoke."""
        if index == self._index and self._segments:
            self._total -= len(self._segments[-1][1])
            self._segments[-1][1].clear()

    def segments(self) -> list[TailSegment]:
        return [TailSegment(text, tuple(ids)) for text, ids in self._segments if ids and text.strip()]


def cut_segment(segment: TailSegment, room: int) -> TailSegment | None:
    """The end of `segment` holding at most `room` semantic ids, its text cut at a word boundary in proportion."""
    count, text = len(segment.semantic), segment.text.strip()
    if room <= 0 or not text or not count:
        return None
    if count <= room:
        return TailSegment(text, segment.semantic)
    start = len(text) - (len(text) * room) // count
    if start >= len(text):
        return None  # the room holds less than one character's share of the ids
    # To the next word start; in text written without spaces (wide CJK characters) any character starts one.
    if unicodedata.east_asian_width(text[start]) not in ("W", "F") and text[start - 1] != " ":
        following = text.find(" ", start)
        if following < 0:
            return None  # the last word alone is longer than the room
        start = following + 1
    kept = text[start:].strip()
    if not kept:
        return None
    tokens = min(room, max(1, round(count * len(kept) / len(text))))
    return TailSegment(kept, segment.semantic[-tokens:])


def tail_of(segments: Sequence[TailSegment], max_tokens: int) -> TailSegment | None:
    """The last `max_tokens` ids of `segments` (in speaking order) and the text they speak, joined as the
    continuation prompt joins a transcript (a space unless CJK). None when nothing was spoken."""
    kept: list[TailSegment] = []
    total = 0
    for segment in reversed(segments):
        room = max_tokens - total
        part = cut_segment(segment, room)
        if part is None:
            break
        kept.insert(0, part)
        total += len(part.semantic)
        if len(part.semantic) < len(segment.semantic):
            break  # this one was cut: anything earlier is beyond the bound
    if not kept:
        return None
    text = kept[0].text
    for part in kept[1:]:
        text = join_reference_text(text, part.text)
    return TailSegment(text, tuple(s for part in kept for s in part.semantic))
