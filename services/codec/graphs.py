"""CUDA graphs for the codec calls: one per (kind, length bucket, batch bucket), all in one memory pool.

Why: an eager BiCodec call launches ~480 kernels and an AP-BWE window ~900, each from Python under one GIL
(specs/gpu_serving.md §2); a replayed graph launches them in one go. A graph fixes its shapes, so the scheduler pads
rows to a length bucket and the row count to a batch bucket (services/codec/scheduler.py); any other shape (a window
longer than every bucket, a stream's true end, a row count outside the batch sizes) runs eager.

Precision: a graph also fixes its kernels, so the TF32 switches are set only while a graph is captured and restored
at once (core/numerics.py keeps them off process-wide); nothing is flipped while serving. Decode graphs default to
TF32 (46 dB from fp32 on random weights at released size, 2.7x faster: specs/gpu_serving.md §1); SR graphs stay fp32
(AP-BWE's phase head turns 1e-7 differences into audible ones: core/exact_conv). The eager fallback runs under the
process switches (fp32), so a shape outside the buckets is fp32 whatever the graphs use.

Capture happens once, before serving (`CodecGraphs.capture_all`). The graphs share one pool and are replayed one at
a time from the device thread; a graph's static output may share memory with another graph's intermediates, so the
runner copies a call's output out before the next replay (it does: one copy out and one sync per call).

The plan (which shapes get a graph, which call uses which) is pure and runs on a CPU (tests); capture needs CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from services.codec.scheduler import Call, SchedulerPolicy
from services.codec.windows import WindowKind

Precision = Literal["fp32", "tf32"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "tf32")


@dataclass(frozen=True, order=True)
class GraphKey:
    kind: WindowKind
    length: int  # bucket: tokens (decode) or 16 kHz samples (sr)
    rows: int  # batch bucket


@dataclass(frozen=True)
class GraphPlan:
    """The shapes that get a graph: every (length bucket, batch size) of a kind whose work fits one call."""

    keys: frozenset[GraphKey]

    @classmethod
    def from_policy(cls, policy: SchedulerPolicy, kinds: Sequence[WindowKind] = ("decode", "sr"),
                    max_rows: int | None = None) -> GraphPlan:
        keys = {GraphKey(kind, length, rows)
                for kind in kinds for length in policy.buckets(kind) for rows in policy.batch_sizes
                if length * rows <= policy.max_work(kind) and (max_rows is None or rows <= max_rows)}
        return cls(frozenset(keys))

    def key_for(self, call: Call) -> GraphKey | None:
        """The graph a call replays, or None: the eager fallback (exact-length call, a stream's true end, or a shape
        not in the plan)."""
        if call.length is None or call.true_end:
            return None
        key = GraphKey(call.kind, call.length, call.rows_padded)
        return key if key in self.keys else None

    def ordered(self) -> list[GraphKey]:
        """Capture order: largest work first, so the shared pool is sized by the first capture and reused after."""
        return sorted(self.keys, key=lambda k: (-k.length * k.rows, k))


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Set the TF32 switches (cuDNN convolutions, cuBLAS matmuls) for the body only, then restore them."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass
class CapturedGraph:
    """One captured call: copy the packed rows into `inputs`, `replay()`, read `output`."""

    key: GraphKey
    precision: Precision
    graph: Any  # torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]  # static device buffers the graph reads
    output: Tensor  # static device buffer the graph writes
    capture_s: float
    pool_bytes: int  # growth of the device memory reserved by this capture (the shared pool)
    allocated_bytes: int  # growth of the memory held after it (static buffers and the output)

    def replay(self) -> Tensor:
        self.graph.replay()
        return self.output


def decode_inputs(decoder: Any, key: GraphKey, device: torch.device) -> tuple[Tensor, Tensor]:
    """Static inputs of a decode graph: packed ids + lengths [rows, length + 1] int64 (the last column holds each
    row's valid length) and d-vectors [rows, D]."""
    packed = torch.zeros(key.rows, key.length + 1, dtype=torch.long, device=device)
    packed[:, -1] = key.length
    return packed, torch.zeros(key.rows, decoder.d_vector_dim, device=device)


def run_decode(decoder: Any, packed: Tensor, d: Tensor) -> Tensor:
    """The decode call on packed rows (graph body and eager path alike)."""
    return decoder.decode_padded(packed[:, :-1], packed[:, -1], d)


class CodecGraphs:
    """The captured graphs of one decoder (and optionally one SR model) on one CUDA device."""

    def __init__(self, decoder: Any, sr: Any | None, plan: GraphPlan, *, decode_precision: Precision = "tf32",
                 sr_precision: Precision = "fp32", warmup: int = 2) -> None:
        device = torch.device(decoder.device)
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the decoder is on {device}")
        for p in (decode_precision, sr_precision):
            if p not in PRECISIONS:
                raise ValueError(f"precision must be one of {PRECISIONS}, got {p!r}")
        self.decoder, self.sr, self.plan, self.device = decoder, sr, plan, device
        self.precision: dict[WindowKind, Precision] = {"decode": decode_precision, "sr": sr_precision}
        self.warmup = warmup
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[GraphKey, CapturedGraph] = {}

    def get(self, call: Call) -> CapturedGraph | None:
        key = self.plan.key_for(call)
        return None if key is None else self.graphs.get(key)

    def capture_all(self, progress: Callable[[CapturedGraph], None] | None = None) -> list[CapturedGraph]:
        """Capture every planned shape (before serving: the TF32 switches move while a graph is captured)."""
        for key in self.plan.ordered():
            if key.kind == "sr" and self.sr is None:
                continue
            if key not in self.graphs:
                self.graphs[key] = self.capture(key)
                if progress is not None:
                    progress(self.graphs[key])
        return [self.graphs[k] for k in self.plan.ordered() if k in self.graphs]

    @torch.inference_mode()
    def capture(self, key: GraphKey) -> CapturedGraph:
        if key.kind == "decode":
            inputs: tuple[Tensor, ...] = decode_inputs(self.decoder, key, self.device)
            body: Callable[[], Tensor] = lambda: run_decode(self.decoder, *inputs)  # noqa: E731
        else:
            inputs = (torch.zeros(key.rows, key.length, device=self.device),)
            body = lambda: self.sr.enhance_batch(inputs[0])  # noqa: E731
        precision = self.precision[key.kind]
        torch.cuda.synchronize(self.device)
        reserved, allocated = torch.cuda.memory_reserved(self.device), torch.cuda.memory_allocated(self.device)
        started = time.perf_counter()
        with tf32(precision == "tf32"):
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the capture stream: cuDNN/cuFFT plans, cached kernels
                for _ in range(self.warmup):
                    body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                output = body()
        torch.cuda.synchronize(self.device)
        return CapturedGraph(key, precision, graph, inputs, output, time.perf_counter() - started,
                             torch.cuda.memory_reserved(self.device) - reserved,
                             torch.cuda.memory_allocated(self.device) - allocated)

    def table(self) -> list[dict[str, Any]]:
        """One row per captured graph: shape, precision, capture seconds, memory (for the GPU kit's report)."""
        return [{"kind": g.key.kind, "length": g.key.length, "rows": g.key.rows, "precision": g.precision,
                 "capture_s": round(g.capture_s, 4), "pool_mib": round(g.pool_bytes / 2**20, 2),
                 "allocated_mib": round(g.allocated_bytes / 2**20, 2)}
                for g in sorted(self.graphs.values(), key=lambda g: g.key)]
