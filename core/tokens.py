"""Spark-TTS vocabulary layout and the incremental parser of generated token ids.

`VocabLayout` is built once from a tokenizer (or a plain `token string -> id` mapping) by looking up the
token strings of docs/reference/spark-tts.md#token-ids; ids are never hard-coded. It turns every id into (kind, value)
through two flat tables, so parsing a generated id costs two list look-ups and never decodes text
(docs/reference/spark-tts.md#parsing-the-output; decoding everything and matching a regex at every step would be
O(n^2)).

`TokenParser` consumes the ids an engine streams (deltas of any size) and reports, per delta, the new
semantic values, the 32 global tokens when they have just completed, and whether a stop id arrived.

Modes:
- "controllable": the model emits the voice itself (controllable prompts, and speaker-prefix prompts that
  end in `<|start_global_token|>`). Exactly 32 global tokens must arrive before `<|end_global_token|>`
  (or, leniently, before the first semantic token when the end marker is skipped); semantic tokens before
  the globals completed, a 33rd global, or a global after the block are `TokenStreamError`s.
- "clone": the prompt carries the 32 globals; the model should emit semantic tokens only. Global tokens
  it emits anyway are ignored (counted in `ignored_count` and `unexpected_global_count`) rather than
  failing the request, matching upstream, whose clone path only collects semantic ids.
Everything that is not a semantic or global token (markers, acoustic values, text, `<|endoftext|>`) is
skipped. Ids after the stop id (`<|im_end|>` or `<|end_semantic_token|>`) are ignored.

Longer than 500 lines because the vocabulary layout and the parser share one pair of id tables: splitting them
would expose those tables to every caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, Protocol

import numpy as np

NUM_GLOBAL_TOKENS = 32  # per utterance, always (speaker_encoder expects 32 x 128 features)
GLOBAL_CODEBOOK_SIZE = 4096  # FSQ 4^6
SEMANTIC_CODEBOOK_SIZE = 8192
SAMPLES_PER_SEMANTIC_TOKEN = 320  # at 16 kHz: 50 semantic tokens per second


def global_token(value: int) -> str:
    return f"<|bicodec_global_{value}|>"


def semantic_token(value: int) -> str:
    return f"<|bicodec_semantic_{value}|>"


# The Qwen2.5 base vocabulary ends with 22 control tokens at ids 151643..151664; the first three matter here.
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
QWEN_CONTROL_TOKENS: tuple[tuple[str, bool], ...] = (
    # (token, special) in id order; Qwen2.5 marks the tool/fim/repo tokens as not special.
    (ENDOFTEXT, True),
    (IM_START, True),
    (IM_END, True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

TASK_TOKENS: dict[str, str] = {
    "vc": "<|task_vc|>",
    "tts": "<|task_tts|>",
    "asr": "<|task_asr|>",
    "s2s": "<|task_s2s|>",
    "t2s": "<|task_t2s|>",
    "caption": "<|task_cap|>",
    "understand": "<|task_understand|>",
    "controllable_tts": "<|task_controllable_tts|>",
    "prompt_tts": "<|task_prompt_tts|>",
    "speech_edit": "<|task_edit|>",
}
START_CONTENT = "<|start_content|>"
START_STYLE_LABEL = "<|start_style_label|>"
START_STYLE_PROMPT = "<|start_style_prompt|>"
START_ACOUSTIC = "<|start_acoustic_token|>"
START_GLOBAL = "<|start_global_token|>"
START_SEMANTIC = "<|start_semantic_token|>"
END_CONTENT = "<|end_content|>"
END_STYLE_LABEL = "<|end_style_label|>"
END_STYLE_PROMPT = "<|end_style_prompt|>"
END_ACOUSTIC = "<|end_acoustic_token|>"
END_GLOBAL = "<|end_global_token|>"
END_SEMANTIC = "<|end_semantic_token|>"
STRUCTURAL_TOKENS: tuple[str, ...] = (
    *TASK_TOKENS.values(),
    START_CONTENT,
    START_STYLE_LABEL,
    START_STYLE_PROMPT,
    START_ACOUSTIC,
    START_GLOBAL,
    START_SEMANTIC,
    END_CONTENT,
    END_STYLE_LABEL,
    END_STYLE_PROMPT,
    END_ACOUSTIC,
    END_GLOBAL,
    END_SEMANTIC,
)

# Families of `add_tokens` in the released order, as (name pattern prefix, count)
# (docs/reference/spark-tts.md#token-ids).
ADDED_TOKEN_FAMILIES: tuple[tuple[str, int], ...] = (
    ("bicodec_global", GLOBAL_CODEBOOK_SIZE),
    ("bicodec_semantic", SEMANTIC_CODEBOOK_SIZE),
    ("pitch_value", 1001),
    ("pitch_var_value", 11),
    ("pitch_label", 5),
    ("pitch_var_label", 5),
    ("speed_value", 11),
    ("speed_label", 5),
    ("loudness_value", 31),
    ("loudness_label", 5),
    ("age", 5),
    ("gender", 3),
    ("emotion", 101),
)


def added_tokens() -> list[str]:
    """The 13,493 tokens Spark-TTS added to the Qwen2.5 vocabulary, in id order (first id 151665)."""
    tokens = [f"<|{family}_{i}|>" for family, count in ADDED_TOKEN_FAMILIES for i in range(count)]
    tokens.extend(STRUCTURAL_TOKENS)
    return tokens


class TokenKind(IntEnum):
    OTHER = 0
    SEMANTIC = 1
    GLOBAL = 2
    MARKER = 3
    ACOUSTIC = 4


class Marker(IntEnum):
    """Structural ids the parser reacts to (the value stored for a MARKER id)."""

    START_ACOUSTIC = 1
    END_ACOUSTIC = 2
    START_GLOBAL = 3
    END_GLOBAL = 4
    START_SEMANTIC = 5
    END_SEMANTIC = 6
    IM_END = 7
    ENDOFTEXT = 8


class Acoustic(IntEnum):
    """Which acoustic value an ACOUSTIC id carries (its value is the number in the token name)."""

    PITCH = 1
    SPEED = 2


_MARKER_STRINGS: dict[Marker, str] = {
    Marker.START_ACOUSTIC: START_ACOUSTIC,
    Marker.END_ACOUSTIC: END_ACOUSTIC,
    Marker.START_GLOBAL: START_GLOBAL,
    Marker.END_GLOBAL: END_GLOBAL,
    Marker.START_SEMANTIC: START_SEMANTIC,
    Marker.END_SEMANTIC: END_SEMANTIC,
    Marker.IM_END: IM_END,
    Marker.ENDOFTEXT: ENDOFTEXT,
}


class VocabularyError(ValueError):
    """The tokenizer lacks a Spark-TTS token or its ids are inconsistent."""


class _TokenLookup(Protocol):
    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int | None]: ...


@dataclass(frozen=True, eq=False)
class VocabLayout:
    """id -> (kind, value) tables for the Spark vocabulary; build with `from_tokenizer` / `from_vocab`."""

    kinds: np.ndarray  # uint8 TokenKind per id
    values: np.ndarray  # int32: semantic/global value, Marker code, or acoustic number
    acoustic: np.ndarray  # uint8 Acoustic per id (0 elsewhere)
    token_ids: Mapping[str, int]  # the structural / control token ids by string
    semantic_offset: int
    global_offset: int
    semantic_contiguous: bool
    global_contiguous: bool
    _kinds_list: list[int] = field(repr=False)
    _values_list: list[int] = field(repr=False)

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_tokenizer(cls, tokenizer: _TokenLookup, table_size: int | None = None) -> VocabLayout:
        """Look every needed string up with `tokenizer.convert_tokens_to_ids` (HF tokenizers)."""
        wanted = _wanted_strings()
        ids = tokenizer.convert_tokens_to_ids(wanted)
        unk = getattr(tokenizer, "unk_token_id", None)
        vocab = {
            s: i for s, i in zip(wanted, ids, strict=True) if i is not None and (unk is None or i != unk)
        }
        return cls.from_vocab(vocab, table_size=table_size)

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int], table_size: int | None = None) -> VocabLayout:
        """Build from `token string -> id`. `table_size` (e.g. the model's 166000 rows) bounds the table."""
        missing = [s for s in _required_strings() if s not in vocab]
        if missing:
            shown = ", ".join(missing[:5])
            raise VocabularyError(
                f"tokenizer lacks {len(missing)} Spark-TTS tokens (e.g. {shown}); "
                "expected the Spark-TTS-0.5B tokenizer with its 13,493 added tokens"
            )
        entries: list[tuple[int, TokenKind, int, int]] = []
        for g in range(GLOBAL_CODEBOOK_SIZE):
            entries.append((vocab[global_token(g)], TokenKind.GLOBAL, g, 0))
        for s in range(SEMANTIC_CODEBOOK_SIZE):
            entries.append((vocab[semantic_token(s)], TokenKind.SEMANTIC, s, 0))
        for marker, text in _MARKER_STRINGS.items():
            entries.append((vocab[text], TokenKind.MARKER, int(marker), 0))
        for family, family_kind in (("pitch_value", Acoustic.PITCH), ("speed_value", Acoustic.SPEED)):
            count = dict(ADDED_TOKEN_FAMILIES)[family]
            for v in range(count):
                token_id = vocab.get(f"<|{family}_{v}|>")
                if token_id is not None:
                    entries.append((token_id, TokenKind.ACOUSTIC, v, int(family_kind)))
        max_id = max(max(e[0] for e in entries), max((i for i in vocab.values()), default=0))
        size = max(table_size or 0, max_id + 1)
        kinds = np.zeros(size, dtype=np.uint8)
        values = np.full(size, -1, dtype=np.int32)
        acoustic = np.zeros(size, dtype=np.uint8)
        for token_id, kind, value, which in entries:
            if token_id < 0:
                raise VocabularyError(f"negative id {token_id} in the vocabulary")
            if kinds[token_id] != TokenKind.OTHER:
                raise VocabularyError(
                    f"id {token_id} is mapped to two Spark-TTS tokens; the vocabulary is broken"
                )
            kinds[token_id] = kind
            values[token_id] = value
            acoustic[token_id] = which
        token_ids = {s: vocab[s] for s in _named_strings() if s in vocab}
        g0, s0 = vocab[global_token(0)], vocab[semantic_token(0)]
        return cls(
            kinds=kinds,
            values=values,
            acoustic=acoustic,
            token_ids=token_ids,
            semantic_offset=s0,
            global_offset=g0,
            semantic_contiguous=all(
                vocab[semantic_token(s)] == s0 + s for s in range(SEMANTIC_CODEBOOK_SIZE)
            ),
            global_contiguous=all(vocab[global_token(g)] == g0 + g for g in range(GLOBAL_CODEBOOK_SIZE)),
            _kinds_list=kinds.tolist(),
            _values_list=values.tolist(),
        )

    # --- look-ups ----------------------------------------------------------------------------
    @property
    def table_size(self) -> int:
        return len(self._kinds_list)

    def id_of(self, token: str) -> int:
        try:
            return self.token_ids[token]
        except KeyError:
            raise VocabularyError(f"{token!r} is not a known Spark-TTS structural token") from None

    def marker_id(self, marker: Marker) -> int:
        return self.token_ids[_MARKER_STRINGS[marker]]

    @property
    def im_end_id(self) -> int:
        return self.marker_id(Marker.IM_END)

    @property
    def end_semantic_id(self) -> int:
        return self.marker_id(Marker.END_SEMANTIC)

    @property
    def stop_token_ids(self) -> tuple[int, int]:
        """Generation stops on `<|im_end|>` (what the model learned) or `<|end_semantic_token|>`
        (docs/reference/spark-tts.md#prompts)."""
        return (self.im_end_id, self.end_semantic_id)

    def kind(self, token_id: int) -> TokenKind:
        if 0 <= token_id < len(self._kinds_list):
            return TokenKind(self._kinds_list[token_id])
        return TokenKind.OTHER

    def value(self, token_id: int) -> int:
        """Semantic/global value, Marker code or acoustic number; -1 for OTHER ids."""
        if 0 <= token_id < len(self._values_list):
            return self._values_list[token_id]
        return -1

    def semantic_id(self, value: int) -> int:
        if not 0 <= value < SEMANTIC_CODEBOOK_SIZE:
            raise ValueError(f"semantic value {value} out of range 0..{SEMANTIC_CODEBOOK_SIZE - 1}")
        if self.semantic_contiguous:
            return self.semantic_offset + value
        return int(np.flatnonzero((self.kinds == TokenKind.SEMANTIC) & (self.values == value))[0])

    def global_id(self, value: int) -> int:
        if not 0 <= value < GLOBAL_CODEBOOK_SIZE:
            raise ValueError(f"global value {value} out of range 0..{GLOBAL_CODEBOOK_SIZE - 1}")
        if self.global_contiguous:
            return self.global_offset + value
        return int(np.flatnonzero((self.kinds == TokenKind.GLOBAL) & (self.values == value))[0])


def _required_strings() -> list[str]:
    return [
        *(global_token(g) for g in range(GLOBAL_CODEBOOK_SIZE)),
        *(semantic_token(s) for s in range(SEMANTIC_CODEBOOK_SIZE)),
        *_MARKER_STRINGS.values(),
        *STRUCTURAL_TOKENS,
    ]


def _named_strings() -> list[str]:
    return [*STRUCTURAL_TOKENS, IM_START, IM_END, ENDOFTEXT]


def _wanted_strings() -> list[str]:
    acoustic = [
        f"<|{f}_{v}|>"
        for f, n in ADDED_TOKEN_FAMILIES
        if f in ("pitch_value", "speed_value")
        for v in range(n)
    ]
    return list(dict.fromkeys([*_required_strings(), *_named_strings(), *acoustic]))


# --------------------------------------------------------------------------------------------------------
# incremental parser

ParseMode = Literal["controllable", "clone"]


class TokenStreamError(ValueError):
    """The generated ids break the Spark-TTS output grammar (wrong global count, no semantic tokens...)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (generated id #{position})")
        self.position = position


class NoSpeechError(TokenStreamError):
    """The generation ended well-formed but without a single semantic token: nothing to say."""


@dataclass
class TokenDelta:
    """What one `feed` call found. `global_tokens` is set only in the delta where the 32 just completed."""

    semantic: list[int] = field(default_factory=list)
    global_tokens: tuple[int, ...] | None = None
    finished: bool = False
    stop_id: int | None = None

    @property
    def globals_complete(self) -> bool:
        return self.global_tokens is not None


@dataclass(frozen=True)
class ParseResult:
    """Everything a finished stream produced (from `TokenParser.finish`)."""

    semantic: list[int]
    global_tokens: tuple[int, ...] | None
    finished: bool
    ids_seen: int
    ignored_count: int
    pitch_value: int | None
    speed_value: int | None


class TokenParser:
    """Incremental, O(1)-per-id parser of one generation. Not thread-safe; one per request."""

    def __init__(self, layout: VocabLayout, mode: ParseMode) -> None:
        if mode not in ("controllable", "clone"):
            raise ValueError(f"unknown parse mode {mode!r}; accepted: controllable, clone")
        self.layout = layout
        self.mode: ParseMode = mode
        self._kinds = layout._kinds_list
        self._values = layout._values_list
        self._table_size = len(self._kinds)
        self._globals: list[int] = []
        self._globals_done = mode == "clone"
        self._global_block_closed = False
        self.global_tokens: tuple[int, ...] | None = None
        self.semantic: list[int] = []
        self.finished = False
        self.stop_id: int | None = None
        self.pitch_value: int | None = None
        self.speed_value: int | None = None
        self.ids_seen = 0
        self.ignored_count = 0
        self.unexpected_global_count = 0

    @property
    def semantic_count(self) -> int:
        return len(self.semantic)

    @property
    def globals_complete(self) -> bool:
        return self.global_tokens is not None

    def feed(self, new_ids: Sequence[int] | Iterable[int]) -> TokenDelta:
        """Parse the ids generated since the last call. Raises TokenStreamError on a grammar violation."""
        delta = TokenDelta()
        kinds, values, size = self._kinds, self._values, self._table_size
        semantic_out = delta.semantic
        controllable = self.mode == "controllable"
        for token_id in new_ids:
            position = self.ids_seen
            self.ids_seen += 1
            if self.finished:
                self.ignored_count += 1
                continue
            kind = kinds[token_id] if 0 <= token_id < size else 0
            if kind == TokenKind.SEMANTIC:
                if not self._globals_done:
                    self._complete_globals(delta, position, "a semantic token")
                semantic_out.append(values[token_id])
            elif kind == TokenKind.GLOBAL:
                if not controllable:
                    self.ignored_count += 1
                    self.unexpected_global_count += 1
                elif self._global_block_closed:
                    raise TokenStreamError("global token after the 32 global tokens were complete", position)
                elif len(self._globals) >= NUM_GLOBAL_TOKENS:
                    raise TokenStreamError(
                        f"more than {NUM_GLOBAL_TOKENS} global tokens before <|end_global_token|>", position
                    )
                else:
                    self._globals.append(values[token_id])
            elif kind == TokenKind.MARKER:
                self._on_marker(values[token_id], token_id, delta, position)
            elif kind == TokenKind.ACOUSTIC:
                if self.layout.acoustic[token_id] == Acoustic.PITCH:
                    self.pitch_value = values[token_id]
                else:
                    self.speed_value = values[token_id]
                self.ignored_count += 1
            else:
                self.ignored_count += 1
        self.semantic.extend(semantic_out)
        delta.finished = self.finished
        delta.stop_id = self.stop_id
        return delta

    def _on_marker(self, marker: int, token_id: int, delta: TokenDelta, position: int) -> None:
        if marker == Marker.IM_END or marker == Marker.END_SEMANTIC:
            self.finished = True
            self.stop_id = token_id
        elif marker == Marker.END_GLOBAL and self.mode == "controllable" and not self._globals_done:
            self._complete_globals(delta, position, "<|end_global_token|>")
        elif marker == Marker.START_SEMANTIC and self.mode == "controllable" and not self._globals_done:
            self._complete_globals(delta, position, "<|start_semantic_token|>")
        else:
            self.ignored_count += 1

    def _complete_globals(self, delta: TokenDelta, position: int, where: str) -> None:
        count = len(self._globals)
        if count != NUM_GLOBAL_TOKENS:
            raise TokenStreamError(
                f"expected exactly {NUM_GLOBAL_TOKENS} global tokens before {where}, got {count}", position
            )
        self._globals_done = True
        self._global_block_closed = True
        self.global_tokens = tuple(self._globals)
        delta.global_tokens = self.global_tokens

    def finish(self) -> ParseResult:
        """Validate the whole stream once generation ended (stop id or max_tokens)."""
        if self.mode == "controllable" and not self._globals_done:
            raise TokenStreamError(
                f"generation ended with {len(self._globals)} of {NUM_GLOBAL_TOKENS} global tokens "
                "(the model did not produce a complete voice)"
            )
        if not self.semantic:
            raise NoSpeechError("generation ended without any semantic token (no audio to decode)")
        return ParseResult(
            semantic=list(self.semantic),
            global_tokens=self.global_tokens,
            finished=self.finished,
            ids_seen=self.ids_seen,
            ignored_count=self.ignored_count,
            pitch_value=self.pitch_value,
            speed_value=self.speed_value,
        )
