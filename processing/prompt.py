"""Spark-TTS prompt strings and their token ids (docs/reference/spark-tts.md#prompts).

The strings are concatenated with no separators, exactly as upstream builds them:
- controllable: `<|task_controllable_tts|><|start_content|>{text}<|end_content|>`
  `<|start_style_label|><|gender_G|><|pitch_label_P|><|speed_label_S|><|end_style_label|>`
  -> the model emits acoustic values, 32 global tokens, then semantic tokens (parse mode "controllable").
- clone: `<|task_tts|><|start_content|>{text}<|end_content|><|start_global_token|>{32 globals}<|end_global_token|>`
  -> semantic tokens only (parse mode "clone"). Options: style labels (FlashTTS's untrained extension:
  pitch/speed labels between the content and the globals, only when one is not moderate), the
  reference transcript + reference semantic tokens (continuation, §3.2 c, joined with a space unless
  the text starts with a CJK character), and `start_semantic` to end the prompt with
  `<|start_semantic_token|>` (saves one decode step).
- speaker: `<|task_tts|><|start_content|>{prefix}{text}<|end_content|><|start_global_token|>` for fine-tuned
  multi-speaker checkpoints that learned to emit the voice after a speaker prefix (parse mode "controllable").

Speaker prefixes (`SpeakerPrefix`): a literal string from the voice (e.g. `<|speaker_3|>` or `Asha: `),
placed at the start of the content (placement "content", the usual fine-tuning format) or before the
task token (placement "sequence"). A prefix may be combined with any of the three prompts.

User text is inserted verbatim (emotion tags such as `[excited]` pass through), except that anything shaped like
an added token (`<|...|>`, `<tool_call>`, `</think>`: every added token of the Qwen2/Spark vocabulary is an
angle-bracket word) is removed, repeatedly until nothing changes, so nested forms (`<<|x|>|end_content|>`) cannot
reassemble one. Added tokens are matched atomically by the tokenizer, so such text would otherwise inject real
control ids. `build_prompt_ids` then checks by construction: the prompt's added-token ids must be exactly those
of the prompt built without the user text; anything else is refused. Prefixes are trusted and kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

GENDERS: dict[str, int] = {"female": 0, "male": 1}
LEVELS: dict[str, int] = {"very_low": 0, "low": 1, "moderate": 2, "high": 3, "very_high": 4}
NUM_GLOBAL_TOKENS = 32
GLOBAL_CODEBOOK_SIZE = 4096
SEMANTIC_CODEBOOK_SIZE = 8192

TASK_TTS = "<|task_tts|>"
TASK_CONTROLLABLE_TTS = "<|task_controllable_tts|>"
START_CONTENT, END_CONTENT = "<|start_content|>", "<|end_content|>"
START_STYLE_LABEL, END_STYLE_LABEL = "<|start_style_label|>", "<|end_style_label|>"
START_GLOBAL, END_GLOBAL = "<|start_global_token|>", "<|end_global_token|>"
START_SEMANTIC = "<|start_semantic_token|>"

# Every added token of the vocabulary is an angle-bracket word without spaces (<|task_tts|>, <tool_call>, </think>).
# Bounded and free of nested quantifiers: linear time.
_CONTROL_TOKEN_SHAPE = re.compile(r"<[^<>\s]{1,64}>")

PrefixPlacement = Literal["content", "sequence"]


class PromptError(ValueError):
    """A prompt argument is invalid (unknown label, wrong global-token count, ...)."""


@dataclass(frozen=True)
class StyleLabels:
    """Controllable-prompt labels. `gender` None is allowed only where labels are optional (clone mode)."""

    gender: str | None = "female"
    pitch: str = "moderate"
    speed: str = "moderate"

    def __post_init__(self) -> None:
        if self.gender is not None and self.gender not in GENDERS:
            raise PromptError(f"unknown gender {self.gender!r}; accepted: {', '.join(GENDERS)}")
        for field_name in ("pitch", "speed"):
            value = getattr(self, field_name)
            if value not in LEVELS:
                raise PromptError(f"unknown {field_name} level {value!r}; accepted: {', '.join(LEVELS)}")

    @property
    def neutral(self) -> bool:
        return self.pitch == "moderate" and self.speed == "moderate"

    def tokens(self, include_gender: bool = True) -> str:
        gender = f"<|gender_{GENDERS[self.gender]}|>" if include_gender and self.gender is not None else ""
        return f"{gender}<|pitch_label_{LEVELS[self.pitch]}|><|speed_label_{LEVELS[self.speed]}|>"


@dataclass(frozen=True)
class SpeakerPrefix:
    text: str
    placement: PrefixPlacement = "content"

    def __post_init__(self) -> None:
        if self.placement not in ("content", "sequence"):
            raise PromptError(f"unknown prefix placement {self.placement!r}; accepted: content, sequence")


def sanitize_text(text: str) -> str:
    """Remove added-token-shaped substrings from user text until none is left; everything else is kept.

    Each pass removes at least two characters per match, so this ends after at most len(text)/2 passes; in
    practice one or two."""
    while "<" in text:
        cleaned = _CONTROL_TOKEN_SHAPE.sub("", text)
        if cleaned == text:
            break
        text = cleaned
    return text


def _global_tokens_str(global_tokens: Sequence[int]) -> str:
    values = [int(g) for g in global_tokens]
    if len(values) != NUM_GLOBAL_TOKENS:
        raise PromptError(f"expected {NUM_GLOBAL_TOKENS} global tokens, got {len(values)}")
    bad = [g for g in values if not 0 <= g < GLOBAL_CODEBOOK_SIZE]
    if bad:
        raise PromptError(f"global token values must be in 0..{GLOBAL_CODEBOOK_SIZE - 1}; got {bad[:3]}")
    return "".join(f"<|bicodec_global_{g}|>" for g in values)


def _semantic_tokens_str(semantic_tokens: Sequence[int]) -> str:
    values = [int(s) for s in semantic_tokens]
    bad = [s for s in values if not 0 <= s < SEMANTIC_CODEBOOK_SIZE]
    if bad:
        raise PromptError(f"semantic token values must be in 0..{SEMANTIC_CODEBOOK_SIZE - 1}; got {bad[:3]}")
    return "".join(f"<|bicodec_semantic_{s}|>" for s in values)


def _starts_with_cjk(text: str) -> bool:
    if not text:
        return False
    name = unicodedata.name(text[0], "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) or "IDEOGRAPH" in name


def join_reference_text(reference_text: str, text: str) -> str:
    """Transcript + target text; a space between them unless one is already there or text starts with CJK.

    Upstream joins with nothing, which can fuse BPE tokens across the join (".Actions" -> one id) and
    makes the model misread the text (docs/reference/spark-tts.md#prompts).
    """
    if not reference_text or not text:
        return reference_text + text
    if reference_text[-1].isspace() or text[0].isspace() or _starts_with_cjk(text):
        return reference_text + text
    return f"{reference_text} {text}"


def _wrap(task: str, content: str, rest: str, prefix: SpeakerPrefix | None) -> str:
    if prefix is not None and prefix.placement == "content":
        content = prefix.text + content
    head = prefix.text if prefix is not None and prefix.placement == "sequence" else ""
    return f"{head}{task}{START_CONTENT}{content}{END_CONTENT}{rest}"


def controllable_prompt(text: str, style: StyleLabels, prefix: SpeakerPrefix | None = None) -> str:
    """Voice creation from gender/pitch/speed labels (docs/reference/spark-tts.md#prompts). Parse the output in
    "controllable" mode."""
    if style.gender is None:
        raise PromptError("a controllable prompt needs a gender (female or male)")
    labels = f"{START_STYLE_LABEL}{style.tokens()}{END_STYLE_LABEL}"
    return _wrap(TASK_CONTROLLABLE_TTS, sanitize_text(text), labels, prefix)


def clone_prompt(
    text: str,
    global_tokens: Sequence[int],
    *,
    style: StyleLabels | None = None,
    reference_text: str | None = None,
    reference_semantic: Sequence[int] | None = None,
    start_semantic: bool = False,
    prefix: SpeakerPrefix | None = None,
) -> str:
    """Speak `text` in the voice of 32 global tokens (docs/reference/spark-tts.md#prompts). Parse the output in
    "clone" mode.

    `reference_text` + `reference_semantic` give the continuation prompt (c), which always ends with
    `<|start_semantic_token|>` and the reference tokens. `style` adds pitch/speed labels when either is
    not moderate (FlashTTS extension; the model was not trained on it, gender is not sent).
    """
    content = sanitize_text(text)
    if reference_text is not None:
        content = join_reference_text(sanitize_text(reference_text), content)
    rest = ""
    if style is not None and not style.neutral:
        rest += f"{START_STYLE_LABEL}{style.tokens(include_gender=False)}{END_STYLE_LABEL}"
    rest += f"{START_GLOBAL}{_global_tokens_str(global_tokens)}{END_GLOBAL}"
    if reference_semantic is not None:
        rest += START_SEMANTIC + _semantic_tokens_str(reference_semantic)
    elif start_semantic:
        rest += START_SEMANTIC
    return _wrap(TASK_TTS, content, rest, prefix)


def speaker_prompt(text: str, prefix: SpeakerPrefix) -> str:
    """Fine-tuned multi-speaker prompt: the model emits the 32 globals after the speaker prefix."""
    return _wrap(TASK_TTS, sanitize_text(text), START_GLOBAL, prefix)


class _Encoder(Protocol):
    # An HF tokenizer returns the ids; a raw `tokenizers.Tokenizer` an Encoding that holds them in `.ids`.
    def encode(self, text: str, add_special_tokens: bool = ...) -> Any: ...


def encode_prompt(tokenizer: _Encoder, prompt: str) -> list[int]:
    """Token ids of a prompt string, from an HF tokenizer or a raw `tokenizers.Tokenizer`.

    Qwen2 adds no BOS; `add_special_tokens=False` makes that explicit (docs/reference/spark-tts.md#prompts; FlashTTS
    does the same).
    """
    encoded = tokenizer.encode(prompt, add_special_tokens=False)
    return list(getattr(encoded, "ids", encoded))


# --------------------------------------------------------------------------------------------------------
# from a voice


class VoiceLike(Protocol):
    """The fields of `core.voices.Voice` the prompt needs (duck-typed: processing does not import core)."""

    # Read-only members: a frozen Voice satisfies them.
    @property
    def gender(self) -> str | None: ...

    @property
    def pitch(self) -> str: ...

    @property
    def speed(self) -> str: ...

    @property
    def global_tokens(self) -> Sequence[int] | None: ...

    @property
    def prompt_prefix(self) -> str | None: ...

    @property
    def prefix_placement(self) -> PrefixPlacement: ...

    @property
    def reference_text(self) -> str | None: ...

    @property
    def reference_semantic(self) -> Sequence[int] | None: ...


ParseMode = Literal["controllable", "clone"]


def build_prompt(
    text: str, voice: VoiceLike, *, global_tokens: Sequence[int] | None = None
) -> tuple[str, ParseMode]:
    """The prompt for one text chunk in `voice`, and the parse mode its output needs.

    `global_tokens` (e.g. captured from the first chunk of a long text) override the voice's own and make it a
    clone prompt, so every chunk keeps the same voice. Otherwise: stored globals -> clone prompt; a gender ->
    controllable prompt; only a speaker prefix -> speaker prompt (the model emits the globals).
    A clone prompt ends with `<|start_semantic_token|>`: the trained sequence continues there
    (docs/reference/spark-tts.md#the-fine-tune-layout), so the first generated id is already a semantic token (one
    engine step fewer before the first audio). A voice with its reference's transcript and semantic ids gets the
    continuation prompt (docs/reference/spark-tts.md#prompts) for every text chunk: transcript + text in the content,
    then the reference's semantic ids after that marker.
    """
    prefix = (
        SpeakerPrefix(voice.prompt_prefix, voice.prefix_placement)
        if voice.prompt_prefix is not None
        else None
    )
    tokens = global_tokens if global_tokens is not None else voice.global_tokens
    if tokens is not None:
        style = StyleLabels(gender=None, pitch=voice.pitch, speed=voice.speed)
        reference_text = getattr(voice, "reference_text", None)
        reference_semantic = getattr(voice, "reference_semantic", None)
        if reference_text is None or reference_semantic is None:
            reference_text = reference_semantic = None  # continuation needs both
        return clone_prompt(
            text,
            tokens,
            style=style,
            prefix=prefix,
            start_semantic=True,
            reference_text=reference_text,
            reference_semantic=reference_semantic,
        ), "clone"
    if voice.gender is not None:
        return controllable_prompt(
            text, StyleLabels(voice.gender, voice.pitch, voice.speed), prefix
        ), "controllable"
    if prefix is not None:
        return speaker_prompt(text, prefix), "controllable"
    raise PromptError(
        "the voice has no global tokens, no gender and no speaker prefix; nothing to build a prompt from"
    )


def build_prompt_ids(
    tokenizer: _Encoder,
    text: str,
    voice: VoiceLike,
    *,
    global_tokens: Sequence[int] | None = None,
    added_ids: frozenset[int] | None = None,
) -> tuple[list[int], ParseMode]:
    """`build_prompt` then `encode_prompt`: the ids to send to the engine, and the parse mode.

    `added_ids` (the vocabulary's added-token ids): when given, the prompt's added tokens must be exactly those
    of the same prompt without the user text, so user text can never contribute a control id."""
    prompt, mode = build_prompt(text, voice, global_tokens=global_tokens)
    ids = encode_prompt(tokenizer, prompt)
    if added_ids is not None:
        skeleton, _ = build_prompt("", voice, global_tokens=global_tokens)
        expected = [i for i in encode_prompt(tokenizer, skeleton) if i in added_ids]
        if [i for i in ids if i in added_ids] != expected:
            raise PromptError("the text contains a control token of the model's vocabulary; remove it")
    return ids, mode
