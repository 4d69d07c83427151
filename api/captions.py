"""A request's word timestamps as captions: SubRip (SRT) and WebVTT cues of a few words each."""

from __future__ import annotations

from collections.abc import Sequence

from core.align import WordSpan
from core.align.units import pause_weight
from processing.tags import is_tag

MAX_CUE_WORDS = 8
MAX_CUE_CHARS = 42  # one subtitle line, the usual broadcast limit


def _cues(words: Sequence[WordSpan]) -> list[tuple[float, float, str]]:
    cues: list[tuple[float, float, str]] = []
    current: list[WordSpan] = []
    for word in words:
        if is_tag(word.text):  # `[excited]` changes the voice; it is not said
            continue
        text = " ".join(w.text for w in [*current, word])
        if current and (len(current) >= MAX_CUE_WORDS or len(text) > MAX_CUE_CHARS):
            cues.append((current[0].start, current[-1].end, " ".join(w.text for w in current)))
            current = []
        current.append(word)
        if pause_weight(word.text) >= 2:  # a sentence ends the cue
            cues.append((current[0].start, current[-1].end, " ".join(w.text for w in current)))
            current = []
    if current:
        cues.append((current[0].start, current[-1].end, " ".join(w.text for w in current)))
    return cues


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def to_srt(words: Sequence[WordSpan]) -> str:
    blocks = [
        f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n"
        for i, (a, b, text) in enumerate(_cues(words), 1)
    ]
    return "\n".join(blocks)


def to_vtt(words: Sequence[WordSpan]) -> str:
    blocks = [f"{_clock(a, '.')} --> {_clock(b, '.')}\n{text}\n" for a, b, text in _cues(words)]
    return "WEBVTT\n\n" + "\n".join(blocks)
