"""The SSML subset every route that takes text reads (`looks_like_ssml` says when the HTTP routes do; ElevenLabs'
sockets when a client sets `enable_ssml_parsing=true`; Cartesia's always); docs/api/ssml.md is the user's page.

- `<break time="1.5s"/>` (or `"500ms"`) is a pause of that length, at most `MAX_BREAK_S` (ElevenLabs' cap: a whole
  text asking for more is refused by `ssml_problem`, a socket's is clamped); a break
  with `strength` instead takes SSML's usual lengths (none 0 ... x-strong 1 s), a bare `<break/>` half a second.
- `<p>` and `<s>` start a paragraph or sentence: a pause (`PARAGRAPH_S`, `SENTENCE_S`) after text already spoken.
- `<sub alias="...">text</sub>` speaks the alias; `<say-as interpret-as="...">` (and Cartesia's `<spell>`) spells
  out the forms the normaliser knows (`say_as`): cardinal/number, ordinal, characters/spell-out, digits,
  telephone; date, time and any other form are spoken as written (the normaliser reads dates and times).
- `<prosody rate="...">` is a speed (`prosody_rate`); only a rate around all the spoken text is used, as the
  request's speed (`SsmlParser.uniform_rate`): the audio chain has one speed per request.
- `<phoneme alphabet="..." ph="...">word</phoneme>` is read as its word: Spark-TTS takes no phoneme input.
- Every other tag (`<speak>`, `<emphasis>`, `<voice>`, `<lang>`, unknown ones) is dropped and its text kept;
  XML entities (`&amp;`, `&lt;`) are decoded.

Text that arrives in pieces (a WebSocket) is read by `SsmlReader` before it is cut into sentences, so a tag split
across pieces or longer than a cut is never spoken or charged as text.

The result is text and pauses in order; the caller speaks the text and puts real silence where the pauses are,
through a `BreakBudget` per request: breaks with nothing spoken between them (only punctuation, tags or spaces, or
split across messages) are one gap of at most `MAX_BREAK_S`, and all gaps of a request together at most its total
(`TTS_SSML_MAX_TOTAL_BREAK_S`, 60 s by default); and all requests of one API key together at most
`MAX_BREAK_S_PER_MINUTE` a minute (`SilenceWindow`, one per key in services/pipeline/silence_quota.py); silence
past any of them is dropped.
"""

from __future__ import annotations

import difflib
import functools
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from processing import numbers_en
from processing.tags import KNOWN_TAGS

MAX_BREAK_S = 3.0
# Break silence one API key may add a minute, all its requests together (refilled evenly: a token bucket).
MAX_BREAK_S_PER_MINUTE = 120.0
BARE_BREAK_S = 0.5
STRENGTH_S = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.75, "x-strong": 1.0}

# The pause `<p>` and `<s>` make between spoken texts (SSML's "strong" and "weak" boundaries).
PARAGRAPH_S = STRENGTH_S["strong"]
SENTENCE_S = STRENGTH_S["weak"]
# `<prosody rate>` keywords as speed factors.
RATE_WORDS = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}

