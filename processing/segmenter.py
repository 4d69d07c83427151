"""Cut text that arrives in pieces (a WebSocket, an LLM writing) at sentence boundaries, as soon as it can."""

from __future__ import annotations

import re

from processing.chunking import split_text

_CLOSERS = "\"'\u201d\u2019)\\]}\u00bb\u300d\u300f\uff09"
# . ! ? … and the Devanagari/Urdu stops end a sentence when whitespace follows (so "3.5" and "a.m." never cut).
_SPACED_END = re.compile(r"[.!?\u2026\u0964\u0965\u06d4]+[" + _CLOSERS + r"]*(?=\s)")
# Scripts written without spaces: their full stops end a sentence wherever the next character is not a closer.
_UNSPACED_END = re.compile(r"[\u3002\uff01\uff1f\u0964\u0965]+[" + _CLOSERS + r"]*(?=[^" + _CLOSERS + r"])")
# A period after these words is an abbreviation, not the end of a sentence.
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "e.g", "i.e", "mt"})
_LEADING_PUNCT = "\"'\u201c\u2018([{\u00ab"
# A piece that ends a sentence (Pipecat sends one sentence per message, with no space between them).
_ENDS_SENTENCE = re.compile(r"[.!?\u2026\u0964\u0965\u06d4]+[" + _CLOSERS + r"]*$")


class TextSegmenter:
    """Buffers text pieces (concatenated verbatim, except that a piece starting a new sentence right after one
    that ended a sentence is joined with a space) and returns the parts that are ready to synthesise.

    A part is ready when the buffer holds complete sentences that together are at least `min_words` words
    (or `min_chars` characters, for scripts without spaces): everything up to the last such sentence end is
    returned as one part (the caller splits long parts like long HTTP text). A buffer longer than `threshold`
    with no sentence end is cut between words into parts of about `target` characters. `flush()` returns
    whatever is left. Parts are stripped and never blank.
    """

    def __init__(
        self, *, threshold: int = 220, target: int = 170, min_words: int = 3, min_chars: int = 12
    ) -> None:
        self.threshold = threshold
        self.target = target
        self.min_words = min_words
        self.min_chars = min_chars
        self._buffer = ""

    @property
    def pending(self) -> str:
        return self._buffer

    def push(self, piece: str) -> list[str]:
        if self._starts_next_sentence(piece):
            self._buffer += " "  # "here." + "This": the pieces were two sentences, apart as words too
        self._buffer += piece
        parts: list[str] = []
        end = self._last_sentence_end()
        if end:
            parts.extend(self._whole(self._buffer[:end]))
            self._buffer = self._buffer[end:].lstrip()
        if len(self._buffer) > self.threshold:
            parts.extend(self._cut_long_buffer())
        return parts

    def flush(self) -> list[str]:
        text, self._buffer = self._buffer, ""
        return self._whole(text)

    # ------------------------------------------------------------------ internals
    def _starts_next_sentence(self, piece: str) -> bool:
        """The buffer ends a sentence and `piece` begins the next with no whitespace between: a sentence end all
        the same when the piece starts with a capital or a letter of a script without case ("3." + "5" and
        "example." + "com" stay one word)."""
        if not piece or not self._buffer or not _ENDS_SENTENCE.search(self._buffer[-8:]):
            return False
        first = piece[0]
        return first.isalpha() and not first.islower()

    def _long_enough(self, text: str) -> bool:
        return len(text.split()) >= self.min_words or len("".join(text.split())) >= self.min_chars

    def _is_abbreviation(self, match: re.Match[str]) -> bool:
        if match.group(0) != ".":
            return False
        # Only the last 32 characters: an abbreviation is a short word, and the whole prefix would make a message
        # of many "a. a. a." quadratic.
        before = self._buffer[max(0, match.start() - 32) : match.start()].rsplit(None, 1)
        word = before[-1].lstrip(_LEADING_PUNCT).lower() if before else ""
        return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())

    def _last_sentence_end(self) -> int:
        ends = [m.end() for m in _SPACED_END.finditer(self._buffer) if not self._is_abbreviation(m)]
        ends += [m.end() for m in _UNSPACED_END.finditer(self._buffer)]
        if not ends:
            return 0
        end = max(ends)  # a longer head is long enough whenever a shorter one is
        return end if self._long_enough(self._buffer[:end]) else 0

    def _cut_long_buffer(self) -> list[str]:
        """A run-on buffer: emit all but its last part (which may still grow), cut between words."""
        last_space = max(self._buffer.rfind(" "), self._buffer.rfind("\n"), self._buffer.rfind("\t"))
        if last_space <= 0:
            if len(self._buffer) <= 2 * self.threshold:
                return []
            text, self._buffer = self._buffer, ""  # no spaces at all: split_text cuts inside such runs
            return self._split(text)
        head, tail = self._buffer[:last_space], self._buffer[last_space:]
        parts = self._split(head)
        if len(parts) > 1:
            self._buffer = parts.pop() + tail
        else:
            self._buffer = tail.lstrip()
        return parts

    @staticmethod
    def _whole(text: str) -> list[str]:
        text = text.strip()
        return [text] if text else []

    def _split(self, text: str) -> list[str]:
        text = text.strip()
        if not text:
            return []
        return [
            p.strip() for p in split_text(text, max_chars=self.target, threshold=self.target) if p.strip()
        ]
