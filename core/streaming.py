"""Chunked BiCodec decoding while the LLM is still generating (docs/reference/spark-tts.md#bicodec-decode).

BiCodec is fully convolutional and nothing mixes statistics across time, so a span of tokens can be decoded
on its own: decode it together with some left context and look-ahead tokens, then keep only the span's
samples. With context >= the receptive field (about 68 tokens each side at the released config) the
concatenated chunks equal the offline decode; smaller context trades a small, bounded error for latency.
The very first chunk needs no left context and the last needs no look-ahead: there the offline decode sees
zero padding too.

`DecodePlanner` is the schedule alone: tokens in, windows (ids with context, what to keep) out, their audio back
in. The service decodes its windows through the codec scheduler (services/device), batched with other streams';
`StreamingDecoder` is the same planner with a direct, blocking decode (offline tools, benchmarks, tests).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from core.bicodec import BiCodecDecoder

LatencyPreference = Literal["lowest", "balanced", "exact"]


@dataclass(frozen=True)
class StreamingConfig:
    """Chunk schedule: a small first chunk for latency, then chunks growing by `growth` up to the maximum.

    Context defaults are the smallest measured to keep streamed audio within 1e-3 (max abs) and >= 40 dB SNR
    of the offline decode: on random weights at the released size look-ahead 22 gave 1.1e-3 and 24 gave
    2e-4; left context 24 gave 1.4e-4 alone. The tiny fixture needs only 16 / 16.

    The first chunk may have its own, shorter look-ahead (`first_lookahead_tokens`): it then goes out after
    first_chunk + first_lookahead tokens instead of first_chunk + lookahead. Its last `first_overlap_tokens`
    tokens, the ones decoded with the least look-ahead, are held back and crossfaded into the second chunk's
    accurate decode of the same tokens, so the first boundary carries no step.
    """

    first_chunk_tokens: int = 25
    max_chunk_tokens: int = 200
    growth: float = 2.0
    left_context_tokens: int = 24
    lookahead_tokens: int = 24
    first_lookahead_tokens: int | None = None  # None: the same as lookahead_tokens
    first_overlap_tokens: int = 0
    # Audio tokens decoded with the short schedule (chunks of first_chunk_tokens, first look-ahead, overlap each)
    # before the full look-ahead takes over: the stream keeps flowing while the look-ahead builds up.
    warmup_tokens: int = 0
    # The chunk size once the short schedule ends (None: keep growing). The short chunks grow to ~40 tokens; the
    # first full-look-ahead chunk after them then waits for size + lookahead new tokens while only the short
    # schedule's second of audio is buffered, which a 2x-real-time engine cannot fill (bench/bench_ttfa.py).
    resume_chunk_tokens: int | None = None
    # A window is cut short (`DecodePlanner.cut`) once the listener would run dry within this many seconds: a
    # stream whose engine falls behind the growing chunks then plays what has its look-ahead instead of waiting for
    # the whole chunk. None: never (the planner alone has no clock; its caller reads the listener's runway).
    cut_runway_s: float | None = None

    def __post_init__(self) -> None:
        if self.first_chunk_tokens < 1 or self.max_chunk_tokens < 1:
            raise ValueError("first_chunk_tokens and max_chunk_tokens must be >= 1")
        if self.growth < 1.0:
            raise ValueError(f"growth must be >= 1.0, got {self.growth}")
        if self.left_context_tokens < 0 or self.lookahead_tokens < 0:
            raise ValueError("left_context_tokens and lookahead_tokens must be >= 0")
        if self.cut_runway_s is not None and self.cut_runway_s < 0:
            raise ValueError("cut_runway_s must be >= 0")
        if self.first_lookahead_tokens is not None and self.first_lookahead_tokens < 0:
            raise ValueError("first_lookahead_tokens must be >= 0")
        if not 0 <= self.first_overlap_tokens < self.first_chunk_tokens:
            raise ValueError("first_overlap_tokens must be >= 0 and smaller than first_chunk_tokens")
        if self.first_overlap_tokens > self.left_context_tokens:
            raise ValueError("first_overlap_tokens must not exceed left_context_tokens")
        if self.resume_chunk_tokens is not None and self.resume_chunk_tokens < 1:
            raise ValueError("resume_chunk_tokens must be >= 1")
        if self.warmup_tokens and 2 * self.first_overlap_tokens > self.first_chunk_tokens:
            raise ValueError(
                "with warmup_tokens, first_chunk_tokens must be at least twice first_overlap_tokens"
            )

    @property
    def first_lookahead(self) -> int:
        return self.lookahead_tokens if self.first_lookahead_tokens is None else self.first_lookahead_tokens

    @property
    def tokens_before_first_audio(self) -> int:
        """Semantic tokens the engine must generate before the first chunk can be decoded."""
        return self.first_chunk_tokens + self.first_lookahead

    def for_latency(self, preference: LatencyPreference) -> StreamingConfig:
        """This schedule with the first chunk of a latency preference (later chunks unchanged):

        - exact: the first chunk like every other (full look-ahead): streamed audio within 1e-3 of offline;
        - balanced: chunks of 8 tokens with 8 of look-ahead, 4 crossfaded (16 engine steps before the first audio);
        - lowest: chunks of 6 tokens with 2 of look-ahead, 2 crossfaded (8 steps before the first audio).
        The short schedule runs for the first second of audio, so the stream keeps flowing; then full look-ahead, with
        chunks starting again at this schedule's first chunk size (as `exact` starts), so they arrive in time.
        docs/benchmarks.md has each one's error against the offline decode at the released codec size.
        """
        if preference == "exact":
            return replace(
                self,
                first_lookahead_tokens=None,
                first_overlap_tokens=0,
                warmup_tokens=0,
                resume_chunk_tokens=None,
            )
        first, lookahead, overlap = FIRST_CHUNK_SCHEDULES[preference]
        overlap = min(overlap, first // 2, self.left_context_tokens)
        return replace(
            self,
            first_chunk_tokens=first,
            first_lookahead_tokens=lookahead,
            first_overlap_tokens=overlap,
            warmup_tokens=SHORT_SCHEDULE_TOKENS,
            resume_chunk_tokens=self.first_chunk_tokens,
        )

    @classmethod
    def from_settings(cls, settings: Any) -> StreamingConfig:
        """Read the `stream_*` fields of the service Settings (duck-typed to keep core free of it)."""
        return cls(
            first_chunk_tokens=settings.stream.stream_first_chunk_tokens,
            max_chunk_tokens=settings.stream.stream_max_chunk_tokens,
            growth=settings.stream.stream_chunk_growth,
            left_context_tokens=settings.stream.stream_left_context_tokens,
            lookahead_tokens=settings.stream.stream_lookahead_tokens,
            cut_runway_s=settings.stream.stream_cut_runway_ms / 1000 or None,
        )

    def next_chunk(self, current: int) -> int:
        return min(self.max_chunk_tokens, max(current, math.ceil(current * self.growth)))


# Chosen with bench/bench_first_chunk.py (docs/benchmarks.md).
# preference -> (short chunk tokens, their look-ahead, tokens of each crossfaded into the next chunk's decode).
FIRST_CHUNK_SCHEDULES: dict[str, tuple[int, int, int]] = {"balanced": (8, 8, 4), "lowest": (6, 2, 2)}
# The shortest window `DecodePlanner.cut` makes, as long as the served look-ahead: each window re-reads 48 tokens of
# context, so a cut of 24 costs the codec 3x its kept tokens. Cuts of 8 did that 7x, and on a saturated device (the
# simulator's 3 ms engine step, 250 streams within 5 s) their codec work ran 213 of 250 dry where cuts of 24 ran none.
MIN_CUT_TOKENS = 24
SHORT_SCHEDULE_TOKENS = (
    50  # the first second of audio; then the full look-ahead (generation runs ahead by then)
)


@dataclass(frozen=True, eq=False)
class PlannedWindow:
    """One decode the schedule asks for: `ids` (left context, the chunk, its look-ahead) and which of them to keep,
    [keep_start, keep_end) within the window. `hold`: tokens at the end of the kept audio held back for the next
    window's crossfade (a short-schedule chunk). The planner's caller decodes it (directly, or through the codec
    scheduler as a `DecodeWindow`) and hands the kept audio back to `DecodePlanner.take`, in order."""

    ids: np.ndarray  # int32 [T], range-checked on entry (`DecodePlanner.push`)
    keep_start: int
    keep_end: int
    hold: int = 0

    @property
    def kept_tokens(self) -> int:
        return self.keep_end - self.keep_start


class DecodePlanner:
    """The streaming schedule without the model: semantic tokens in (any arrival pattern), `PlannedWindow`s out;
    the windows' kept audio back in (`take`), float32 16 kHz chunks out. One stream, one voice.

    Ids are validated once, here, where they enter; nothing downstream checks them again. Total output is exactly
    tokens * hop samples. Counters (`tokens_in`, `chunks_out`, `samples_out`, `decode_calls`,
    `decode_tokens_total`) feed metrics and benchmarks.
    """

    def __init__(self, config: StreamingConfig | None, *, hop: int, codebook_size: int) -> None:
        self.config = config or StreamingConfig()
        self.hop = hop
        self._codebook = codebook_size
        self._buffer: list[int] = []  # tokens from index `_buffer_start` on (left context + pending)
        self._buffer_start = 0
        self._emitted = 0  # tokens whose audio has been planned (minus a held overlap)
        self._planned = 0  # windows planned
        self._chunk = self.config.first_chunk_tokens
        self._held: np.ndarray | None = None  # a short chunk's overlap, waiting for the crossfade
        self._taken = 0  # windows whose audio came back
        self.short_schedule_tokens = 0
        self._finished = False
        self.tokens_in = 0
        self.chunks_out = 0
        self.samples_out = 0
        self.decode_calls = 0
        self.decode_tokens_total = 0  # tokens run through the decoder, context included

    @property
    def pending_tokens(self) -> int:
        """Tokens received whose audio has not been planned yet."""
        return self.tokens_in - self._emitted

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def held_audio(self) -> np.ndarray | None:
        """The last short chunk's held overlap (`hold` tokens of audio), or None: a guess of what follows the audio
        taken so far, which the next window decodes again and crossfades in (super-resolution's lead window reads
        it as right context: core.sr_planner)."""
        return self._held

    @property
    def tokens_needed(self) -> int:
        """Pending tokens the next chunk waits for (its size and look-ahead): a push leaving fewer plans nothing."""
        size, short = self._next_chunk()
        return size + (self.config.first_lookahead if short else self.config.lookahead_tokens)

    @property
    def cut_tokens_needed(self) -> int | None:
        """Pending tokens `cut` needs to make a window (the shortest cut and its full look-ahead), or None while it
        makes none: before the first window, during the short schedule (its own look-ahead, held overlaps)."""
        if self._finished or self._planned == 0 or self._next_chunk()[1]:
            return None
        return MIN_CUT_TOKENS + self.config.lookahead_tokens

    def buffers_only(self, new_tokens: int) -> bool:
        """Whether pushing `new_tokens` only buffers them (no window is due)."""
        return self.pending_tokens + new_tokens < self.tokens_needed

    def _next_chunk(self) -> tuple[int, bool]:
        """The next chunk's size, and whether it belongs to the short schedule (the first chunk always does: its
        own look-ahead). The short schedule's later chunks grow like the others: fewer decode calls (each one
        re-reads its context) while the look-ahead builds up."""
        cfg = self.config
        if self._planned == 0:
            return cfg.first_chunk_tokens, True
        if self._emitted < cfg.warmup_tokens:
            return max(cfg.first_chunk_tokens, min(self._chunk, cfg.warmup_tokens - self._emitted)), True
        return self._chunk, False

    def _chunk_after(self, short: bool) -> int:
        cfg = self.config
        ended = short and cfg.warmup_tokens and self._emitted >= cfg.warmup_tokens
        if ended and cfg.resume_chunk_tokens is not None:
            return min(cfg.max_chunk_tokens, cfg.resume_chunk_tokens)
        return cfg.next_chunk(self._chunk)

    def push(self, tokens: Sequence[int]) -> list[PlannedWindow]:
        """Add newly generated semantic tokens (validated here); return the windows due now (maybe none)."""
        if self._finished:
            raise RuntimeError("push() after finish(): this stream is closed")
        new = self._validate(tokens)
        self._buffer.extend(new)
        self.tokens_in += len(new)
        out: list[PlannedWindow] = []
        while self.pending_tokens >= self.tokens_needed:
            size, short = self._next_chunk()
            out.append(self._plan_short(size) if short else self._plan(size))
            self._chunk = self._chunk_after(short)
        self._drop_consumed()
        return out

    def cut(self) -> list[PlannedWindow]:
        """The next window now, shorter than the schedule's chunk: every pending token that has its full look-ahead
        (the caller's listener would run dry before the chunk's tokens arrive). Its audio is as exact as any
        window's; it costs the codec a window's context more. Nothing before the first window, during the short
        schedule (its own look-ahead, held overlaps), or with fewer than `cut_tokens_needed` pending. The chunk
        sizes after it go on as scheduled."""
        needed = self.cut_tokens_needed
        if needed is None or self.pending_tokens < needed:
            return []
        size = min(self._chunk, self.pending_tokens - self.config.lookahead_tokens)
        window = self._plan(size)
        self._drop_consumed()
        return [window]

    def finish(self) -> list[PlannedWindow]:
        """Generation ended: the windows for everything not planned yet. The stream is then closed."""
        if self._finished:
            return []
        self._finished = True
        out: list[PlannedWindow] = []
        # push() leaves fewer than chunk + lookahead pending, so this is normally one window; cap it anyway.
        limit = self.config.max_chunk_tokens + self.config.lookahead_tokens
        while self.pending_tokens > 0:
            size = self.pending_tokens if self.pending_tokens <= limit else self.config.max_chunk_tokens
            out.append(self._plan(size))
        self._buffer.clear()
        return out

    def take(self, window: PlannedWindow, audio: np.ndarray) -> np.ndarray:
        """A window's kept audio ((keep_end - keep_start) * hop samples), in planning order -> the chunk to play:
        a held overlap is crossfaded in, this window's own overlap (if any) held back."""
        chunk = np.asarray(audio, dtype=np.float32)
        if chunk.shape != (window.kept_tokens * self.hop,):
            raise ValueError(
                f"a window keeping {window.kept_tokens} tokens needs {window.kept_tokens * self.hop} "
                f"samples, got shape {chunk.shape}"
            )
        if self._held is not None:  # fade from the previous short chunk's guess to this better decode
            chunk = _crossfade_into(self._held, chunk)
            self._held = None
        if window.hold:
            cut = chunk.shape[0] - window.hold * self.hop
            self._held = chunk[cut:].copy()
            chunk = chunk[:cut]
        self._taken += 1
        self.chunks_out += 1
        self.samples_out += chunk.shape[0]
        return chunk

    # ---- internals ------------------------------------------------------------------------------------

    def _validate(self, tokens: Sequence[int]) -> list[int]:
        if type(tokens) is list and tokens and all(type(t) is int for t in tokens):
            # The serving path's case (a parsed engine delta, a few ids): plain ints, checked without numpy.
            if min(tokens) >= 0 and max(tokens) < self._codebook:
                return tokens[:]
        arr = np.asarray(tokens)
        if arr.size == 0:
            return []
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"semantic tokens must be a flat sequence of integers, got dtype {arr.dtype}")
        bad = arr[(arr < 0) | (arr >= self._codebook)]
        if bad.size:
            raise ValueError(
                f"semantic token value {int(bad[0])} out of range; accepted 0..{self._codebook - 1}"
            )
        ids: list[int] = arr.tolist()
        return ids

    def _plan_short(self, size: int) -> PlannedWindow:
        """A chunk of the short schedule: its own look-ahead; its last overlap tokens are held back and decoded
        again by the next window, into which they are crossfaded."""
        window = self._plan(size, lookahead=self.config.first_lookahead)
        self.short_schedule_tokens = self._emitted  # audio up to here may differ from the offline decode
        overlap = self.config.first_overlap_tokens
        if overlap:  # push() only: at finish() nothing is held
            self._emitted -= overlap  # the next window decodes these tokens again
            window = PlannedWindow(window.ids, window.keep_start, window.keep_end, hold=overlap)
        return window

    def _plan(self, size: int, *, lookahead: int | None = None) -> PlannedWindow:
        start, end = self._emitted, self._emitted + size
        ctx_start = max(0, start - self.config.left_context_tokens)
        ahead = self.config.lookahead_tokens if lookahead is None else lookahead
        ctx_end = min(self.tokens_in, end + ahead)
        ids = np.asarray(
            self._buffer[ctx_start - self._buffer_start : ctx_end - self._buffer_start], np.int32
        )
        self._planned += 1
        self.decode_calls += 1
        self.decode_tokens_total += int(ids.size)
        self._emitted = end
        return PlannedWindow(ids, start - ctx_start, end - ctx_start)

    def _drop_consumed(self) -> None:
        # Keep only what a later chunk can still read as left context.
        keep_from = max(self._buffer_start, self._emitted - self.config.left_context_tokens)
        if keep_from > self._buffer_start:
            del self._buffer[: keep_from - self._buffer_start]
            self._buffer_start = keep_from


