"""Voices: named ways to pick a Spark-TTS speaker, loaded from `voices.json` in the model directory.

Kinds:
- "style": a controllable prompt from labels (gender female|male, pitch and speed very_low..very_high);
  the model invents a voice per request, so it varies between requests unless a seed is set.
- "global_tokens": a clone prompt with 32 stored BiCodec global tokens (each 0..4095): the same voice
  every time. Optional pitch/speed labels are sent only when not moderate.
- "prompt_prefix": a fine-tuned multi-speaker checkpoint's literal speaker prefix (`<|speaker_3|>`,
  `Asha: `), placed at the start of the content or before the task token. With global_tokens it is a
  clone prompt, with a gender a controllable prompt, with neither the model emits the 32 globals itself.

A voice with global tokens may also carry its reference recording's transcript (`reference_text`) and semantic
tokens (`reference_semantic`, 0..8191, 50 per second): with both, every prompt is the continuation prompt
(docs/reference/spark-tts.md#prompts), which imitates the reference more closely than the globals alone. Cloned voices
(services/voice_library) are such voices.

Names: `resolve` matches voice ids exactly (case-sensitive), then aliases case-insensitively, then OpenAI voice
names (alloy, ash, ...; see OPENAI_VOICE_GENDERS). An unknown name raises `UnknownVoiceError`, whose message lists
the available ids.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.tokens import GLOBAL_CODEBOOK_SIZE, NUM_GLOBAL_TOKENS, SEMANTIC_CODEBOOK_SIZE

# Custom (library) voice ids: `voice_` + 32 hex digits, never a built-in voice's id, alias or OpenAI name.
VOICE_ID_PREFIX = "voice_"
_CUSTOM_VOICE_ID = re.compile(r"^voice_[0-9a-f]{32}$")


def is_custom_voice_id(name: str | None) -> bool:
    return name is not None and _CUSTOM_VOICE_ID.match(name) is not None


VoiceKind = Literal["style", "global_tokens", "prompt_prefix"]
PrefixPlacement = Literal["content", "sequence"]
VoiceSource = Literal["builtin", "custom", "reference"]
VOICE_KINDS: tuple[str, ...] = ("style", "global_tokens", "prompt_prefix")
GENDERS = ("female", "male")
LEVELS = ("very_low", "low", "moderate", "high", "very_high")
FORMAT_VERSION = 1

_VOICE_KEYS = {
    "id", "name", "kind", "aliases", "gender", "pitch", "speed", "global_tokens", "prompt_prefix",
    "prefix_placement", "description", "reference_text", "reference_semantic",
}  # fmt: skip


# OpenAI's voice names with the gender they are heard as. Clients such as Pipecat, LiveKit (default "ash") and
# Open WebUI (default "alloy") send only these, so every checkpoint answers them: each maps to a voice of the same
# gender when the checkpoint has one (round robin), else to any voice. voices.json "openai_voices" or
# TTS_OPENAI_VOICE_MAP override single names; a voice id or alias with the same name always wins.
OPENAI_VOICE_GENDERS: dict[str, str] = {
    "alloy": "female", "ash": "male", "ballad": "male", "coral": "female", "echo": "male", "fable": "male",
    "nova": "female", "onyx": "male", "sage": "female", "shimmer": "female", "verse": "male",
    "marin": "female", "cedar": "male",
}  # fmt: skip


class VoiceConfigError(ValueError):
    """voices.json (or the dict given) does not describe valid voices; the message names the voice and field."""


class UnknownVoiceError(LookupError):
    """No voice has this id or alias."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        self.available = sorted(available)
        super().__init__(f"unknown voice {name!r}; available voices: {', '.join(self.available)}")

    def __str__(self) -> str:  # LookupError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    kind: VoiceKind
    aliases: tuple[str, ...] = ()
    gender: str | None = None
    pitch: str = "moderate"
    speed: str = "moderate"
    global_tokens: tuple[int, ...] | None = None
    prompt_prefix: str | None = None
    prefix_placement: PrefixPlacement = "content"
    description: str = ""
    reference_text: str | None = None  # the reference recording's transcript (continuation prompt)
    reference_semantic: tuple[int, ...] | None = None  # the reference recording's semantic ids
    # Where the voice comes from: the checkpoint's voices.json ("builtin"), a key's voice library ("custom"), or a
    # request's own reference audio ("reference"). Metrics label custom and reference voices by this, not their ids.
    source: VoiceSource = "builtin"

    def __post_init__(self) -> None:
        where = f"voice {self.id!r}"
        if not isinstance(self.id, str) or not self.id.strip():
            raise VoiceConfigError(f"voice id must be a non-empty string, got {self.id!r}")
        if self.kind not in VOICE_KINDS:
            raise VoiceConfigError(f"{where}: kind {self.kind!r} unknown; accepted: {', '.join(VOICE_KINDS)}")
        if self.gender is not None and self.gender not in GENDERS:
            raise VoiceConfigError(f"{where}: gender {self.gender!r} unknown; accepted: {', '.join(GENDERS)}")
        for key in ("pitch", "speed"):
            if getattr(self, key) not in LEVELS:
                raise VoiceConfigError(
                    f"{where}: {key} {getattr(self, key)!r} unknown; accepted: {', '.join(LEVELS)}"
                )
        if self.source not in ("builtin", "custom", "reference"):
            raise VoiceConfigError(
                f"{where}: source {self.source!r} unknown; accepted: builtin, custom, reference"
            )
        if self.prefix_placement not in ("content", "sequence"):
            raise VoiceConfigError(f"{where}: prefix_placement must be 'content' or 'sequence'")
        if self.global_tokens is not None:
            tokens = self.global_tokens
            if len(tokens) != NUM_GLOBAL_TOKENS or not all(
                isinstance(g, int) and not isinstance(g, bool) and 0 <= g < GLOBAL_CODEBOOK_SIZE
                for g in tokens
            ):
                raise VoiceConfigError(
                    f"{where}: global_tokens must be {NUM_GLOBAL_TOKENS} integers in 0..{GLOBAL_CODEBOOK_SIZE - 1}"
                )
        self._check_reference(where)
        if self.kind == "style" and self.gender is None:
            raise VoiceConfigError(f"{where}: a style voice needs gender (female or male)")
        if self.kind == "global_tokens" and self.global_tokens is None:
            raise VoiceConfigError(f"{where}: a global_tokens voice needs 'global_tokens' (32 integers)")
        if self.kind == "prompt_prefix" and self.prompt_prefix is None:
            raise VoiceConfigError(f"{where}: a prompt_prefix voice needs 'prompt_prefix' (\"\" for none)")

    def _check_reference(self, where: str) -> None:
        semantic = self.reference_semantic
        if semantic is not None and not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < SEMANTIC_CODEBOOK_SIZE
            for s in semantic
        ):
            raise VoiceConfigError(
                f"{where}: reference_semantic must be integers in 0..{SEMANTIC_CODEBOOK_SIZE - 1}"
            )
        if self.reference_text is not None and not isinstance(self.reference_text, str):
            raise VoiceConfigError(f"{where}: reference_text must be a string")
        if (semantic is not None or self.reference_text is not None) and self.global_tokens is None:
            raise VoiceConfigError(
                f"{where}: a reference transcript or reference_semantic needs global_tokens"
            )

    @property
    def metric_label(self) -> str:
        """The voice as a Prometheus label value: built-in ids (a bounded set), else "custom" or "reference"."""
        return self.id if self.source == "builtin" else self.source

    @property
    def continuation(self) -> bool:
        """True when prompts continue the reference (its transcript and semantic tokens are both known)."""
        return self.reference_text is not None and self.reference_semantic is not None

    @property
    def rate_key(self) -> str:
        """What its speaking rate is remembered under (`core.align.rates`): the id, with the speed label when it is
        not moderate, since the same voice asked to speak faster is another pace."""
        return self.id if self.speed == "moderate" else f"{self.id}@{self.speed}"

    @property
    def parse_mode(self) -> Literal["controllable", "clone"]:
        """'clone' when the prompt carries the 32 globals; otherwise the model emits them."""
        return "clone" if self.global_tokens is not None else "controllable"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "aliases": list(self.aliases),
        }
        if self.gender is not None:
            out["gender"] = self.gender
        out["pitch"], out["speed"] = self.pitch, self.speed
        if self.global_tokens is not None:
            out["global_tokens"] = list(self.global_tokens)
        if self.prompt_prefix is not None:
            out["prompt_prefix"] = self.prompt_prefix
            out["prefix_placement"] = self.prefix_placement
        if self.description:
            out["description"] = self.description
        if self.reference_text is not None:
            out["reference_text"] = self.reference_text
        if self.reference_semantic is not None:
            out["reference_semantic"] = list(self.reference_semantic)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Voice:
        if not isinstance(data, Mapping):
            raise VoiceConfigError(f"each voice must be a JSON object, got {type(data).__name__}")
        # Unchecked JSON values (id, kind): Voice.__post_init__ checks every field and names the bad one.
        voice_id: Any = data.get("id")
        unknown = sorted(set(data) - _VOICE_KEYS)
        if unknown:
            raise VoiceConfigError(
                f"voice {voice_id!r}: unknown keys {unknown}; accepted: {sorted(_VOICE_KEYS)}"
            )
        tokens = data.get("global_tokens")
        kind: Any = data.get("kind") or (
            "global_tokens" if tokens is not None and not data.get("prompt_prefix")
            else "prompt_prefix" if data.get("prompt_prefix") else "style"
        )  # fmt: skip
        aliases = data.get("aliases", [])
        if isinstance(aliases, str) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise VoiceConfigError(f"voice {voice_id!r}: aliases must be a list of non-empty strings")
        if tokens is not None and not isinstance(tokens, list | tuple):
            raise VoiceConfigError(
                f"voice {voice_id!r}: global_tokens must be a list of {NUM_GLOBAL_TOKENS} integers"
            )
        semantic = data.get("reference_semantic")
        if semantic is not None and not isinstance(semantic, list | tuple):
            raise VoiceConfigError(f"voice {voice_id!r}: reference_semantic must be a list of integers")
        return cls(
            id=voice_id,
            name=str(data.get("name") or voice_id),
            kind=kind,
            aliases=tuple(aliases),
            gender=data.get("gender"),
            pitch=data.get("pitch", "moderate"),
            speed=data.get("speed", "moderate"),
            global_tokens=tuple(tokens) if tokens is not None else None,
            prompt_prefix=data.get("prompt_prefix"),
            prefix_placement=data.get("prefix_placement", "content"),
            description=str(data.get("description", "")),
            reference_text=data.get("reference_text"),
            reference_semantic=tuple(semantic) if semantic is not None else None,
        )


