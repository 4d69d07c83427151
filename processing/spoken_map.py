"""Which spoken words each written word became: the map from the text a user sent to the text the model spoke.

Normalisation rewrites in several passes ("$5" -> "five dollars", "15/03/2024" -> "March fifteenth, twenty twenty-
four"), tags vanish, spacing is tidied. Rather than thread offsets through every pass, the two word sequences are
matched afterwards (difflib's longest-matching-blocks on case- and punctuation-folded words): equal words pair up,
and each stretch between matches becomes one group, so a written token that was expanded gets all of its spoken
words. A group of several written tokens is split further when each token, normalised alone, gives exactly the
group's words. Words are `core.align.split_words` tokens on both sides (Han characters one by one).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from core.align.units import split_words
from processing.normalize import normalize_text
from processing.tags import is_tag

_FOLD_RE = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class TokenGroup:
    """Written tokens (as sent) and the spoken words said for them; `spoken` is empty for a tag or a symbol
    normalisation dropped."""

    written: tuple[str, ...]
    spoken: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpokenMap:
    groups: tuple[TokenGroup, ...]

    @property
    def spoken_words(self) -> list[str]:
        return [w for g in self.groups for w in g.spoken]

    @property
    def written_words(self) -> list[str]:
        return [w for g in self.groups for w in g.written]


def spoken_words_of(text: str) -> list[str]:
    """The words of text the model speaks, tags left out (a tag changes the voice, it is not heard)."""
    return [w for w in split_words(text) if not is_tag(w)]


def _fold(word: str) -> str:
    return _FOLD_RE.sub("", word.casefold())


def _split_group(written: list[str], spoken: list[str]) -> list[TokenGroup]:
    if len(written) > 1 and spoken:
        counts = [len(split_words(normalize_text(w).text)) for w in written]
        if sum(counts) == len(spoken) and all(counts):
            groups, at = [], 0
            for word, count in zip(written, counts, strict=True):
                groups.append(TokenGroup((word,), tuple(spoken[at : at + count])))
                at += count
            return groups
    return [TokenGroup(tuple(written), tuple(spoken))]


def spoken_map(written_text: str, spoken_text: str) -> SpokenMap:
    """Group the words of `written_text` (as sent) with the words of `spoken_text` (what the model was asked to
    say for it), in order; every word of either text is in exactly one group."""
    written = split_words(written_text)
    spoken = spoken_words_of(spoken_text)
    matcher = difflib.SequenceMatcher(
        None, [_fold(w) for w in written], [_fold(w) for w in spoken], autojunk=False
    )
    groups: list[TokenGroup] = []
    orphans: list[str] = []  # spoken words no written word accounts for: they join a neighbouring group
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pairs = [
                TokenGroup((written[i],), (spoken[j],))
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
            if orphans:
                pairs[0] = TokenGroup(pairs[0].written, (*orphans, *pairs[0].spoken))
                orphans = []
            groups += pairs
        elif op == "insert":
            if groups:
                last = groups[-1]
                groups[-1] = TokenGroup(last.written, (*last.spoken, *spoken[j1:j2]))
            else:
                orphans += spoken[j1:j2]
        else:  # replace or delete
            groups += _split_group(written[i1:i2], [*orphans, *spoken[j1:j2]])
            orphans = []
    if (
        orphans
    ):  # only spoken words and no written word at all: nothing to hang them on but a group of their own
        groups.append(TokenGroup((), tuple(orphans)))
    return SpokenMap(tuple(groups))
