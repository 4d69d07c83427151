"""Voice attributes (gender, pitch level, speed level) and an English keyword reader for voice descriptions.

Spark-TTS creates a voice from three labels (docs/reference/spark-tts.md#prompts): gender female|male, and a pitch
level and a speed level, each very_low | low | moderate | high | very_high. `VoiceAttributes` holds the ones a request
names; `describe_voice` reads them from a free-text description such as OpenAI's `instructions`.

The reader is a small, explicit keyword list (English, case-insensitive, one word at a time; hyphens split words,
so "high-pitched" is "high" + "pitched"):
- gender: male, man, men, masculine, boy, guy, gentleman, he, his -> male;
  female, woman, women, feminine, girl, lady, she, her -> female.
- pitch: low, deep -> low; high, bright -> high; squeaky, shrill -> very_high; bass, booming -> very_low;
  moderate, medium, normal, average -> moderate (when followed by a pitch word or alone).
- speed: slow, slowly, unhurried -> low; fast, quickly, quick, rapid, rapidly, brisk -> high.
  "low/high/moderate/normal" directly before speed, pace, tempo or rate name the speed instead of the pitch.
- intensity: very, extremely, really, super, quite before a pitch or speed word moves it one step further
  (low -> very_low, high -> very_high); "very deep" is very_low.
- filler, read and not reported: a, an, the, and, with, voice, voiced, pitch, pitched, tone, speaker, speaking,
  speaks, talking, talks, speed, pace, tempo, rate, of, in, at, sounding.
Every other word is reported as ignored. When two words name the same attribute, the later one wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

GENDERS = ("female", "male")
LEVELS = ("very_low", "low", "moderate", "high", "very_high")

_GENDER_WORDS = {
    **dict.fromkeys(("male", "man", "men", "masculine", "boy", "guy", "gentleman", "he", "his"), "male"),
    **dict.fromkeys(("female", "woman", "women", "feminine", "girl", "lady", "she", "her"), "female"),
}
_PITCH_WORDS = {
    "low": "low", "deep": "low", "high": "high", "bright": "high", "squeaky": "very_high", "shrill": "very_high",
    "bass": "very_low", "booming": "very_low",
}  # fmt: skip
_SPEED_WORDS = {
    "slow": "low", "slowly": "low", "unhurried": "low", "fast": "high", "quick": "high", "quickly": "high",
    "rapid": "high", "rapidly": "high", "brisk": "high",
}  # fmt: skip
# Words that name a level of whichever attribute follows them (speed when a speed noun follows, else pitch).
_LEVEL_WORDS = {"low": "low", "high": "high", "moderate": "moderate", "medium": "moderate", "normal": "moderate",
                "average": "moderate"}  # fmt: skip
_SPEED_NOUNS = frozenset(("speed", "pace", "tempo", "rate"))
_INTENSIFIERS = frozenset(("very", "extremely", "really", "super", "quite"))
_FILLER = frozenset((
    "a", "an", "the", "and", "with", "voice", "voiced", "pitch", "pitched", "tone", "speaker", "speaking", "speaks",
    "talking", "talks", "of", "in", "at", "sounding", *_SPEED_NOUNS,
))  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_STEP = {"low": "very_low", "high": "very_high"}


class VoiceAttributeError(ValueError):
    """An attribute value outside the trained labels; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class VoiceAttributes:
    """The labels a request names; None: not named (the voice's own, or the default)."""

    gender: str | None = None
    pitch: str | None = None
    speed_level: str | None = None

    def __post_init__(self) -> None:
        if self.gender is not None and self.gender not in GENDERS:
            raise VoiceAttributeError("gender", f"must be one of {', '.join(GENDERS)}, got {self.gender!r}")
        for name in ("pitch", "speed_level"):
            value = getattr(self, name)
            if value is not None and value not in LEVELS:
                raise VoiceAttributeError(name, f"must be one of {', '.join(LEVELS)}, got {value!r}")

    @property
    def named(self) -> bool:
        return self.gender is not None or self.pitch is not None or self.speed_level is not None

    def merged(self, other: VoiceAttributes) -> VoiceAttributes:
        """These attributes, with `other`'s where these name none (explicit fields over a description)."""
        return VoiceAttributes(
            gender=self.gender or other.gender,
            pitch=self.pitch or other.pitch,
            speed_level=self.speed_level or other.speed_level,
        )

    def header(self) -> str:
        """`gender=male; pitch=low; speed_level=low`: the attributes named, for X-Voice-Description."""
        parts = [(k, getattr(self, k)) for k in ("gender", "pitch", "speed_level")]
        return "; ".join(f"{k}={v}" for k, v in parts if v is not None)


def attributes_or_none(
    gender: str | None, pitch: str | None, speed_level: str | None
) -> VoiceAttributes | None:
    attributes = VoiceAttributes(gender, pitch, speed_level)
    return attributes if attributes.named else None


@dataclass(frozen=True)
class VoiceDescription:
    """What `describe_voice` read: the attributes, and the words it did not understand (in order, once each)."""

    attributes: VoiceAttributes
    ignored: tuple[str, ...]

    def ignored_header(self) -> str:
        """The ignored words for X-Voice-Description-Ignored (percent-encoded where not plain ASCII)."""
        return " ".join(quote(word, safe="'") for word in self.ignored)


def describe_voice(text: str) -> VoiceDescription:
    """Read gender, pitch and speed level from an English description (the module docstring lists the words)."""
    words = [w.lower() for w in _WORD.findall(text)]
    found: dict[str, str] = {}
    ignored: list[str] = []
    intensify: str | None = None  # the pending intensifier word, reported as ignored if nothing follows it
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        attribute: str | None = None
        level: str | None = None
        if word in _INTENSIFIERS:
            if intensify is not None:
                ignored.append(intensify)
            intensify = word
            continue
        if word in _GENDER_WORDS:
            found["gender"] = _GENDER_WORDS[word]
        elif word in _LEVEL_WORDS and following in _SPEED_NOUNS:
            attribute, level = "speed_level", _LEVEL_WORDS[word]
        elif word in _PITCH_WORDS:
            attribute, level = "pitch", _PITCH_WORDS[word]
        elif word in _SPEED_WORDS:
            attribute, level = "speed_level", _SPEED_WORDS[word]
        elif word in _LEVEL_WORDS:
            attribute, level = "pitch", _LEVEL_WORDS[word]
        elif word not in _FILLER:
            ignored.append(word)
        if attribute is not None and level is not None:
            if intensify is not None:
                level = _STEP.get(level, level)
                intensify = None
            found[attribute] = level
        elif intensify is not None and word not in _FILLER:
            ignored.append(intensify)
            intensify = None
    if intensify is not None:
        ignored.append(intensify)
    unique = tuple(dict.fromkeys(ignored))
    return VoiceDescription(VoiceAttributes(**found), unique)