# Used when a model directory has no voices.json: the controllable label grid's common corners.
BUILTIN_VOICES: tuple[dict[str, Any], ...] = (
    {"id": "default", "name": "Default", "kind": "style", "gender": "female", "aliases": ["female"]},
    {"id": "male", "name": "Male", "kind": "style", "gender": "male"},
    {"id": "female_high", "name": "Female, high pitch", "kind": "style", "gender": "female", "pitch": "high"},
    {"id": "male_low", "name": "Male, low pitch", "kind": "style", "gender": "male", "pitch": "low"},
)


@dataclass(frozen=True)
class VoiceRegistry:
    voices: Mapping[str, Voice]
    default_voice_id: str
    _aliases: Mapping[str, str] = field(repr=False)
    _openai: Mapping[str, str] = field(repr=False, default_factory=dict)
    _openai_overrides: Mapping[str, str] = field(repr=False, default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VoiceRegistry:
        if not isinstance(data, Mapping):
            raise VoiceConfigError(f"voices.json must hold a JSON object, found {type(data).__name__}")
        version = data.get("format", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise VoiceConfigError(f"voices format {version!r} unsupported; expected {FORMAT_VERSION}")
        items = data.get("voices")
        if not isinstance(items, list) or not items:
            raise VoiceConfigError("voices.json needs a non-empty 'voices' list")
        voices: dict[str, Voice] = {}
        for item in items:
            voice = Voice.from_dict(item)
            if voice.id in voices:
                raise VoiceConfigError(f"voice id {voice.id!r} appears twice")
            voices[voice.id] = voice
        aliases: dict[str, str] = {}
        for voice in voices.values():
            for alias in voice.aliases:
                key = alias.casefold()
                owner = aliases.get(key)
                if owner is not None and owner != voice.id:
                    raise VoiceConfigError(f"alias {alias!r} is used by voices {owner!r} and {voice.id!r}")
                if alias in voices and alias != voice.id:
                    raise VoiceConfigError(f"alias {alias!r} of voice {voice.id!r} is another voice's id")
                aliases[key] = voice.id
        default = data.get("default", next(iter(voices)))
        if default not in voices:
            raise VoiceConfigError(f"default voice {default!r} is not one of the voices: {', '.join(voices)}")
        registry = cls(voices=voices, default_voice_id=default, _aliases=aliases)
        overrides = data.get("openai_voices", {})
        if not isinstance(overrides, Mapping):
            raise VoiceConfigError("'openai_voices' must map OpenAI voice names to voice ids")
        return registry.with_openai_voices(overrides)

    def with_openai_voices(self, overrides: Mapping[str, str] | None = None) -> VoiceRegistry:
        """This registry with every OpenAI voice name resolvable (see OPENAI_VOICE_GENDERS)."""
        overrides = {str(k).casefold(): v for k, v in (overrides or {}).items()}
        for name, target in overrides.items():
            if name not in OPENAI_VOICE_GENDERS:
                raise VoiceConfigError(
                    f"openai voice {name!r} is not an OpenAI voice name; accepted: {', '.join(OPENAI_VOICE_GENDERS)}"
                )
            if target not in self.voices:
                raise VoiceConfigError(f"openai voice {name!r} maps to unknown voice {target!r}")
        mapping: dict[str, str] = {}
        turn: dict[str, int] = {}
        for name, gender in OPENAI_VOICE_GENDERS.items():
            if name in overrides:
                mapping[name] = overrides[name]
                continue
            if name in self.voices or name in self._aliases:
                continue  # the checkpoint names this voice itself
            pool = [v.id for v in self.voices.values() if v.gender == gender] or list(self.voices)
            index = turn.get(gender, 0)
            mapping[name] = pool[index % len(pool)]
            turn[gender] = index + 1
        return dataclasses.replace(self, _openai=mapping, _openai_overrides=overrides)

    @property
    def openai_overrides(self) -> dict[str, str]:
        """The explicit OpenAI-name choices this registry was given (voices.json and settings)."""
        return dict(self._openai_overrides)

    @property
    def openai_voices(self) -> dict[str, str]:
        """OpenAI voice name -> voice id, for names the checkpoint does not define itself."""
        return dict(self._openai)

    @classmethod
    def from_file(cls, path: Path | str) -> VoiceRegistry:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VoiceConfigError(f"{path}: cannot read voices ({exc})") from exc
        try:
            return cls.from_dict(data)
        except VoiceConfigError as exc:
            raise VoiceConfigError(f"{path}: {exc}") from exc

    @classmethod
    def for_finetune(cls, speakers: Iterable[str] = ()) -> VoiceRegistry:
        """Voices for a fine-tune without voices.json, in the recipe's trained format
        (docs/reference/spark-tts.md#the-fine-tune-layout): one `"{speaker}: "` prefix voice per speaker, or, with
        none named, one voice with no prefix (a single-speaker fine-tune). Never the controllable style voices, which
        such a model never saw."""
        names = [s.strip() for s in speakers if s.strip()]
        if not names:
            voices = [
                {
                    "id": "default",
                    "name": "Default",
                    "kind": "prompt_prefix",
                    "prompt_prefix": "",
                    "description": "The fine-tune's own voice (no speaker prefix).",
                }
            ]
        else:
            voices = [
                {
                    "id": n,
                    "name": n,
                    "kind": "prompt_prefix",
                    "prompt_prefix": f"{n}: ",
                    "description": f"Fine-tuned speaker {n}.",
                }
                for n in names
            ]
        return cls.from_dict({"format": FORMAT_VERSION, "default": voices[0]["id"], "voices": voices})

    @classmethod
    def builtin(cls) -> VoiceRegistry:
        return cls.from_dict({"format": FORMAT_VERSION, "default": "default", "voices": list(BUILTIN_VOICES)})

    def resolve(self, name: str | None = None) -> Voice:
        """Voice by id (exact) or alias (any case); None or "" gives the default voice."""
        if not name:
            return self.voices[self.default_voice_id]
        voice = self.voices.get(name)
        if voice is not None:
            return voice
        voice_id = self._aliases.get(name.casefold()) or self._openai.get(name.casefold())
        if voice_id is None:
            raise UnknownVoiceError(name, self.voices)
        return self.voices[voice_id]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self.voices or name.casefold() in self._aliases or name.casefold() in self._openai
        )

    def defines(self, name: str) -> bool:
        """`name` is one of this checkpoint's voice ids or aliases (not merely an OpenAI name mapped to one)."""
        return name in self.voices or name.casefold() in self._aliases

    def __len__(self) -> int:
        return len(self.voices)

    @property
    def ids(self) -> list[str]:
        return list(self.voices)

    def list(self) -> list[dict[str, str]]:
        """For `GET /v1/audio/voices`: [{"id", "name"}] in file order."""
        return [{"id": v.id, "name": v.name} for v in self.voices.values()]


# OpenAI `speed` (0.25..4.0, 1.0 normal) -> Spark speed label: upper bounds of each band.
_SPEED_BANDS: tuple[tuple[float, str], ...] = (
    (0.6, "very_low"),
    (0.85, "low"),
    (1.15, "moderate"),
    (1.6, "high"),
)


def speed_label(speed: float) -> str:
    """Nearest Spark speed label for a playback-rate multiplier."""
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    for upper, label in _SPEED_BANDS:
        if speed < upper:
            return label
    return "very_high"


# What each trained speed label is taken to mean as a rate multiplier (the bands' middles). The released model
# learned labels from bucketed speaking rates, not exact multipliers, so a style voice's rate is approximate.
LABEL_SPEEDS: dict[str, float] = {
    "very_low": 0.5,
    "low": 0.72,
    "moderate": 1.0,
    "high": 1.35,
    "very_high": 1.9,
}


def voice_with_speed(voice: Voice, speed: float | None) -> Voice:
    """Copy of a style voice with the trained speed label nearest `speed`; any other voice, None or a near-1.0
    speed returns `voice` itself (a clone-mode speed label was never trained: those voices are time-stretched,
    see `time_stretch_for`)."""
    if speed is None or voice.kind != "style" or speed_label(speed) == "moderate":
        return voice
    return dataclasses.replace(voice, speed=speed_label(speed))


def time_stretch_for(voice: Voice, speed: float | None) -> float:
    """The tempo change left for the audio after the prompt did what it can: the whole `speed` for voices without
    a trained speed control, the remainder past the label for style voices (1.0: none)."""
    if speed is None:
        return 1.0
    if voice.kind != "style":
        return speed
    return speed / LABEL_SPEEDS[speed_label(speed)]
