"""Split long text into chunks the model speaks well (Indic- and CJK-aware).

The model reads about 220 characters reliably in one go; longer text is cut into chunks of about
`max_chars` (170) so each chunk is generated separately and the audio is crossfaded.

Rules, in order of preference:
1. Sentence boundaries: a word ending in . ! ? ; … or a Devanagari danda । / double danda ॥, the
   Urdu full stop ۔, the CJK full stops 。！？ (optionally followed by closing quotes or brackets),
   and line breaks. Sentences are packed greedily into chunks of at most `max_chars`.
2. A sentence longer than `max_chars` is cut at clause marks (, ; : and dashes, also ，、；：).
3. A clause still too long is cut between words.

Guarantees: a chunk never ends inside a word of at most `max_chars` characters, a tag (`[excited]`) stays
whole and stays with the text after it, no chunk is empty, and no chunk is longer than `max_chars` (plus
tags riding with a word): a longer word is cut into `max_chars` slices, the only cut inside a word. Words are whitespace-separated tokens, except that scripts written without spaces
may also break right after a full stop (CJK 。！？, Devanagari । ॥) inside a token; inside a chunk
the original spacing is kept. So `" ".join(chunks).split() == text.split()` whenever no such
break was needed, and the non-space characters always come back unchanged and in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from processing.tags import is_tag

DEFAULT_MAX_CHARS = 170
DEFAULT_THRESHOLD = 220

_CLOSERS = "\"'\u201d\u2019)\\]}\u00bb\u300d\u300f\uff09"
_SENTENCE_END_RE = re.compile(r"(?:[.!?;\u2026\u0964\u0965\u06d4\u3002\uff01\uff1f])[" + _CLOSERS + r"]*$")
_CLAUSE_END_RE = re.compile(r"[,;:\u2014\u2013\uff0c\u3001\uff1b\uff1a-][" + _CLOSERS + r"]*$")
_DASHES = frozenset({"-", "\u2013", "\u2014", "--"})
# Inside one whitespace token: after a full stop of a script that writes no spaces (or glued dandas).
_IN_TOKEN_STOP_RE = re.compile(
    r"(?<=[\u3002\uff01\uff1f\u0964\u0965])(?=[^" + _CLOSERS + r"\u3002\uff01\uff1f\u0964\u0965])"
)
_IN_TOKEN_CLAUSE_RE = re.compile(r"(?<=[\uff0c\u3001\uff1b\uff1a])(?=[^" + _CLOSERS + r"])")
_TOKEN_RE = re.compile(r"\S+")


@dataclass(slots=True)
class _Unit:
    """One or more words that must stay together (a tag plus the word after it)."""

    text: str
    glued: bool  # no whitespace before it in the source (a break inside a spaceless token)
    sentence_end: bool = False
    clause_end: bool = False


def _length(units: list[_Unit]) -> int:
    return sum(len(u.text) for u in units) + sum(1 for u in units[1:] if not u.glued)


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for u in units[1:]:
        parts.append(u.text if u.glued else " " + u.text)
    return "".join(parts)


def _atoms(text: str, max_chars: int) -> list[tuple[str, bool, bool]]:
    """(piece, glued, newline_before) for every whitespace token, broken inside spaceless runs."""
    atoms: list[tuple[str, bool, bool]] = []
    prev_end = 0
    for m in _TOKEN_RE.finditer(text):
        newline = "\n" in text[prev_end : m.start()]
        prev_end = m.end()
        token = m.group(0)
        pieces = _IN_TOKEN_STOP_RE.split(token) if len(token) > 1 else [token]
        split_pieces: list[str] = []
        for piece in pieces:
            parts = _IN_TOKEN_CLAUSE_RE.split(piece) if len(piece) > max_chars else [piece]
            for part in parts:
                # A "word" longer than a chunk (a URL, 'aaaa...', '1,1,1,...') is cut into chunk-sized slices;
                # left whole it would be one chunk no prompt can hold.
                split_pieces.extend(part[i : i + max_chars] for i in range(0, len(part), max_chars))
        for i, piece in enumerate(split_pieces):
            if piece:
                atoms.append((piece, i > 0, newline and i == 0))
    return atoms


def _units(text: str, max_chars: int) -> list[_Unit]:
    units: list[_Unit] = []
    pending_tags: list[tuple[str, bool]] = []
    for piece, glued, newline in _atoms(text, max_chars):
        if newline and units:
            units[-1].sentence_end = True  # a line break ends a sentence (headings, lists)
        if is_tag(piece):
            pending_tags.append((piece, glued))
            continue
        if pending_tags:  # tags ride with the text that follows them
            first_glued = pending_tags[0][1]
            joined = [pending_tags[0][0]] + [("" if g else " ") + t for t, g in pending_tags[1:]]
            piece = "".join(joined) + ("" if glued else " ") + piece
            glued = first_glued
            pending_tags = []
        units.append(
            _Unit(
                piece,
                glued,
                sentence_end=_SENTENCE_END_RE.search(piece) is not None,
                clause_end=piece in _DASHES or _CLAUSE_END_RE.search(piece) is not None,
            )
        )
    for tag, glued in pending_tags:  # trailing tags: keep them with the last words
        if units:
            units[-1].text += ("" if glued else " ") + tag
        else:
            units.append(_Unit(tag, glued))
    return units


def _split_on(units: list[_Unit], flag: str) -> list[list[_Unit]]:
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    for u in units:
        current.append(u)
        if getattr(u, flag):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def _pack(groups: list[list[_Unit]], max_chars: int) -> list[list[_Unit]]:
    """Greedy: append each group to the current chunk while it fits, else start a new chunk."""
    chunks: list[list[_Unit]] = []
    current: list[_Unit] = []
    for group in groups:
        if current and _length(current + group) > max_chars:
            chunks.append(current)
            current = []
        current = current + group
    if current:
        chunks.append(current)
    return chunks


def _fit_sentence(sentence: list[_Unit], max_chars: int) -> list[list[_Unit]]:
    """Cut one sentence into groups of at most max_chars: clauses first, then words."""
    if _length(sentence) <= max_chars:
        return [sentence]
    groups: list[list[_Unit]] = []
    for clause in _split_on(sentence, "clause_end"):
        if _length(clause) <= max_chars:
            groups.append(clause)
        else:
            groups.extend(_pack([[u] for u in clause], max_chars))
    return _pack(groups, max_chars)


def split_text(
    text: str, max_chars: int = DEFAULT_MAX_CHARS, threshold: int = DEFAULT_THRESHOLD
) -> list[str]:
    """Chunks of `text` for synthesis: `[text]` when it is at most `threshold` characters.

    Blank text gives []. See the module docstring for where cuts are made.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    if not text.strip():
        return []
    if len(text) <= threshold:
        return [text]
    groups: list[list[_Unit]] = []
    for sentence in _split_on(_units(text, max_chars), "sentence_end"):
        groups.extend(_fit_sentence(sentence, max_chars))
    return [_join(chunk) for chunk in _pack(groups, max_chars)]
