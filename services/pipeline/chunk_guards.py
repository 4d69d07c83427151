"""Recovery from a tripped generation guard (core.guards): what the pipeline does with a `Trip`.

Per text chunk, the first `Trip` of an acting guard decides:
- no audio of the chunk has gone to the audio chain yet (a non-streamed chunk's audio is held until the chunk
  passed; a streamed chunk's tokens are checked while it is still queued behind the previous chunk) and tries are
  left: generate the chunk again with a new seed (`retried`);
- the chunk's audio is already on its way to a listener: cut it at the detection point with a short fade; the next
  chunk continues with the same voice (`cut`);
- no try is left and nothing was sent: the request fails with GENERATION_FAILED (`failed`).
A guard in count-only mode is counted and logged (`counted`) and changes nothing. Every trip is one increment of
`veena3_tts_guard_trips_total{guard,action}` and one log line; the per-request counts travel in `PipelineStats`.

The request's speech limit (`TTS_MAX_AUDIO_S_PER_CHAR`: generated seconds per character of the text so far, plus
`TTS_MAX_AUDIO_SLACK_S` once) is not a guard of the text's content but a bound on what a request can make: reaching
it is always a cut (`audio_limit`), whatever the guard modes, and the chunk's audio so far goes on.

A cut chunk is charged for the characters its sent audio covers (`covered_chars`): its characters in proportion to
the sent speech over the speech its text is expected to need (core.guards.text_budget), and never fewer than one
character per `TTS_MAX_AUDIO_S_PER_CHAR` seconds sent, so text written to inflate the estimate or to trip a guard
still pays for the audio it got at the rate the limit allows. The rest of the chunk's characters (`chars_cut`) are
not charged. A stream the server ends early (a WebSocket whose client stopped reading or broke a message rule, or
whose connection was lost) is charged by the same rule for the audio it handed to the socket (`delivered_chars`): text whose audio never reached
the socket is not charged.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.guards import GUARD_NAMES, ChunkGuards, GuardConfig, Trip
from core.guards.chunk import SAMPLES_PER_TOKEN
from core.guards.text_budget import SEMANTIC_TOKENS_PER_SECOND
from services.errors import SynthesisError
from shared import metrics

if TYPE_CHECKING:
    from services.pipeline.pipeline_stats import PipelineStats
    from shared.settings import Settings

logger = logging.getLogger("services.pipeline.chunk_guards")

Action = Literal["retried", "cut", "failed", "counted"]
# A user seed stays reproducible on retries: try n uses seed + n x this (mod 2^31).
RETRY_SEED_STRIDE = 1_000_003
AUDIO_LIMIT = "audio_limit"  # the request's speech limit (module doc): always a cut


def covered_chars(characters: int, expected_tokens: int, sent_tokens: float, max_s_per_char: float) -> int:
    """Characters of a cut chunk of `characters` that `sent_tokens` of its speech cover (module doc): in proportion
    to its expected tokens, at least one per `max_s_per_char` seconds sent, at most all of them."""
    if characters <= 0 or sent_tokens <= 0:
        return 0
    by_estimate = characters * sent_tokens / max(1, expected_tokens)
    by_limit = sent_tokens / (max_s_per_char * SEMANTIC_TOKENS_PER_SECOND)
    return min(characters, max(1, math.ceil(max(by_estimate, by_limit) - 1e-9)))  # sent audio is never free


def delivered_chars(
    chunks: Sequence[tuple[int, int, float]], finished: int, delivered_tokens: float, max_s_per_char: float
) -> int:
    """Characters of a stream the server ended early that its delivered audio covers: `chunks` in order as
    (characters, expected tokens, tokens generated), the first `finished` of them generated to their end. Whole
    chunks while the delivered audio spans their speech; the chunk it stops in (or one still generating) is charged
    like a cut chunk (`covered_chars`); chunks after it, whose audio never reached the socket, are free."""
    covered, left = 0, max(0.0, delivered_tokens)
    for index, (characters, expected, made) in enumerate(chunks):
        if left <= 0:
            break
        if index < finished and left >= made:
            covered += characters if made > 0 else 0  # a finished chunk that made no audio is free
            left -= made
            continue
        covered += covered_chars(characters, expected, left, max_s_per_char)
        break
    return covered


def speech_limit_tokens(characters: int, max_s_per_char: float, slack_s: float) -> int:
    """The most semantic tokens a request whose text so far has `characters` may generate."""
    return int((characters * max_s_per_char + slack_s) * SEMANTIC_TOKENS_PER_SECOND)


def guard_config(settings: Settings) -> GuardConfig:
    return GuardConfig(
        mode=settings.guards.guard_mode,
        modes=dict(settings.guards.guard_modes),
        length_max_ratio=settings.guards.guard_length_max_ratio,
        length_slack_s=settings.guards.guard_length_slack_s,
        length_min_ratio=settings.guards.guard_length_min_ratio,
        loop_window=settings.guards.guard_loop_window,
        loop_min_tokens=min(100, settings.guards.guard_loop_window),
        loop_max_repeat_share=settings.guards.guard_loop_max_repeat_share,
        silence_db=settings.guards.guard_silence_db,
        silence_max_s=settings.guards.guard_silence_max_s,
        align_min_score=settings.guards.guard_align_min_score,
        align_max_missing=settings.guards.guard_align_max_missing,
    )


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """End a tripped try's generation (it may still be running: an audio guard tripped) and wait for it."""
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def retry_seed(seed: int, attempt: int) -> int:
    return (seed + attempt * RETRY_SEED_STRIDE) % 2**31


