"""Emotion / event tags in request text.

A tag is a short tag-shaped token: `[word]`, legacy `<word>` or a legacy closing `</word>`, where
word is 2..32 ASCII letters or underscores. Nothing else in brackets counts: "[1]", "[see above]",
"a < b" and "x<y>z3" stay as they are (x<y>z3: `<y>` is too short to be a tag).

- A known tag is kept in its canonical bracket form: `[excited]` stays, `<Excited>` becomes
  `[excited]` (lower case), and a legacy closing tag `</excited>` is dropped (brackets have no end).
- An unknown tag is not passed to the model as a tag (default) or refused with `UnknownTagError`
  (`unknown="reject"`): a bracketed word is read as the word (`Press [Enter]` -> "Press Enter", `[foo_bar]` ->
  "foo bar"), because LLMs and people bracket ordinary words; an unknown angle tag (`<robotic>`, HTML such as `<b>`)
  is dropped.

`KNOWN_TAGS` is the documented vocabulary: non-verbal sounds a speech model can render and
speaking styles / emotions. It is deliberately small; add words here, not ad-hoc elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

#: Non-verbal sounds and events.
SOUND_TAGS = frozenset(
    {
        "laugh", "laughs", "laughing", "chuckle", "chuckles", "giggle", "giggles",
        "sigh", "sighs", "gasp", "gasps", "cough", "coughs", "sniff", "sniffs", "groan", "groans",
        "yawn", "yawns", "cry", "cries", "crying", "sob", "sobs", "clears_throat", "breath",
        "breathes", "inhale", "exhale", "pause", "hmm", "um", "uh",
    }
)  # fmt: skip
#: Emotions and speaking styles.
STYLE_TAGS = frozenset(
    {
        "excited", "happy", "joyful", "cheerful", "calm", "neutral", "sad", "angry", "frustrated",
        "annoyed", "surprised", "curious", "confused", "scared", "fearful", "nervous", "anxious",
        "disgusted", "sarcastic", "serious", "tired", "sleepy", "bored", "proud", "shy",
        "embarrassed", "playful", "romantic", "whisper", "whispers", "whispering", "shout",
        "shouts", "shouting", "slow", "fast", "soft", "loud",
    }
)  # fmt: skip
KNOWN_TAGS: frozenset[str] = SOUND_TAGS | STYLE_TAGS

#: One tag-shaped token. Groups: 1 = bracket name; 2 = "/" for a closing legacy tag; 3 = angle name.
TAG_PATTERN = r"\[([A-Za-z_]{2,32})\]|<(/?)([A-Za-z_]{2,32})>"
TAG_RE = re.compile(TAG_PATTERN)
_TAG_WITH_SPACE_RE = re.compile(r"([ \t]*)(?:" + TAG_PATTERN + r")([ \t]*)")


class UnknownTagError(ValueError):
    """A tag-shaped token that is not in KNOWN_TAGS, raised in "reject" mode."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        super().__init__(
            f"unknown tag {tag!r}; accepted tags are [name] with name one of: {', '.join(sorted(KNOWN_TAGS))}"
        )


@dataclass(slots=True)
class TagResult:
    text: str
    tags_found: list[str] = field(default_factory=list)  # known tags kept, canonical names, in order
    unknown_removed: list[str] = field(default_factory=list)  # unknown tag names (no longer tags), in order


def is_tag(token: str) -> bool:
    """True when the whole token is one tag-shaped token (known or not)."""
    return TAG_RE.fullmatch(token) is not None


UnknownTags = Literal["reject", "strip"]  # what becomes of a tag the model was not trained on


def process_tags(text: str, unknown: UnknownTags = "strip") -> TagResult:
    """Keep known tags as `[name]`, rewrite legacy `<name>`; unknown tags: `[word]` read as the word and `<word>`
    dropped, or refused (`unknown="reject"`)."""
    if unknown not in ("reject", "strip"):
        raise ValueError(f"unknown must be 'reject' or 'strip', not {unknown!r}")
    if "[" not in text and "<" not in text:  # fast path: most texts carry no tags
        return TagResult(text)
    found: list[str] = []
    removed: list[str] = []

    def replace(m: re.Match[str]) -> str:
        lead, bracket_name, slash, angle_name, trail = m.groups()
        name = (bracket_name or angle_name).lower()
        known = name in KNOWN_TAGS
        if not known and unknown == "reject":
            raise UnknownTagError(bracket_name or angle_name)
        if known and not slash:
            found.append(name)
            return lead + "[" + name + "]" + trail
        if not known:
            removed.append(name)
            if bracket_name:  # an ordinary bracketed word: read it
                return lead + bracket_name.replace("_", " ") + trail
        # Removed: keep one space between the neighbours, none at the text's edges.
        at_edge = m.start() == 0 or m.end() == len(text)
        return "" if at_edge else (" " if lead or trail else "")

    out = _TAG_WITH_SPACE_RE.sub(replace, text)
    if len(found) + len(removed) == 0 and out == text:
        return TagResult(text)
    if removed or "</" in text:
        out = re.sub(r"[ \t]{2,}", " ", out).strip()
    return TagResult(out, found, removed)
