"""Timing units of text: which tokens get a timestamp (`split_words`) and how long each is expected to take
(`expected_units`).

A word is a whitespace-separated token, except in scripts written without spaces: each Han character (and kana)
is a word of its own, as the issue and Cartesia/ElevenLabs clients expect for Chinese. Punctuation stays glued to
the word it follows (or precedes, when it opens the token), so joining the words with spaces gives the text back
up to spacing.

Expected duration, in syllable-like units: English (any Latin-script word) counts letters, three a unit; a Han
character is one syllable, Devanagari counts aksharas (a consonant cluster with its vowel, or an independent vowel);
digits (un-normalised text) count as about a syllable and a half each; other scripts a syllable per three letters.

Where a pause may fall (`pause_weight`, `inside_words`): after punctuation, and hardly ever inside a word. Chinese is
written without spaces, so its words come from a dictionary segmenter (`rjieba`, the Rust port of jieba: a 4 MB
wheel for every platform, 60 ms to load, a microsecond a sentence; the Python `jieba` is 40 MB and unmaintained).
"""

from __future__ import annotations

import re
from functools import cache
from types import ModuleType

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff"  # CJK ideographs (+ ext. A, compat.) and kana
_HAN_RE = re.compile(f"[{_HAN}]")
# One Han character, or a run of anything else; punctuation right after a Han character rides with it.
_PIECE_RE = re.compile(rf"[{_HAN}][^\w{_HAN}]*|[^{_HAN}]+")
_WORDY_RE = re.compile(r"\w")
_DEV_CONSONANT = "\u0915-\u0939\u0958-\u095f\u0978-\u097f"
_DEV_INDEPENDENT_VOWEL_RE = re.compile("[\u0904-\u0914\u0960\u0961\u0972-\u0977]")
_DEV_AKSHARA_CONSONANT_RE = re.compile(f"[{_DEV_CONSONANT}]\u093c?(?!\u094d)")  # not followed by a virama
_DEV_RE = re.compile("[\u0900-\u097f]")
_LATIN_RE = re.compile("[A-Za-z\u00c0-\u024f]")
LETTERS_PER_SYLLABLE = 3.0  # English averages about three letters a syllable: units stay syllable-sized
_QUOTES_AND_BRACKETS = "\"'\u201c\u201d\u2018\u2019()[]{}\u00ab\u00bb\u300c\u300d\u300e\u300f\uff08\uff09"


def split_words(text: str) -> list[str]:
    """The timed tokens of `text`, in order (see the module docstring)."""
    words: list[str] = []
    for token in text.split():
        if not _HAN_RE.search(token):
            words.append(token)
            continue
        for piece in _PIECE_RE.findall(token):
            # A piece with no letter or digit (an opening quote before a Han character) joins the next one.
            if words and not _WORDY_RE.search(piece) and not _HAN_RE.match(piece):
                words[-1] += piece
            else:
                words.append(piece)
    return words


def expected_units(word: str) -> float:
    """Expected spoken length of one word, in syllables (relative: only ratios matter)."""
    if _HAN_RE.search(word):
        return float(len(_HAN_RE.findall(word)))
    units = 0.0
    if _DEV_RE.search(word):
        units += len(_DEV_AKSHARA_CONSONANT_RE.findall(word)) + len(_DEV_INDEPENDENT_VOWEL_RE.findall(word))
    latin = "".join(_LATIN_RE.findall(word))
    if latin:
        # Letters, not vowel groups: spoken length follows the sounds ("strengths" is one syllable of eight
        # sounds), and letters count those closer than syllables do.
        units += len(latin) / LETTERS_PER_SYLLABLE
    digits = sum(ch.isdigit() for ch in word)
    units += 1.5 * digits
    if units == 0:
        letters = sum(ch.isalpha() for ch in word)
        units = letters / 3.0
    return max(units, 0.5) if _WORDY_RE.search(word) else 0.25


def pause_weight(word: str) -> float:
    """How strongly the text invites a pause right after `word`: 2 after a sentence end, 1 after a clause mark."""
    tail = word.rstrip(_QUOTES_AND_BRACKETS)
    if not tail:
        return 0.0
    last = tail[-1]
    if last in ".!?\u2026\u0964\u0965\u3002\uff01\uff1f":
        return 2.0
    if last in ",;:\u2014\u2013-\uff0c\u3001\uff1b\uff1a":
        return 1.0
    return 0.0


def script_language(text: str) -> str:
    """ "zh" when the text has Han characters, "hi" when it has Devanagari, else "en" (picks a per-language model)."""
    if _HAN_RE.search(text):
        return "zh"
    if _DEV_RE.search(text):
        return "hi"
    return "en"


def inside_words(words: list[str]) -> list[bool]:
    """Per boundary (index j: the boundary before `words[j]`, 0 the start): True where `words[j-1]` and `words[j]` are
    Han characters of one Chinese word, where a speaker rarely pauses (in 我们去公园散步, the boundaries inside 我们,
    公园 and 散步). A run of Han characters is segmented whole; punctuation ends a run."""
    inside = [False] * len(words)
    start = 0
    while start < len(words):
        if not _one_han(words[start]):
            start += 1
            continue
        end = start + 1
        while end < len(words) and _one_han(words[end]) and not pause_weight(words[end - 1]):
            end += 1
        if end - start > 1:
            at = start
            for word in load_segmenter().cut("".join(_HAN_RE.findall("".join(words[start:end])))):
                for offset in range(1, len(word)):
                    inside[at + offset] = True
                at += len(word)
        start = end
    return inside


def _one_han(word: str) -> bool:
    return len(_HAN_RE.findall(word)) == 1


@cache
def load_segmenter() -> ModuleType:
    """rjieba, imported once: when Chinese is first aligned, or by the server's warm-up (60 ms and ~30 MB for its
    dictionary, which a process that never aligns Chinese does not need)."""
    import rjieba

    return rjieba
