"""The service's window schedule as plain numbers: which decode and SR windows one stream submits, and when.

A faithful model of `core.streaming.StreamingDecoder` (push/finish with the first-chunk schedules of
`StreamingConfig.for_latency`) and `core.apbwe.SRStream` (min/max block, right context), written without the
models so the simulator can plan thousands of streams; `tests/unit/bench/sim/test_simulate.py` checks it against
`StreamingDecoder` itself on the demo codec. The simulator now drives the planners themselves
(`core.streaming.DecodePlanner`, `core.sr_planner.SRPlanner`; identical reports); this model stays for quick
arithmetic on a schedule (window tokens per kept token) without running one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.streaming import StreamingConfig
from services.pipeline.audio_output import SR_MAX_BLOCK, SR_MIN_BLOCK  # the service's blocks, one source

HOP = 320  # 16 kHz samples per token
SR_CONTEXT = 880  # AP-BWE right/left context at the released config (55 ms), on its 80-sample grid
SR_GRID = 80


@dataclass(frozen=True)
class PlannedDecode:
    ready_at_tokens: int  # semantic tokens generated before this window can be submitted
    start: int  # first window token (left context included)
    end: int  # one past the last window token (look-ahead included)
    keep_start: int  # tokens within the window whose audio goes out
    keep_end: int
    final: bool  # decoded at finish() (generation ended)
    sent_tokens: (
        int  # audio this window sends (a short chunk's overlap is held back and sent by the next one)
    )

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def kept_tokens(self) -> int:
        return self.keep_end - self.keep_start


def plan_decode(config: StreamingConfig, total_tokens: int) -> list[PlannedDecode]:
    """Every decode window of a stream of `total_tokens` semantic tokens, in order (one token at a time in; a
    window is submitted as soon as the decoder would emit it). `sent_tokens` add up to `total_tokens`."""
    cfg = config
    out: list[PlannedDecode] = []
    emitted = 0
    chunks = 0
    chunk = cfg.first_chunk_tokens

    def next_chunk() -> tuple[int, bool]:
        if chunks == 0:
            return cfg.first_chunk_tokens, True
        if emitted < cfg.warmup_tokens:
            return max(cfg.first_chunk_tokens, min(chunk, cfg.warmup_tokens - emitted)), True
        return chunk, False

    while True:
        size, short = next_chunk()
        ahead = cfg.first_lookahead if short else cfg.lookahead_tokens
        need = emitted + size + ahead
        if need > total_tokens:
            break
        start, end = emitted, emitted + size
        ctx = max(0, start - cfg.left_context_tokens)
        held = cfg.first_overlap_tokens if short else 0
        out.append(PlannedDecode(need, ctx, end + ahead, start - ctx, end - ctx, False, size - held))
        emitted = end - held
        chunks += 1
        ended = short and cfg.warmup_tokens and emitted >= cfg.warmup_tokens
        if ended and cfg.resume_chunk_tokens is not None:
            chunk = min(cfg.max_chunk_tokens, cfg.resume_chunk_tokens)
        else:
            chunk = cfg.next_chunk(chunk)
    limit = cfg.max_chunk_tokens + cfg.lookahead_tokens
    while emitted < total_tokens:
        pending = total_tokens - emitted
        size = pending if pending <= limit else cfg.max_chunk_tokens
        start, end = emitted, emitted + size
        ctx = max(0, start - cfg.left_context_tokens)
        stop = min(total_tokens, end + cfg.lookahead_tokens)
        out.append(PlannedDecode(total_tokens, ctx, stop, start - ctx, end - ctx, True, size))
        emitted = end
    return out


@dataclass(frozen=True)
class PlannedSR:
    after_chunk: int  # index of the decoded chunk whose arrival makes this window ready
    length: int  # 16 kHz input samples, context included
    out_samples: int  # 48 kHz samples kept
    true_end: bool


def plan_sr(
    chunk_samples: list[int],
    *,
    context: int = SR_CONTEXT,
    grid: int = SR_GRID,
    min_block: int = SR_MIN_BLOCK,
    max_block: int = SR_MAX_BLOCK,
) -> list[PlannedSR]:
    """Every AP-BWE window `SRStream` runs when decoded chunks of these sizes (16 kHz samples) are pushed one by
    one and then finished: a block runs once `min_block` new samples have their full right context, at most
    `max_block` per call; at the end the rest, the last window at the true end."""
    min_block = max(grid, math.ceil(min_block / grid) * grid)
    max_block = max(min_block, math.ceil(max_block / grid) * grid)
    out: list[PlannedSR] = []
    done = 0
    samples_in = 0
    for i, n in enumerate(chunk_samples):
        samples_in += n
        while True:
            ready = (samples_in - context) // grid * grid
            if ready - done < min_block:
                break
            stop = min(ready, done + max_block)
            a = max(0, done - context)
            out.append(PlannedSR(i, min(stop + context, samples_in) - a, 3 * (stop - done), False))
            done = stop
    last = len(chunk_samples) - 1
    while samples_in - done > max_block + context:
        stop = done + max_block
        a = max(0, done - context)
        out.append(PlannedSR(last, stop + context - a, 3 * (stop - done), False))
        done = stop
    if samples_in > done:
        a = max(0, done - context)
        out.append(PlannedSR(last, samples_in - a, 3 * (samples_in - done), True))
    return out