def fade_out(audio: np.ndarray, samples: int) -> np.ndarray:
    """The last `samples` of `audio` faded to zero (a half cosine), so a cut ends without a click."""
    n = min(samples, audio.size)
    if n <= 0:
        return audio
    out = np.array(audio, dtype=np.float32, copy=True)
    out[-n:] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32))
    return out


@dataclass
class ChunkRun:
    """One text chunk across its tries: the current try's detectors and what has left for the listener."""

    index: int
    text: str
    hold: bool  # keep decoded audio back until the chunk passed (non-streamed requests)
    guards: ChunkGuards
    attempt: int = 0
    started: bool = False  # the chunk's audio segment was opened (once, whatever the tries)
    last: bool = False  # it is the request's last text chunk (known when it started)
    emitted: bool = False  # some of this chunk's audio went to the audio chain
    held: list[np.ndarray] = field(default_factory=list)
    stop: Trip | None = None  # an acting audio-guard trip that ends this try ...
    action: Action | None = None  # ... and what was decided for it
    tokens: int = 0  # this try's semantic tokens handed to the decoder
    decoded: int = 0  # this try's decoded 16 kHz samples
    audio_seen: int = 0  # samples the audio guard has seen this try
    cut: bool = False

    def release(self, push: Callable[[np.ndarray], bytes]) -> bytes:
        """The held audio of a chunk that passed every guard, through `push` (the audio chain)."""
        held, self.held = self.held, []
        return b"".join(push(audio) for audio in held)

    def keep_or_hold(self, audio: np.ndarray) -> np.ndarray | None:
        """Decoded audio: returned to go on now, or held (None) until the chunk passes."""
        self.decoded += int(audio.size)
        if self.hold:
            self.held.append(audio)
            return None
        self.emitted = self.emitted or audio.size > 0
        return audio


