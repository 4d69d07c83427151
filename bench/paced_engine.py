"""A stand-in LLM engine that emits a valid Spark token stream at a set rate, for load tests of the service.

On a GPU, vLLM gives one stream roughly 50-200 semantic tokens/s. This engine reproduces that timing with no
model: it follows the `core.llm.LLMEngine` contract (deltas of new ids, stop id last, `max_tokens` cap,
abort / aclose stop it, `active_requests`) so the real parser, streaming decoder, SR, encoders and HTTP layer
run unchanged, and whatever time is left over between the engine's schedule and the audio is the service's.

Stream shape, chosen from the prompt as the trained model continues it:
- clone prompt (holds `<|end_global_token|>`): `<|start_semantic_token|>` (unless the prompt already ends in
  it), N semantic ids, `<|im_end|>`;
- controllable prompt (holds `<|task_controllable_tts|>`, e.g. a style voice): `<|start_acoustic_token|>`, a
  pitch value, a speed value, `<|end_acoustic_token|>`, then the global block below (39 ids before speech);
- otherwise (speaker-prefix prompt, ending in `<|start_global_token|>`): `<|start_global_token|>` (unless the
  prompt already ends in it), 32 global ids, `<|end_global_token|>`, `<|start_semantic_token|>` (34 ids), N
  semantic ids, `<|im_end|>`.
N = round(tokens_per_char x text tokens between `<|start_content|>` and `<|end_content|>`) (one token per
byte on the demo tokenizer, so about one per character), capped so the whole stream fits `max_tokens`.

Timing: id i of the stream is due at `prefill_s + prefill_per_token_s x prompt ids + i / tokens_per_s` after
`stream()`. A continuation prompt (it already holds `<|start_semantic_token|>` and semantic ids, e.g. a stitched
request) is continued as the model would: no second marker, and its own semantic ids count as spoken. The engine
wakes at most every `tick_s` and yields every id that is due, like vLLM handing out one step's worth of
DELTA output (or, with `stream_interval` N, at least N ids after the first, as vLLM's engine arg of that name); when the event loop runs late it catches up in one delta instead of slowing down, because a
real engine keeps generating on its own device whatever the server's loop is doing. How late it ran is
recorded (`lag`), so a starved event loop shows up in the results instead of hiding in the schedule.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.llm import SamplingConfig
from core.tokens import NUM_GLOBAL_TOKENS, TASK_TOKENS, Acoustic, Marker, TokenKind, VocabLayout

START_CONTENT = "<|start_content|>"
END_CONTENT = "<|end_content|>"


def acoustic_ids(layout: VocabLayout, which: Acoustic) -> list[int]:
    """Ids of one acoustic value family (pitch_value_0.., speed_value_0..), indexed by value."""
    found = {
        int(layout.values[i]): int(i)
        for i in np.flatnonzero((layout.kinds == TokenKind.ACOUSTIC) & (layout.acoustic == int(which)))
    }
    if not found:
        raise ValueError(f"the vocabulary has no {which.name.lower()} value tokens")
    return [found[v] for v in sorted(found)]


@dataclass(frozen=True)
class PaceConfig:
    """The engine's schedule. `prefill_s` stands for queueing + prompt prefill before the first id."""

    tokens_per_s: float = 100.0
    tokens_per_char: float = 3.5
    prefill_s: float = 0.0
    tick_s: float = 0.02
    seed: int = 0
    prefill_per_token_s: float = (
        0.0  # prompt-length-dependent prefill (a stitched prompt's extra ids cost this each)
    )
    stream_interval: int = (
        1  # ids per delta after the first, as vLLM's stream_interval (the last delta may be short)
    )

    def __post_init__(self) -> None:
        if self.tokens_per_s <= 0 or self.tokens_per_char <= 0:
            raise ValueError("tokens_per_s and tokens_per_char must be > 0")
        if self.prefill_s < 0 or self.tick_s < 0 or self.prefill_per_token_s < 0:
            raise ValueError("prefill_s, prefill_per_token_s and tick_s must be >= 0")
        if self.stream_interval < 1:
            raise ValueError("stream_interval must be >= 1")

    def prefill_for(self, prompt_len: int = 0) -> float:
        return self.prefill_s + self.prefill_per_token_s * prompt_len

    def due_time(self, index: int, prompt_len: int = 0) -> float:
        """Seconds after `stream()` at which id `index` (0-based) of a stream with this prompt length is due."""
        return self.prefill_for(prompt_len) + index / self.tokens_per_s


