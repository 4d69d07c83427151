"""The aligner's values: a word's span, a character's span, and one piece of text's alignment."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class WordSpan:
    """One word (as given to the aligner) heard from `start` to `end`, seconds from the audio's start.
    `score`: the CTC method's mean log-probability of the word's frames (0 best, lower worse); None for estimate."""

    text: str
    start: float
    end: float
    score: float | None = None

    def shifted(self, offset: float) -> WordSpan:
        return replace(self, start=round(self.start + offset, 3), end=round(self.end + offset, 3))

    def to_json(self) -> dict[str, str | float]:
        out: dict[str, str | float] = {"text": self.text, "start": self.start, "end": self.end}
        if self.score is not None:
            out["score"] = self.score
        return out


def clamped(spans: Iterable[WordSpan], floor: float = 0.0, ceiling: float | None = None) -> list[WordSpan]:
    """The spans made monotonic (none starts before the previous one ended, nor before `floor`) and, with
    `ceiling`, none past it; times rounded to the millisecond."""
    out: list[WordSpan] = []
    # The ceiling rounded down to the millisecond, so a rounded time never passes it.
    top = float("inf") if ceiling is None else math.floor(ceiling * 1000 + 1e-9) / 1000
    for span in spans:
        start = min(max(span.start, floor), top)
        end = min(max(span.end, start), top)
        out.append(WordSpan(span.text, round(start, 3), round(end, 3), span.score))
        floor = end
    return out


@dataclass(frozen=True, slots=True)
class CharSpan:
    text: str  # one character
    start: float
    end: float

    def to_json(self) -> dict[str, str | float]:
        return {"text": self.text, "start": self.start, "end": self.end}


# Ideographs, kana and CJK/full-width punctuation: text in these scripts has no spaces between its words.
_UNSPACED = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uff00-\uffef]")


def spaced(before: str, after: str) -> bool:
    """Whether two timed words are written with a space between them: not where both sides are Han, kana or CJK
    punctuation (`core.align.units.split_words` cuts such text into one word per character). Between Han and
    Latin text the space stays (the words do not say whether the text had one; "你好 world" is common)."""
    return bool(before and after) and not (_UNSPACED.match(before[-1]) and _UNSPACED.match(after[0]))


def character_spans(words: tuple[WordSpan, ...] | list[WordSpan]) -> tuple[CharSpan, ...]:
    """Per character of the words joined as written (a single space, none between Han characters): a word's time
    is shared by its letters and digits (punctuation takes none, at the word's edge); a space spans the gap between
    its two words."""
    out: list[CharSpan] = []
    for index, word in enumerate(words):
        if index and spaced(words[index - 1].text, word.text):
            gap_start = words[index - 1].end
            out.append(CharSpan(" ", gap_start, max(gap_start, word.start)))
        weights = [1 if ch.isalnum() else 0 for ch in word.text]
        total = sum(weights) or len(word.text)
        if not sum(weights):
            weights = [1] * len(word.text)
        step = (word.end - word.start) / total if total else 0.0
        t = word.start
        for ch, weight in zip(word.text, weights, strict=True):
            end = t + step * weight
            out.append(CharSpan(ch, round(t, 3), round(end, 3)))
            t = end
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Alignment:
    """Words in order with monotonic, non-overlapping spans inside the audio; `method` says how they were found."""

    words: tuple[WordSpan, ...]
    method: str
    duration: float  # seconds of audio aligned

    @property
    def characters(self) -> tuple[CharSpan, ...]:
        return character_spans(self.words)

    def shifted(self, offset: float) -> Alignment:
        return Alignment(tuple(w.shifted(offset) for w in self.words), self.method, self.duration)

    def scaled(self, factor: float) -> Alignment:
        """Times multiplied by `factor` (audio played `1 / factor` times as fast afterwards)."""
        if factor == 1.0:
            return self
        words = tuple(
            replace(w, start=round(w.start * factor, 3), end=round(w.end * factor, 3)) for w in self.words
        )
        return Alignment(words, self.method, self.duration * factor)

    def to_json(self) -> dict[str, list[dict[str, str | float]]]:
        return {
            "words": [w.to_json() for w in self.words],
            "characters": [c.to_json() for c in self.characters],
        }
