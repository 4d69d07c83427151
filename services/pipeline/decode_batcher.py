"""Batch BiCodec decodes across concurrent streams, and cap how many model calls run at once.

Every stream's `StreamingDecoder` calls `decode_with_speaker(semantic [1, T], d_vector [1, D])` from a worker
thread. Run as they come, N streams make N small model calls at once that compete for the same cores (or
launch N small GPU kernels each). `BatchingDecoder` wraps the model and lets at most `runners` calls run at
a time; a call that arrives while they are busy waits, and the next batch takes every waiting call of one
window length T (up to `max_batch`) and decodes them as one [B, T] batch with one d-vector per row.

The shortest waiting window goes first: short windows are the first chunks of new streams (their listener
hears nothing yet), long ones belong to streams with seconds of audio already buffered. There is no timer:
a lone call runs at once and batches form only while calls queue behind busy runners, so an idle server
adds no latency and a loaded one makes fewer, larger calls.

Output equals the unbatched decode: rows of a convolutional batch do not mix, and only equal lengths are
batched (no padding). Everything else (`device`, `hop_length`, `speaker_vector`, ...) is forwarded to the
wrapped decoder, so the wrapper can stand wherever a `BiCodecDecoder` is used.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class _Call:
    semantic: torch.Tensor  # [1, T]
    d_vector: torch.Tensor  # [1, D]
    result: torch.Tensor | None = None
    error: BaseException | None = None
    done: bool = False
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def length(self) -> int:
        return int(self.semantic.shape[-1])


@dataclass
class BatchStats:
    calls: int = 0
    batches: int = 0
    batched_rows: int = 0  # rows decoded in batches of two or more
    largest_batch: int = 0
    model_seconds: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    # Queueing: from a call's arrival to the start of the model call that serves it (what a stream's chunk waits
    # behind other streams' decodes); first chunks are the shortest windows, so they are reported apart.
    wait_seconds: float = 0.0
    max_wait_seconds: float = 0.0
    short_window_wait_seconds: float = 0.0
    short_window_calls: int = 0
    max_short_window_wait_seconds: float = 0.0

    @property
    def mean_batch(self) -> float:
        return self.calls / self.batches if self.batches else 0.0

    @property
    def mean_wait_seconds(self) -> float:
        return self.wait_seconds / self.calls if self.calls else 0.0


class BatchingDecoder:
    """A `BiCodecDecoder` stand-in whose `decode_with_speaker` batches concurrent single-row calls."""

    def __init__(self, decoder: Any, max_batch: int = 16, runners: int = 1, short_window: int = 64) -> None:
        """`runners`: model calls allowed at once. 1 on a GPU (kernels serialise anyway); on a CPU with one
        torch thread per call, about the number of cores, so batching never leaves a core idle."""
        if max_batch < 1 or runners < 1:
            raise ValueError(f"max_batch and runners must be >= 1, got {max_batch} and {runners}")
        self.decoder = decoder
        self.max_batch = max_batch
        self.runners = runners
        self.stats = BatchStats()
        self.short_window = short_window  # windows up to this many tokens count as first chunks in the stats
        self._cv = threading.Condition()
        self._waiting: deque[_Call] = deque()
        self._running = 0

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class does not define: device, hop_length, speaker_vector, ...
        return getattr(self.__dict__["decoder"], name)

    def decode_with_speaker(self, semantic: torch.Tensor, d_vector: torch.Tensor) -> torch.Tensor:
        """Same contract as `BiCodecDecoder.decode_with_speaker`; single-row calls are batched."""
        semantic = torch.as_tensor(semantic)
        d = torch.as_tensor(d_vector)
        if d.dim() == 1:
            d = d.unsqueeze(0)
        if semantic.dim() != 2 or semantic.shape[0] != 1 or d.shape[0] != 1:
            return self.decoder.decode_with_speaker(semantic, d)  # already a batch: nothing to gain
        call = _Call(semantic, d)
        with self._cv:
            self._waiting.append(call)
        while True:
            with self._cv:
                while not call.done and (self._running >= self.runners or not self._waiting):
                    self._cv.wait()
                if call.done:
                    break
                batch = self._take_batch()
                self._running += 1
            try:
                self._run(batch)
            finally:
                with self._cv:
                    self._running -= 1
                    self._cv.notify_all()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _take_batch(self) -> list[_Call]:
        """Waiting calls of the shortest waiting length, oldest first, up to max_batch (lock held)."""
        length = min(call.length for call in self._waiting)
        batch: list[_Call] = []
        rest: deque[_Call] = deque()
        while self._waiting:
            call = self._waiting.popleft()
            if call.length == length and len(batch) < self.max_batch:
                batch.append(call)
            else:
                rest.append(call)
        self._waiting = rest
        return batch

    def _run(self, batch: list[_Call]) -> None:
        started = time.perf_counter()
        self._account_waits(batch, started)
        try:
            if len(batch) == 1:
                out = self.decoder.decode_with_speaker(batch[0].semantic, batch[0].d_vector)
                rows = [out]
            else:
                semantic = torch.cat([c.semantic for c in batch], dim=0)
                d = torch.cat([c.d_vector.to(semantic.device) for c in batch], dim=0)
                out = self.decoder.decode_with_speaker(semantic, d)
                rows = [out[i : i + 1] for i in range(len(batch))]
            for call, row in zip(batch, rows, strict=True):
                call.result = row
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
            for call in batch:
                call.error = exc
        finally:
            self._account(len(batch), time.perf_counter() - started)
            for call in batch:
                call.done = True

    def _account_waits(self, batch: list[_Call], started: float) -> None:
        with self._cv:
            s = self.stats
            for call in batch:
                wait = started - call.queued_at
                s.wait_seconds += wait
                s.max_wait_seconds = max(s.max_wait_seconds, wait)
                if call.length <= self.short_window:
                    s.short_window_calls += 1
                    s.short_window_wait_seconds += wait
                    s.max_short_window_wait_seconds = max(s.max_short_window_wait_seconds, wait)

    def _account(self, size: int, seconds: float) -> None:
        s = self.stats
        s.calls += size
        s.batches += 1
        s.batched_rows += size if size > 1 else 0
        s.largest_batch = max(s.largest_batch, size)
        s.model_seconds += seconds
        s.batch_sizes[size] = s.batch_sizes.get(size, 0) + 1
