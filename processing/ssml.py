"""The SSML subset ElevenLabs documents, read when a client sets `enable_ssml_parsing=true`.

- `<break time="1.5s"/>` (or `"500ms"`) is a pause of that length, at most `MAX_BREAK_S` (ElevenLabs' cap); a break
  with `strength` instead takes SSML's usual lengths (none 0 ... x-strong 1 s), a bare `<break/>` half a second.
- `<phoneme alphabet="..." ph="...">word</phoneme>` is read as its word: Spark-TTS takes no phoneme input.
- Every other tag (`<speak>`, `<prosody>`, `<emphasis>`, `<say-as>`, `<sub>`, `<voice>`, `<lang>`, ...) is dropped
  and its text kept; XML entities (`&amp;`, `&lt;`) are decoded.

Text that arrives in pieces (a WebSocket) is read by `SsmlReader` before it is cut into sentences, so a tag split
across pieces or longer than a cut is never spoken or charged as text.

The result is text and pauses in order; the caller speaks the text and puts real silence where the pauses are,
through a `BreakBudget` per request: breaks with nothing spoken between them (only punctuation, tags or spaces, or
split across messages) are one gap of at most `MAX_BREAK_S`, and all gaps of a request together at most its total
(`TTS_SSML_MAX_TOTAL_BREAK_S`, 60 s by default); and all requests of one API key together at most
`MAX_BREAK_S_PER_MINUTE` a minute (`SilenceWindow`); silence past any of them is dropped.
"""

from __future__ import annotations

import html
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_BREAK_S = 3.0
# Break silence one API key may add a minute, all its requests together (refilled evenly: a token bucket).
MAX_BREAK_S_PER_MINUTE = 120.0
BARE_BREAK_S = 0.5
STRENGTH_S = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.75, "x-strong": 1.0}

_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][\w:.-]*)((?:[^<>\"']|\"[^\"]*\"|'[^']*')*)>")
_TIME = re.compile(r"""\btime\s*=\s*["']\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s)\s*["']""", re.I)
_STRENGTH = re.compile(r"""\bstrength\s*=\s*["']\s*([\w-]+)\s*["']""", re.I)


# The start of a tag still waiting for its ">" ("<", "</", "<break time=..."), or of an entity waiting for its ";".
_UNFINISHED_TAG = re.compile(r"<\s*/?\s*(?:[A-Za-z][^<>]*)?")
_UNFINISHED_ENTITY = re.compile(r"&[#\w]{0,12}$")
# An unclosed "<" is held for its ">" at most this long; past it, it is text.
MAX_TAG_CHARS = 1024


def break_seconds(attributes: str) -> float:
    """The pause a `<break ...>` asks for, capped at MAX_BREAK_S."""
    time = _TIME.search(attributes)
    if time is not None:
        value = float(time.group(1)) / (1000.0 if time.group(2).lower() == "ms" else 1.0)
    else:
        strength = _STRENGTH.search(attributes)
        value = STRENGTH_S.get(strength.group(1).lower(), BARE_BREAK_S) if strength else BARE_BREAK_S
    return min(max(value, 0.0), MAX_BREAK_S)


def parse_ssml(text: str) -> list[str | float]:
    """Text pieces and pauses (seconds) in order: no empty text, no zero pause, neighbours of one kind merged."""
    out: list[str | float] = []

    def add(item: str | float) -> None:
        if isinstance(item, str):
            if not item:
                return
            if out and isinstance(out[-1], str):
                out[-1] += item
                return
        elif item <= 0:
            return
        elif out and isinstance(out[-1], float):
            out[-1] = min(out[-1] + item, MAX_BREAK_S)
            return
        out.append(item)

    position = 0
    for tag in _TAG.finditer(text):
        add(html.unescape(text[position : tag.start()]))
        position = tag.end()
        closing, name, attributes = tag.group(1), tag.group(2).lower(), tag.group(3)
        if name == "break" and not closing:
            add(break_seconds(attributes))
    add(html.unescape(text[position:]))
    return out


class SsmlReader:
    """SSML arriving in pieces: `push` returns the items (`parse_ssml`) of everything up to an unfinished tag or
    entity at the end, which waits for the next piece; `flush` returns the rest (an unclosed "<" is text)."""

    def __init__(self) -> None:
        self._carry = ""

    def push(self, piece: str) -> list[str | float]:
        text = self._carry + piece
        cut = _unfinished_start(text)
        self._carry = text[cut:]
        return parse_ssml(text[:cut])

    def flush(self) -> list[str | float]:
        text, self._carry = self._carry, ""
        return parse_ssml(text)


def _unfinished_start(text: str) -> int:
    """Where an unfinished tag or entity at the end of `text` starts (len(text): none)."""
    cut = len(text)
    start = text.rfind("<")
    if start >= 0 and len(text) - start <= MAX_TAG_CHARS and _UNFINISHED_TAG.fullmatch(text, start):
        cut = start
    entity = _UNFINISHED_ENTITY.search(text, max(0, len(text) - 14))
    if entity is not None:
        cut = min(cut, entity.start())
    return cut


class SilenceWindow:
    """The break silence one API key may still add: `per_minute` seconds, refilled evenly over a minute."""

    def __init__(
        self, per_minute: float = MAX_BREAK_S_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.level = per_minute
        self.at = clock()

    def take(self, seconds: float) -> float:
        now = self.clock()
        self.level = min(self.per_minute, self.level + (now - self.at) * self.per_minute / 60.0)
        self.at = now
        granted = max(0.0, min(seconds, self.level))
        self.level -= granted
        return granted


class SilenceWindows:
    """One `SilenceWindow` per API key, the least recently used forgotten past `capacity` (a forgotten key starts
    full again: at most one extra minute's silence for a key idle that long)."""

    def __init__(self, capacity: int = 10_000, per_minute: float = MAX_BREAK_S_PER_MINUTE) -> None:
        self.capacity = capacity
        self.per_minute = per_minute
        self._windows: OrderedDict[str, SilenceWindow] = OrderedDict()

    def of(self, key_id: str) -> SilenceWindow:
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = SilenceWindow(self.per_minute)
            while len(self._windows) > self.capacity:
                self._windows.popitem(last=False)
        self._windows.move_to_end(key_id)
        return window


KEY_SILENCE = SilenceWindows()  # the process's windows (its event loop touches them; no lock)


@dataclass
class BreakBudget:
    """The silence SSML breaks may still add to one request (module doc). Feed it the request's items in order:
    `note_text` for text, `take` for a pause (what may be made of it). A gap ends at text with a letter or digit.
    `window`: the request's key's `SilenceWindow`, shared with its other requests."""

    total_s: float
    used_s: float = 0.0
    window: SilenceWindow | None = None
    _gap_s: float = field(default=0.0, repr=False)

    def note_text(self, text: str) -> None:
        if any(c.isalnum() for c in text):
            self._gap_s = 0.0

    def take(self, seconds: float) -> float:
        granted = max(0.0, min(seconds, MAX_BREAK_S - self._gap_s, self.total_s - self.used_s))
        if self.window is not None and granted > 0:
            granted = self.window.take(granted)
        self._gap_s += granted
        self.used_s += granted
        return granted
