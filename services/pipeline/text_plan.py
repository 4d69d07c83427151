"""What the model is asked to speak, planned before any GPU work: the normalised text and its chunks (`plan_text`;
a request's whole document: services/pipeline/markup.py:plan_document), each chunk's prompt ids (`prompt_for`), and
the checks that every prompt leaves the model room to speak (`plan_misfit`, `check_voice_fits`). Shared by the speech
service, the WebSocket session and `POST /v1/tts/normalize`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.guards import longest_spaced_word
from processing.chunking import split_text
from processing.lexicon import AliasRulesTooCostly
from processing.markdown import drop_emoji, read_markdown
from processing.normalize import normalize_text
from processing.prompt import ParseMode, PromptError, build_prompt_ids
from processing.tags import UnknownTags, process_tags
from services.errors import SynthesisError

if TYPE_CHECKING:
    from core.voices import Voice
    from processing.lexicon import Lexicon
    from processing.speech_document import DocumentSegment
    from services.pipeline.resources import PipelineResources
    from services.pipeline.synthesis_request import SynthesisRequest
    from shared.settings import Settings

logger = logging.getLogger("services.pipeline.text_plan")

# Normalisation's regular expressions run in C and hold the interpreter lock for a whole call: on 40,000 characters
# one call held it for hundreds of milliseconds, and every other key's request (its engine steps, its audio) waited
# that long. Long text is normalised in pieces of at most this many characters, cut at a line break or a space, so
# the lock changes hands between pieces; no token a rule reads spans a line break, and few span a cut space.
NORMALIZE_PIECE_CHARS = 4000


class NothingToSpeak(SynthesisError):
    """A text (or a voice segment's) with nothing left to speak once tags, markup and emoji are gone: a voice
    segment's is dropped (`plan_voice_segments`), a whole request's is this 400."""

    def __init__(self, message: str) -> None:
        super().__init__("VALIDATION_ERROR", message, "text")


@dataclass(frozen=True)
class TextPlan:
    """What the model is asked to speak: the normalised text and its chunks."""

    text: str
    chunks: list[str]
    chunked: bool
    # Voice segments (processing/voice_segments.py): the voice each chunk is spoken in, by the name its marker gave
    # (None: the request's own voice). Empty: every chunk in the request's voice.
    chunk_voices: tuple[str | None, ...] = ()
    # SSML and alias rules (services/pipeline/markup.py): silence before a chunk (its index; len(chunks): after the
    # last) and the text as written once tags and aliases are resolved (None: the request's text).
    pauses: dict[int, float] = field(default_factory=dict)
    written: str | None = None


# Letters in the longest word the model is asked to speak, in an alphabet written with spaces: the longest words in
# use have about 45; a longer run ("aaaa...") has no pronunciation, so every try at it trips a guard.
MAX_WORD_LETTERS = 64

# Fewest tokens a chunk must be able to generate after its prompt (about a third of a second of speech).
MIN_GENERATION_TOKENS = 16


def prompt_for(
    resources: PipelineResources, text: str, voice: Voice, global_tokens: tuple[int, ...] | None
) -> tuple[list[int], ParseMode]:
    """Prompt ids for one text chunk; user text can never contribute a control id (SynthesisError 400)."""
    try:
        return build_prompt_ids(
            resources.tokenizer, text, voice, global_tokens=global_tokens, added_ids=resources.added_token_ids
        )
    except PromptError as exc:
        raise SynthesisError("VALIDATION_ERROR", f"Invalid 'text': {exc}.", "text") from exc


def plan_misfit(resources: PipelineResources, chunks: list[str], voice: Voice) -> SynthesisError | None:
    """The refusal for the first text chunk whose prompt leaves the model no room to speak it; None when all fit.

    A cloned voice with a transcript repeats its reference (transcript + ~50 semantic ids per second) in every
    chunk's prompt (continuation), so its chunks hold less text; the refusal says how much the reference takes."""
    placeholder = tuple(voice.global_tokens or (0,) * 32)  # later chunks carry 32 globals
    limit = resources.settings.llm.max_model_len - MIN_GENERATION_TOKENS
    for index, chunk in enumerate(chunks):
        ids, _ = prompt_for(resources, chunk, voice, placeholder if index else voice.global_tokens)
        if len(ids) > limit:
            reference = ""
            if voice.continuation:
                skeleton, _ = prompt_for(resources, "", voice, voice.global_tokens)
                reference = (
                    f" ({len(skeleton)} of them the voice's reference transcript and audio; a shorter "
                    "reference or a voice without a transcript leaves more room)"
                )
            return SynthesisError(
                "TEXT_TOO_LONG",
                f"Invalid 'text': chunk {index + 1} needs {len(ids)} prompt tokens{reference} but the model holds "
                f"{resources.settings.llm.max_model_len}; enable chunking or send shorter sentences.",
                "text",
            )
    return None


# Prompt room a voice with a reference (continuation) must leave for the text and its speech: about 5 s of audio.
REFERENCE_TEXT_ROOM = 256


def check_voice_fits(resources: PipelineResources, voice: Voice, param: str = "speaker") -> None:
    """Refuse a voice whose reference (transcript + semantic ids, repeated in every prompt) leaves the model too
    little room to speak anything (AUDIO_TOO_LONG, 400): only a small TTS_MAX_MODEL_LEN or a long reference does."""
    if not voice.continuation:
        return
    ids, _ = prompt_for(resources, "", voice, voice.global_tokens)
    room = resources.settings.llm.max_model_len - len(ids)
    if room < REFERENCE_TEXT_ROOM:
        raise SynthesisError(
            "AUDIO_TOO_LONG",
            f"Invalid '{param}': the reference's transcript and audio take {len(ids)} of the model's "
            f"{resources.settings.llm.max_model_len} prompt tokens, leaving {room} (at least {REFERENCE_TEXT_ROOM} are "
            "needed to speak a sentence); use a shorter reference or transcript.",
            param,
        )


def stitched_misfit(misfit: SynthesisError) -> SynthesisError:
    """A stitched voice's refusal for a chunk that fits only without the previous requests' prefix
    (services.continuity): the same, naming `previous_request_ids`."""
    param = "previous_request_ids"
    return SynthesisError(
        misfit.code,
        misfit.message.replace("Invalid 'text'", f"Invalid '{param}'").replace(
            "enable chunking or send shorter sentences", "stitch fewer requests or send shorter sentences"
        ),
        param,
    )


def apply_lexicon(lexicon: Lexicon, text: str, pause: Callable[[], None] = lambda: None) -> str:
    """`lexicon.apply`, its cost bound refused in the error envelope."""
    try:
        return lexicon.apply(text, pause)
    except AliasRulesTooCostly as exc:
        raise SynthesisError(
            "VALIDATION_ERROR", f"Invalid 'lexicon': {exc}.", "lexicon"
        ) from exc  # the request's own rules or its dictionaries'


def text_pieces(text: str, limit: int = NORMALIZE_PIECE_CHARS) -> list[str]:
    """`text` cut into pieces of at most `limit` characters: at the last line break in a piece's last quarter, else
    its last space, else (one unbroken run) at `limit`."""
    pieces: list[str] = []
    while len(text) > limit:
        floor = limit * 3 // 4
        cut = text.rfind("\n", floor, limit)
        if cut < 0:
            cut = text.rfind(" ", floor, limit)
        cut = limit if cut < 0 else cut + 1
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def plan_text(
    text: str,
    *,
    normalize: bool,
    chunking: bool,
    threshold: int,
    target: int,
    unknown_tags: UnknownTags = "strip",
    lexicon: Lexicon | None = None,
    pause: Callable[[], None] = lambda: None,
) -> TextPlan:
    """Normalise, resolve emotion tags, and split long text at sentence boundaries; alias rules first. `pause` is
    called between the long steps and between normalisation pieces: a text step's turn between keys
    (services/device/key_share.py `TextTurns`)."""
    if lexicon is not None:
        text = apply_lexicon(lexicon, text, pause)
    if (
        normalize
    ):  # Markdown first: a link's `[text](url)` must not reach the tag reader as `[text]`; emoji before
        pause()
        text = read_markdown(drop_emoji(text))  # it ("#😀 Title" is a heading once the emoji has gone)
    tag_result = process_tags(text, unknown=unknown_tags)
    cleaned = tag_result.text
    if normalize:
        # A piece cut at a space or line break is a word apart from the next; one cut inside a run stays joined.
        normalized = []
        for piece in text_pieces(cleaned):
            pause()
            normalized.append(
                normalize_text(piece, markdown=False).text + (" " if piece[-1:].isspace() else "")
            )
        cleaned = "".join(normalized)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        raise NothingToSpeak("Invalid 'text': nothing left to speak after removing tags.")
    if chunking and len(cleaned) > threshold:
        pause()
        chunks = [c for c in split_text(cleaned, max_chars=target, threshold=threshold) if c.strip()]
    else:
        if not chunking and len(cleaned) > threshold:
            logger.warning("long text with chunking disabled", extra={"text_length": len(cleaned)})
        chunks = [cleaned]
    return TextPlan(text=cleaned, chunks=chunks, chunked=len(chunks) > 1)


def plan_for(request: SynthesisRequest, settings: Settings) -> TextPlan:
    """A synthesis request's text planned as plain text by its own options (no voice segments, SSML or limits):
    for jobs no route opened (warm-up, voice pinning, benchmarks)."""
    return plan_text(
        request.text,
        normalize=request.normalize,
        chunking=request.chunking,
        threshold=settings.text.chunking_threshold_chars,
        target=settings.text.chunk_target_chars,
        unknown_tags=request.unknown_tags,
        lexicon=request.lexicon,
    )


def check_request_plan(plan: TextPlan, settings: Settings) -> TextPlan:
    """The per-request limits: normalised length and chunk count."""
    if len(plan.text) > settings.limits.max_normalized_chars:
        raise SynthesisError(
            "TEXT_TOO_LONG",
            f"Invalid 'text': {len(plan.text)} characters after normalisation "
            f"(numbers spelled out); at most {settings.limits.max_normalized_chars}.",
            "text",
        )
    if len(plan.chunks) > settings.limits.max_text_chunks:
        raise SynthesisError(
            "TEXT_TOO_LONG",
            f"Invalid 'text': {len(plan.chunks)} text chunks; at most "
            f"{settings.limits.max_text_chunks} per request. Split the text over several requests.",
            "text",
        )
    return plan


def plan_voice_segments(
    segments: Sequence[DocumentSegment], plan_part: Callable[[DocumentSegment], TextPlan]
) -> TextPlan:
    """One plan for text with voice markers: each segment planned alone (a chunk never spans two voices), the
    chunks in order, each with its segment's voice. A segment with nothing to speak (only emoji, say) is
    dropped; when none is left, the refusal is the one the whole text would get."""
    chunks: list[str] = []
    voices: list[str | None] = []
    texts: list[str] = []
    written: list[str] = []
    marked = False  # any segment's written text differs from its own (SSML, alias rules)
    pauses: dict[int, float] = {}
    refusal: NothingToSpeak | None = None
    for segment in segments:
        try:
            part = plan_part(segment)
        except NothingToSpeak as exc:
            refusal = exc
            continue
        texts.append(part.text)
        written.append(segment.text if part.written is None else part.written)
        marked = marked or part.written is not None
        for index, seconds in part.pauses.items():  # SSML breaks, at their chunk's place in the whole plan
            pauses[len(chunks) + index] = pauses.get(len(chunks) + index, 0.0) + seconds
        chunks += part.chunks
        voices += [segment.voice] * len(part.chunks)
    if not chunks:
        raise refusal or NothingToSpeak("Invalid 'text': nothing left to speak.")
    return TextPlan(
        text=" ".join(texts),
        chunks=chunks,
        chunked=len(chunks) > 1,
        chunk_voices=tuple(voices),
        pauses=pauses,
        written=" ".join(written) if marked else None,
    )


def check_words_speakable(plan: TextPlan) -> None:
    """Refuse, before any GPU work, a word no try can speak (VALIDATION_ERROR, 400): the client's text, not a fault."""
    longest = longest_spaced_word(plan.text)
    if longest > MAX_WORD_LETTERS:
        raise SynthesisError(
            "VALIDATION_ERROR",
            f"Invalid 'text': it holds a word of {longest} letters, which the "
            f"model cannot speak; at most {MAX_WORD_LETTERS} letters per word (separate words with "
            "spaces).",
            "text",
        )
