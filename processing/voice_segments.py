"""Voice segments in request text: `[voice:NAME]` switches the voice for the text after it.

`Hello. [voice:ana] Hi there! [voice:ben] Good morning.` is three segments: "Hello." in the request's own voice,
"Hi there!" in `ana`, "Good morning." in `ben`. A marker holds until the next one; NAME is a voice id as the route
accepts it (no spaces or brackets). Markers are never spoken; a segment with nothing but spaces is dropped.
`has_voice_markers` tells text without a marker (most) by two substring tests, before any pattern runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# `[voice:NAME]`, the word "voice" in any case, spaces allowed inside the brackets around NAME.
VOICE_MARKER_RE = re.compile(r"\[\s*voice\s*:\s*([^\[\]\s]{1,128})\s*\]", re.IGNORECASE)
_MARKER_START = "voice"


@dataclass(frozen=True, slots=True)
class VoiceSegment:
    """Text spoken in one voice: `voice` None is the request's own voice."""

    voice: str | None
    text: str


def has_voice_markers(text: str) -> bool:
    """Whether `text` holds a `[voice:NAME]` marker (a cheap test first: most texts have no bracket)."""
    if "[" not in text or _MARKER_START not in text.lower():
        return False
    return VOICE_MARKER_RE.search(text) is not None


def split_voice_segments(text: str) -> list[VoiceSegment]:
    """The text's segments in order, markers removed; blank segments dropped."""
    segments: list[VoiceSegment] = []
    voice: str | None = None
    start = 0
    for match in VOICE_MARKER_RE.finditer(text):
        segments.append(VoiceSegment(voice, text[start : match.start()]))
        voice, start = match.group(1), match.end()
    segments.append(VoiceSegment(voice, text[start:]))
    return [s for s in segments if s.text.strip()]


def voice_names(text: str) -> list[str]:
    """The voices the markers of `text` name, each once, in order of first use."""
    if not has_voice_markers(text):
        return []
    return list(dict.fromkeys(m.group(1) for m in VOICE_MARKER_RE.finditer(text)))


def strip_voice_markers(text: str) -> str:
    """`text` as written, without its markers (what the words of the spoken text map back to)."""
    return VOICE_MARKER_RE.sub(" ", text)


def voice_marker(name: str) -> str:
    """The marker that switches to voice `name`; ValueError when `name` cannot be written in one."""
    marker = f"[voice:{name}]"
    match = VOICE_MARKER_RE.fullmatch(marker)
    if match is None or match.group(1) != name:
        raise ValueError(f"voice id {name!r} cannot be used in a voice segment (no spaces or brackets)")
    return marker