class StreamingDecoder:
    """`DecodePlanner` with a direct, synchronous decode: push tokens, get chunks. For offline tools, benchmarks and
    tests; the service decodes the planner's windows through the codec scheduler instead
    (services.pipeline.synthesis).
    """

    def __init__(
        self, decoder: BiCodecDecoder, d_vector: torch.Tensor, config: StreamingConfig | None = None
    ) -> None:
        self.decoder = decoder
        d = torch.as_tensor(d_vector, dtype=torch.float32)
        if d.dim() == 1:
            d = d.unsqueeze(0)
        if tuple(d.shape) != (1, decoder.d_vector_dim):
            raise ValueError(f"d_vector must have shape [1, {decoder.d_vector_dim}], got {list(d.shape)}")
        self.d_vector = d.to(decoder.device)
        self.hop = decoder.hop_length
        self.planner = DecodePlanner(config, hop=self.hop, codebook_size=decoder.semantic_codebook_size)
        self.config = self.planner.config
        self.decode_seconds_total = 0.0

    def __getattr__(self, name: str) -> Any:
        # The planner's counters and state (tokens_in, chunks_out, pending_tokens, tokens_needed, finished, ...).
        if name == "planner":
            raise AttributeError(name)
        return getattr(self.planner, name)

    def push(self, tokens: Sequence[int]) -> list[np.ndarray]:
        """Add newly generated semantic tokens; return the chunks that are ready now (maybe none)."""
        return [self._decode(w) for w in self.planner.push(tokens)]

    def cut(self) -> list[np.ndarray]:
        """The next chunk now, shorter than scheduled (`DecodePlanner.cut`); maybe none."""
        return [self._decode(w) for w in self.planner.cut()]

    def finish(self) -> list[np.ndarray]:
        """Generation ended: decode and return everything not returned yet. The stream is then closed."""
        return [self._decode(w) for w in self.planner.finish()]

    def _decode(self, window: PlannedWindow) -> np.ndarray:
        semantic = torch.from_numpy(window.ids.astype(np.int64)).reshape(1, -1).to(self.decoder.device)
        began = time.perf_counter()
        wav = self.decoder.decode_with_speaker(semantic, self.d_vector)[0]
        kept = wav[window.keep_start * self.hop : window.keep_end * self.hop].float().cpu().numpy()
        self.decode_seconds_total += time.perf_counter() - began
        return self.planner.take(window, kept)


def _crossfade_into(held: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """`chunk` whose first len(held) samples fade from `held` to its own (equal-gain: both estimate one signal)."""
    n = min(len(held), len(chunk))
    if n == 0:
        return chunk
    out = chunk.copy()
    fade = (np.arange(n, dtype=np.float32) + 0.5) / n
    out[:n] = held[:n] * (1.0 - fade) + chunk[:n] * fade
    return out