class GuardPolicy:
    """One request's guard settings and the decision for each trip (module doc). Counts into `stats`."""

    def __init__(self, settings: Settings, stats: PipelineStats, request_id: str) -> None:
        self.config = guard_config(settings)
        self.max_tries = settings.guards.guard_max_tries
        self.fade_samples = round(settings.guards.guard_fade_ms * 16)  # 16 kHz
        self.max_s_per_char = settings.limits.max_audio_s_per_char
        self.slack_s = settings.limits.max_audio_slack_s
        self.stats = stats
        self.request_id = request_id
        # Audio is held back (non-streamed requests) only where a guard may retry the chunk.
        self.acting = any(self.config.mode_of(g) == "act" for g in GUARD_NAMES)

    def new_run(self, index: int, text: str, *, stream: bool) -> ChunkRun:
        return ChunkRun(index, text, not stream and self.acting, ChunkGuards(text, self.config))

    def screen_tokens(self, run: ChunkRun, semantic: list[int]) -> Trip | None:
        """The token guards on one delta: an acting trip, or None (a count-only trip is only counted)."""
        trip = run.guards.feed_tokens(semantic)
        if trip is not None and not trip.acts:
            self.decide(run, trip)
            return None
        return trip

    def screen_end(self, run: ChunkRun, *, stopped: bool, capped: bool) -> Trip | None:
        """The guards at the engine's end of a try: an acting trip, or None (a count-only trip is only counted)."""
        trip = run.guards.finish(stopped=stopped, capped=capped, semantic=run.tokens)
        if trip is not None and not trip.acts:
            self.decide(run, trip)
            return None
        return trip

    def fade_last(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        return [*chunks[:-1], fade_out(chunks[-1], self.fade_samples)] if chunks else chunks

    def screen_audio(self, run: ChunkRun, chunk: np.ndarray) -> np.ndarray:
        """The audio guard on one decoded piece: what of it may go on. An acting trip sets `run.stop`: a cut keeps
        the piece up to the detection point, faded; a retry or failure keeps none of it."""
        seen, run.audio_seen = run.audio_seen, run.audio_seen + int(chunk.size)
        trip = run.guards.feed_audio(chunk)
        if trip is None:
            return chunk
        action = self.decide(run, trip)
        if action == "counted":
            return chunk
        run.stop, run.action = trip, action
        if action != "cut":
            return chunk[:0]
        return fade_out(chunk[: max(0, trip.token * SAMPLES_PER_TOKEN - seen)], self.fade_samples)

    def account_cut(self, run: ChunkRun) -> None:
        """Tokens whose audio was dropped at a cut leave the counts (the flow monitor compares the stages); the
        characters the sent audio does not cover are not charged (module doc)."""
        self.stats.semantic_tokens -= max(0, run.tokens - run.decoded // SAMPLES_PER_TOKEN)
        covered = covered_chars(
            len(run.text), run.guards.expected, run.decoded / SAMPLES_PER_TOKEN, self.max_s_per_char
        )
        self.stats.chars_cut += len(run.text) - covered

    def speech_room(self, characters: int, tokens_before: int) -> int:
        """Semantic tokens a chunk may still generate under the request's speech limit, given the characters of the
        text so far (this chunk included) and the tokens the earlier chunks kept."""
        return max(0, speech_limit_tokens(characters, self.max_s_per_char, self.slack_s) - tokens_before)

    def limit_trip(self, run: ChunkRun, room: int) -> Trip:
        """The request's speech limit reached in this chunk: a cut at `room` tokens (module doc)."""
        return Trip(
            AUDIO_LIMIT,
            room,
            f"the request reached its speech limit of {self.max_s_per_char:g} s per "
            f"character (+{self.slack_s:g} s)",
            acts=True,
        )

    def next_try(self, run: ChunkRun) -> None:
        """Discard the try (it leaves the token and sample counts) and set up the next one."""
        self.stats.semantic_tokens -= run.tokens
        self.stats.decoded_samples -= run.decoded
        if self.stats.decoded_samples_per_chunk:
            self.stats.decoded_samples_per_chunk[-1] -= run.decoded
        run.attempt += 1
        run.guards = ChunkGuards(run.text, self.config)
        run.held = []
        run.stop = run.action = None
        run.tokens = run.decoded = run.audio_seen = 0

    def decide(self, run: ChunkRun, trip: Trip) -> Action:
        if not trip.acts:
            action: Action = "counted"
        elif trip.guard == AUDIO_LIMIT:
            action = "cut"  # a retry would reach the same limit
        elif run.emitted:
            action = "cut"
        elif run.attempt + 1 < self.max_tries:
            action = "retried"
        else:
            action = "failed"
        self.record(run, trip, action)
        return action

    def record(self, run: ChunkRun, trip: Trip, action: Action) -> None:
        metrics.GUARD_TRIPS.labels(trip.guard, action).inc()
        self.stats.guard_events.append(f"{trip.guard}:{action}")
        if action == "retried":
            self.stats.chunks_retried += 1
        elif action == "cut" and not run.cut:
            run.cut = True
            self.stats.chunks_cut += 1
        logger.warning(
            "generation guard tripped",
            extra={
                "event": "guard_tripped",
                "guard": trip.guard,
                "action": action,
                "text_chunk": run.index,
                "attempt": run.attempt + 1,
                "token": trip.token,
                "detail": trip.detail,
            },
        )

    def failure(self, run: ChunkRun, trip: Trip) -> SynthesisError:
        return SynthesisError(
            "GENERATION_FAILED",
            f"Text chunk {run.index + 1} could not be generated cleanly: all {self.max_tries} tries tripped a "
            f"generation guard (last: {trip.guard}: {trip.detail}). Retry the request, or rephrase that passage.",
        )