@dataclass
class PacedRequestStats:
    """One stream as the engine saw it. Times are seconds after `stream()` was called."""

    request_id: str
    mode: str
    planned_ids: int
    semantic_tokens: int
    first_semantic_due_s: float
    first_semantic_at_s: float | None = None
    emitted_ids: int = 0
    deltas: int = 0
    max_lag_s: float = 0.0  # latest delta vs the due time of its last id
    lag_sum_s: float = 0.0
    finished: bool = False
    aborted: bool = False


@dataclass
class _Plan:
    ids: list[int]
    mode: str
    first_semantic_index: int
    semantic_tokens: int


@dataclass
class _Active:
    stats: PacedRequestStats
    aborted: bool = False


class PacedEngine:
    """`LLMEngine` that emits a valid token stream on a fixed schedule (see the module doc)."""

    name = "paced"

    def __init__(
        self,
        layout: VocabLayout,
        content_ids: tuple[int, int],
        config: PaceConfig | None = None,
        history: int = 4096,
    ) -> None:
        self.layout = layout
        self.config = config or PaceConfig()
        self._start_content, self._end_content = content_ids
        self._controllable_task = layout.id_of(TASK_TOKENS["controllable_tts"])
        self._pitch_ids = acoustic_ids(layout, Acoustic.PITCH)
        self._speed_ids = acoustic_ids(layout, Acoustic.SPEED)
        self._active: dict[str, _Active] = {}
        self._history: deque[PacedRequestStats] = deque(maxlen=history)
        self._closed = False

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, layout: VocabLayout, config: PaceConfig | None = None
    ) -> PacedEngine:
        ids = tokenizer.convert_tokens_to_ids([START_CONTENT, END_CONTENT])
        if any(i is None or i < 0 for i in ids):
            raise ValueError(f"tokenizer lacks {START_CONTENT} / {END_CONTENT}")
        return cls(layout, (int(ids[0]), int(ids[1])), config)

    # ------------------------------------------------------------------ planning
    def text_tokens(self, prompt_ids: Sequence[int]) -> int:
        """Number of prompt ids between the content markers (0 when they are missing)."""
        ids = list(prompt_ids)
        try:
            start = ids.index(self._start_content)
            end = ids.index(self._end_content, start + 1)
        except ValueError:
            return 0
        return end - start - 1

    def plan(self, prompt_ids: Sequence[int], sampling: SamplingConfig, request_id: str = "") -> _Plan:
        """The whole id stream for one request (deterministic for a request id and seed)."""
        lay = self.layout
        seed = self.config.seed if sampling.seed is None else sampling.seed
        rng = np.random.default_rng([seed, zlib.crc32(request_id.encode())])
        end_global = lay.marker_id(Marker.END_GLOBAL)
        start_semantic = lay.marker_id(Marker.START_SEMANTIC)
        prefix = 0  # a continuation prompt's semantic ids (they speak the first part of the content)
        if end_global in prompt_ids:
            mode, head = "clone", [start_semantic]
            if (
                start_semantic in prompt_ids
            ):  # the prompt already opens the semantic block (and may continue it)
                head, prefix = [], len(prompt_ids) - 1 - list(prompt_ids).index(start_semantic)
        else:
            mode = "controllable" if self._controllable_task in prompt_ids else "speaker"
            head = self._acoustic_head(rng) if mode == "controllable" else []
            if head or not prompt_ids or prompt_ids[-1] != lay.marker_id(Marker.START_GLOBAL):
                head.append(lay.marker_id(Marker.START_GLOBAL))
            head.extend(lay.global_id(int(v)) for v in rng.integers(0, 4096, NUM_GLOBAL_TOKENS))
            head.extend([end_global, start_semantic])
        wanted = max(1, round(self.config.tokens_per_char * self.text_tokens(prompt_ids)) - prefix)
        room = sampling.max_tokens - len(head) - 1  # the stop id counts against max_tokens too
        count = max(0, min(wanted, room))
        semantic = [lay.semantic_id(int(v)) for v in rng.integers(0, 8192, count)]
        ids = [*head, *semantic]
        if len(ids) < sampling.max_tokens:
            ids.append(lay.im_end_id)
        ids = ids[: sampling.max_tokens]
        return _Plan(ids=ids, mode=mode, first_semantic_index=len(head), semantic_tokens=count)

    def _acoustic_head(self, rng: np.random.Generator) -> list[int]:
        """What a controllable generation starts with: the pitch and speed values the model picks."""
        lay = self.layout
        return [
            lay.marker_id(Marker.START_ACOUSTIC),
            self._pitch_ids[int(rng.integers(len(self._pitch_ids)))],
            self._speed_ids[int(rng.integers(len(self._speed_ids)))],
            lay.marker_id(Marker.END_ACOUSTIC),
        ]

    # ------------------------------------------------------------------ LLMEngine
    async def stream(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[list[int]]:
        if self._closed:
            raise RuntimeError("engine is shut down")
        if request_id in self._active:
            raise ValueError(f"request id {request_id!r} is already generating")
        plan = self.plan(prompt_token_ids, sampling, request_id)
        cfg = self.config
        stats = PacedRequestStats(
            request_id=request_id,
            mode=plan.mode,
            planned_ids=len(plan.ids),
            semantic_tokens=plan.semantic_tokens,
            first_semantic_due_s=cfg.due_time(plan.first_semantic_index, len(prompt_token_ids)),
        )
        entry = _Active(stats)
        self._active[request_id] = entry
        clock = time.perf_counter
        started = clock()
        prompt_len = len(prompt_token_ids)
        prefill = cfg.prefill_for(prompt_len)
        ids, total, rate, interval = plan.ids, len(plan.ids), cfg.tokens_per_s, cfg.stream_interval
        sent = 0
        try:
            # Per delta: the stand-in's own bookkeeping is in the host-path bench's figure, so it stays lean.
            while sent < total and not entry.aborted:
                elapsed = clock() - started
                due = 0 if elapsed < prefill else math.floor((elapsed - prefill) * rate) + 1
                if due > total:
                    due = total
                # vLLM's stream_interval: the first id at once, then whole groups of ids (the end at once).
                wanted = 1 if sent == 0 else min(interval, total - sent)
                if due - sent >= wanted:
                    lag = max(0.0, elapsed - cfg.due_time(due - 1, prompt_len))
                    stats.max_lag_s = max(stats.max_lag_s, lag)
                    stats.lag_sum_s += lag
                    stats.deltas += 1
                    if stats.first_semantic_at_s is None and due > plan.first_semantic_index:
                        stats.first_semantic_at_s = elapsed
                    delta, sent = ids[sent:due], due
                    stats.emitted_ids = sent
                    yield delta
                    continue
                # A plain sleep per tick (no task per wait): cheap enough for hundreds of streams. abort() is
                # seen at the next wake-up, at most one token interval (or the prefill) later. A millisecond past
                # the due time: uvloop's timers round to milliseconds, and a wake-up just before the due time
                # would spin through zero-length sleeps (the stand-in's CPU, not the service's).
                await asyncio.sleep(
                    max(cfg.due_time(sent + wanted - 1, prompt_len) - (clock() - started) + 0.001, cfg.tick_s)
                )
            stats.finished = sent >= len(plan.ids)
        finally:
            stats.aborted = not stats.finished
            self._active.pop(request_id, None)
            self._history.append(stats)

    async def abort(self, request_id: str) -> None:
        entry = self._active.get(request_id)
        if entry is not None:
            entry.aborted = True

    def active_requests(self) -> set[str]:
        return set(self._active)

    def stepping_requests(self) -> int:
        return len(self._active)

    async def shutdown(self) -> None:
        self._closed = True
        for entry in list(self._active.values()):
            entry.aborted = True

    supports_sleep = False  # nothing on a GPU to free

    async def sleep(self, level: int = 1) -> None:
        raise NotImplementedError("the paced engine cannot sleep")

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return False

    # ------------------------------------------------------------------ read-out for the load generator
    def reconfigure(self, **changes: Any) -> PaceConfig:
        """Change the schedule for streams started from now on."""
        values = asdict(self.config)
        values.update({k: v for k, v in changes.items() if v is not None})
        self.config = PaceConfig(**values)
        return self.config

    def drain_stats(self) -> list[PacedRequestStats]:
        """Finished streams since the last call (oldest first)."""
        out = list(self._history)
        self._history.clear()
        return out