_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][\w:.-]*)((?:[^<>\"']|\"[^\"]*\"|'[^']*')*)>")
_TIME = re.compile(r"""\btime\s*=\s*["']\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s)\s*["']""", re.I)
_STRENGTH = re.compile(r"""\bstrength\s*=\s*["']\s*([\w-]+)\s*["']""", re.I)
_RATE = re.compile(r"([+-]?)(\d+(?:\.\d+)?|\.\d+)\s*(%?)")
_SSML_HINT = re.compile(r"^\s*<\s*speak\b|<\s*(?:break|sub|say-as|prosody|phoneme)\b", re.I)
# A tag-shaped token: a near miss of a tag this module reads (`<brake time="1s"/>`) makes a text SSML, so that
# it is refused rather than spoken.
_TAG_SHAPED = re.compile(r"<\s*/?\s*([A-Za-z][\w:.-]{0,30})\b[^<>]{0,200}>")


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


class SsmlParser:
    """SSML read in order, possibly over several calls to `feed` (each ending outside any tag): text pieces and
    pauses (seconds). Keeps what spans calls: an open `<sub>` or `<say-as>`, the `<prosody>` rates in force, and
    whether any text was spoken yet (`<p>`/`<s>` pause only between texts)."""

    def __init__(self) -> None:
        self._held: tuple[str, str | None] | None = (
            None  # an open <sub>/<say-as>/<spell>: (name, say-as form)
        )
        self._held_text = ""
        self._rates: list[float | None] = []  # the <prosody> elements open, innermost last (None: no rate)
        self._spoken = False
        self.spoken_rates: set[float | None] = set()  # the rate in force at each spoken text (None: none)

    @property
    def uniform_rate(self) -> float | None:
        """The one `<prosody rate>` all spoken text was inside, if there is one (module doc)."""
        if len(self.spoken_rates) == 1:
            return next(iter(self.spoken_rates))
        return None

    def feed(self, text: str) -> list[str | float]:
        out: list[str | float] = []
        position = 0
        for tag in _TAG.finditer(text):
            self._text(html.unescape(text[position : tag.start()]), out)
            position = tag.end()
            self._tag(
                tag.group(1) == "/", tag.group(2).lower(), tag.group(3), tag.group(0).endswith("/>"), out
            )
        self._text(html.unescape(text[position:]), out)
        return _merged(out)

    def finish(self) -> list[str | float]:
        """The end: an unclosed `<sub>` or `<say-as>` speaks what it held, as written."""
        out: list[str | float] = []
        if self._held is not None:
            held, self._held = self._held_text, None
            self._held_text = ""
            self._text(held, out)
        return _merged(out)

    def _text(self, text: str, out: list[str | float]) -> None:
        if not text:
            return
        if self._held is not None:
            if self._held[0] != "sub":
                self._held_text += text
                if len(self._held_text) > MAX_TAG_CHARS:  # too long for a say-as: spoken as written
                    self._held, held, self._held_text = None, self._held_text, ""
                    self._text(held, out)
            return  # a <sub alias>'s own text is not spoken
        if any(c.isalnum() for c in text):
            self._spoken = True
            self.spoken_rates.add(self._rates[-1] if self._rates else None)
        out.append(text)

    def _tag(self, closing: bool, name: str, attributes: str, empty: bool, out: list[str | float]) -> None:
        if self._held is not None:
            if closing and name == self._held[0]:
                held_name, form = self._held
                text, self._held, self._held_text = self._held_text, None, ""
                if held_name != "sub":
                    self._text(say_as(form, text), out)
            return  # tags inside a <sub> or <say-as> are dropped
        if name == "break" and not closing:
            out.append(break_seconds(attributes))
        elif name in ("p", "s") and not closing and self._spoken:
            out.append(PARAGRAPH_S if name == "p" else SENTENCE_S)
        elif name == "sub" and not closing and not empty:
            alias = _attribute(attributes, "alias")
            if alias is not None:
                self._text(alias, out)
                self._held = ("sub", None)
        elif name == "say-as" and not closing and not empty:
            self._held = ("say-as", _attribute(attributes, "interpret-as"))
        elif name == "spell" and not closing and not empty:  # Cartesia's spelling tag
            self._held = ("spell", "characters")
        elif name == "prosody" and not empty:
            if closing:
                if self._rates:
                    self._rates.pop()
            else:
                self._rates.append(prosody_rate(_attribute(attributes, "rate")))


def parse_ssml(text: str) -> list[str | float]:
    """Text pieces and pauses (seconds) in order: no empty text, no zero pause, neighbours of one kind merged."""
    parser = SsmlParser()
    return _merged(parser.feed(text) + parser.finish())


# Tags whose end the text after them depends on: left open, the rest would be dropped (<sub>) or read as one form.
_MUST_CLOSE = ("sub", "say-as", "spell")
_KNOWN_TAG_START = re.compile(
    r"<\s*/?\s*(speak|break|p|s|sub|say-as|spell|prosody|phoneme|emphasis|voice|lang)\b", re.I
)


def uniform_rate(text: str) -> float | None:
    """The `<prosody rate>` around all of an SSML text's spoken words, if one is (`SsmlParser.uniform_rate`)."""
    parser = SsmlParser()
    parser.feed(text)
    parser.finish()
    return parser.uniform_rate


def ssml_problem(text: str) -> str | None:
    """What a complete SSML text asks that would not be spoken as written, as a sentence naming the tag and its
    position (a route refuses it with a 400); None when there is nothing. A break longer than MAX_BREAK_S, a
    `<sub>`/`<say-as>`/`<spell>` never closed, a tag with no `>`, a misspelt tag (`<brake>`), a break attribute
    other than `time` and `strength` or a value of theirs that cannot be read. Sockets, whose text arrives in pieces, clamp and
    speak instead (module doc)."""
    tags = list(_TAG.finditer(text))
    for tag in tags:
        if tag.group(2).lower() == "break" and tag.group(1) != "/":
            time = _TIME.search(tag.group(3))
            if time is not None:
                seconds = float(time.group(1)) / (1000.0 if time.group(2).lower() == "ms" else 1.0)
                if seconds > MAX_BREAK_S:
                    return (
                        f"{tag.group(0)} at position {tag.start()} asks for {seconds:g} s of silence; a break is at "
                        f"most {MAX_BREAK_S:g} s (breaks in a row are one pause of at most {MAX_BREAK_S:g} s)"
                    )
    open_tags: list[tuple[str, re.Match[str]]] = []
    for tag in tags:
        name = tag.group(2).lower()
        if name in _MUST_CLOSE and not tag.group(0).endswith("/>"):
            if tag.group(1) != "/":
                open_tags.append((name, tag))
            elif open_tags and open_tags[-1][0] == name:
                open_tags.pop()
    if open_tags:
        name, tag = open_tags[0]
        return f"{tag.group(0)} at position {tag.start()} is never closed; end it with </{name}>"
    covered = [(t.start(), t.end()) for t in tags]
    for start in _KNOWN_TAG_START.finditer(text):
        if not any(a <= start.start() < b for a, b in covered):
            return f"the tag {start.group(0)!r} at position {start.start()} has no closing '>'"
    for tag in tags:
        problem = _misspelt(tag) or (_break_problem(tag) if tag.group(2).lower() == "break" else None)
        if problem:
            return problem
    return None


# What `<break>` takes; a misspelt attribute (`tme=`) would be a bare half-second break, silently.
_BREAK_ATTRIBUTES = frozenset({"time", "strength"})
_ATTRIBUTE = re.compile(r"""([^\s=/"']+)\s*(?:=\s*("[^"]*"|'[^']*'|[^\s"'/>]+))?""")
_BREAK_TIME = re.compile(r"""\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s)\s*""", re.I)
# Tags this module acts on: a tag whose name is close to one of them but not it (`<brake>`) is a typing mistake.
_ACTED_ON = ("speak", "break", "sub", "say-as", "spell", "prosody", "phoneme")
_OTHER_SSML = frozenset(
    "p s emphasis voice lang audio mark w token paragraph sentence desc lexicon lookup meta metadata".split()
)


@functools.lru_cache(maxsize=1024)  # a text of many tags asks about few names
def _close_to_read_tag(name: str) -> str | None:
    """The tag this module reads that `name` is a near miss of (`brake`: `break`), else None; SSML's other tags
    and the emotion tags (`<breath>`, processing/tags.py) are not near misses."""
    name = name.lower()
    if name in _ACTED_ON or name in _OTHER_SSML or name in KNOWN_TAGS or ":" in name:
        return None
    close = difflib.get_close_matches(name, _ACTED_ON, n=1, cutoff=0.75)
    return close[0] if close else None


def _misspelt(tag: re.Match[str]) -> str | None:
    """A sentence naming a tag spelt like one this module reads but not it (`<brake>` for `<break>`), else None."""
    close = _close_to_read_tag(tag.group(2))
    if close is None:
        return None
    return f"{tag.group(0)} at position {tag.start()} is not an SSML tag this service reads; did you mean <{close}>?"


def _break_problem(tag: re.Match[str]) -> str | None:
    """A sentence naming what a `<break>` holds that it does not take (an attribute, a time or strength it cannot
    read), else None."""
    if tag.group(1) == "/":
        return None
    for found in _ATTRIBUTE.finditer(tag.group(3)):
        name, value = found.group(1).lower(), (found.group(2) or "").strip("\"'")
        if name not in _BREAK_ATTRIBUTES:
            return (
                f"{tag.group(0)} at position {tag.start()} has an attribute {name!r} a break does not take; "
                'a break takes time="1.5s" (or "500ms") or strength="weak" (none, x-weak, weak, medium, strong, '
                "x-strong)"
            )
        if name == "time" and not _BREAK_TIME.fullmatch(value):
            return f'{tag.group(0)} at position {tag.start()} has a time it cannot read; write time="1.5s" or "500ms"'
        if name == "strength" and value.lower() not in STRENGTH_S:
            return (
                f"{tag.group(0)} at position {tag.start()} has a strength it does not know; one of "
                f"{', '.join(STRENGTH_S)}"
            )
    return None


def looks_like_ssml(text: str) -> bool:
    """Whether a route that takes plain text or SSML reads `text` as SSML: it starts with `<speak` or holds one of
    the tags of this module (`<break`, `<sub`, `<say-as`, `<prosody`, `<phoneme`) or a near miss of one (so that
    `ssml_problem` refuses it). Plain text costs one `in`."""
    if "<" not in text:
        return False
    if _SSML_HINT.search(text) is not None:
        return True
    return any(_close_to_read_tag(m.group(1)) for m in _TAG_SHAPED.finditer(text))


def _merged(items: list[str | float]) -> list[str | float]:
    out: list[str | float] = []
    for item in items:
        if isinstance(item, str):
            if not item:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += item
                continue
        elif item <= 0:
            continue
        elif out and isinstance(out[-1], float):
            out[-1] = min(out[-1] + item, MAX_BREAK_S)
            continue
        out.append(item)
    return out


def _attribute(attributes: str, name: str) -> str | None:
    found = re.search(rf"""(?:^|\s){re.escape(name)}\s*=\s*(?:"([^"]*)"|'([^']*)')""", attributes, re.I)
    if found is None:
        return None
    return html.unescape(found.group(1) if found.group(1) is not None else found.group(2))


def prosody_rate(value: str | None) -> float | None:
    """`<prosody rate>` as a speed factor: a keyword, a percentage ("150%" of normal, "+20%"/"-10%" relative) or
    a plain factor ("1.2"); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip().lower()
    if value in RATE_WORDS:
        return RATE_WORDS[value]
    found = _RATE.fullmatch(value)
    if found is None:
        return None
    sign, number, percent = found.group(1), float(found.group(2)), found.group(3)
    if percent:
        factor = 1.0 + (number if sign == "+" else -number) / 100.0 if sign else number / 100.0
    else:
        factor = number
    return factor if factor > 0 else None


def say_as(interpret_as: str | None, text: str) -> str:
    """`<say-as>`'s text as words where the form is one the normaliser reads the same way (module doc); any other
    form, or text that is not of the form, is spoken as written (the normaliser still reads it)."""
    kind = (interpret_as or "").strip().lower()
    raw = text.strip()
    compact = raw.replace(",", "").replace("_", "")
    if kind in ("cardinal", "number") and re.fullmatch(r"-?\d{1,15}", compact):
        value = int(compact)
        return ("minus " if value < 0 else "") + numbers_en.cardinal(abs(value))
    if kind == "ordinal":
        found = re.fullmatch(r"(\d{1,15})(?:st|nd|rd|th)?\.?", compact, re.I)
        if found:
            return numbers_en.ordinal(int(found.group(1)))
    if kind in ("characters", "spell-out", "verbatim", "letters"):
        return " ".join(
            numbers_en.digits(c) if c.isascii() and c.isdigit() else c for c in raw if not c.isspace()
        )
    if kind in ("digits", "telephone"):
        groups = re.findall(r"\d+", raw)
        if groups:
            return ", ".join(numbers_en.digits(group) for group in groups)
    return raw


class SsmlReader:
    """SSML arriving in pieces: `push` returns the items (`SsmlParser.feed`) of everything up to an unfinished tag
    or entity at the end, which waits for the next piece; `flush` returns the rest (an unclosed "<" is text, an
    unclosed `<say-as>` is spoken as written)."""

    def __init__(self) -> None:
        self._carry = ""
        self._parser = SsmlParser()

    def push(self, piece: str) -> list[str | float]:
        text = self._carry + piece
        cut = _unfinished_start(text)
        self._carry = text[cut:]
        return self._parser.feed(text[:cut])

    def flush(self) -> list[str | float]:
        text, self._carry = self._carry, ""
        return _merged(self._parser.feed(text) + self._parser.finish())


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
