"""CUDA graphs for the codec calls: one per (kind, length bucket, batch bucket), all in one memory pool.

Why: an eager BiCodec call launches ~480 kernels and an AP-BWE window ~900, each from Python under one GIL
(docs/reference/gpu-serving.md#eager-launch-cost); a replayed graph launches them in one go. A graph fixes its shapes,
so the scheduler pads rows to a length bucket and the row count to a batch bucket (services/device/scheduler.py); any
other shape (a window longer than every bucket, a stream's true end, a row count outside the batch sizes) runs eager.

Precision: a graph also fixes its kernels, so the TF32 switches are set only while a graph is captured and restored at
once (core/numerics.py keeps them off process-wide); nothing is flipped while serving. Decode graphs default to TF32
(46 dB from fp32 on random weights at released size, 2.7x faster: docs/benchmarks.md, "GPU acceptance"). AP-BWE's
precision (TTS_CODEC_SR_PRECISION) defaults to fp16, which the model carries in its own tensors' dtype
(core/apbwe_precision): its graphs capture with the switches off, and the eager fallback computes the same kernels, so
streamed 48 kHz audio equals the offline upsample at that precision. `tf32` AP-BWE graphs capture with the switches on;
its eager fallback runs under the process switches (fp32), so there a shape outside the buckets is fp32 whatever the
graphs use.

Capture happens once, before serving (`CodecGraphs.capture_all`), within a wall-clock budget
(TTS_CODEC_GRAPH_BUDGET_S): a container that takes minutes to become ready delays every scale-up. The order is
expected use (`GraphPlan.ordered`): fewest rows first, decode before AP-BWE, shortest first. Calls hold ~1.5-2.5 rows
in the simulator and 2-7 on an H100 up to 64 streams (docs/benchmarks.md), and a graph saves about the same launch
overhead per call whatever its size, so the small batch buckets save the most. A large call left eager still costs:
the eager path is fp32, and a burst's 25-26 rows of 80 tokens padded to 32 took 140 ms eager on an H100, where the
80 x 24 TF32 graph takes 41 ms; so the scheduler never forms a bucketed call whose padded shape is outside the plan
(`SchedulerPolicy.fits`). Capture stops before the graph that would likely overrun the budget
(`predict_capture_s`: the last capture of its kind scaled by the work ratio); every shape not captured runs eager. A
graph whose capture raises is skipped (logged) while the others serve; two failures in a row stop the capture (the
device is likely in a bad state; the rest run eager).

Memory: the graphs share one pool and are replayed one at a time from the device thread; a graph's static output may
share memory with another graph's intermediates, so the runner copies a call's output out before the next replay (it
does: one copy out and one sync per call). Captured smallest first, the pool grows in steps: a larger capture cannot
reuse smaller blocks freed before it, so the pool may reserve more than the largest capture alone (which largest-first
order sized once): at worst the sum of the captures' own peaks. Each capture's growth is `CapturedGraph.pool_bytes`;
their sum is logged and reported in /v1/tts/health (`reserved_mib`). A budget that stops early never grows the pool
to the largest shapes at all.

The plan (which shapes get a graph, which call uses which, the capture order and when the budget stops it) is pure
and runs on a CPU (tests, with a fake capture and clock); capture needs CUDA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor

from core.apbwe_precision import SR_PRECISIONS, SRPrecision
from services.device.calls import Call, SchedulerPolicy
from services.device.windows import WindowKind
from shared import metrics

logger = logging.getLogger("services.device.graphs")

Precision = Literal["fp32", "tf32"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "tf32")
KIND_ORDER: dict[WindowKind, int] = {
    "decode": 0,
    "sr": 1,
}  # every stream decodes; only 48 kHz ones super-resolve
MAX_CONSECUTIVE_FAILURES = 2

# Pre-bound children: `get` runs once per device call.
_CALLS_GRAPH = metrics.CODEC_CALLS.labels(path="graph")
_CALLS_UNCAPTURED = metrics.CODEC_CALLS.labels(path="uncaptured")
_CALLS_EAGER = metrics.CODEC_CALLS.labels(path="eager")


@dataclass(frozen=True, order=True)
class GraphKey:
    kind: WindowKind
    length: int  # bucket: tokens (decode) or 16 kHz samples (sr)
    rows: int  # batch bucket

    @property
    def work(self) -> int:
        return self.length * self.rows

    def __str__(self) -> str:
        return f"{self.kind} {self.length}x{self.rows}"


@dataclass(frozen=True)
class GraphPlan:
    """The shapes that get a graph: every (length bucket, batch size) of a kind whose work fits one call. A decode
    graph's length is its wave spans' bucket; its prenet reads `margin` more columns on each side."""

    keys: frozenset[GraphKey]
    margin: int = 0  # decode: SchedulerPolicy.prenet_margin

    @classmethod
    def from_policy(
        cls,
        policy: SchedulerPolicy,
        kinds: Sequence[WindowKind] = ("decode", "sr"),
        max_rows: int | None = None,
    ) -> GraphPlan:
        keys = {
            GraphKey(kind, length, rows)
            for kind in kinds
            for length in policy.buckets(kind)
            for rows in policy.batch_sizes
            if length * rows <= policy.max_work(kind) and (max_rows is None or rows <= max_rows)
        }
        return cls(frozenset(keys), policy.prenet_margin)

    def key_for(self, call: Call) -> GraphKey | None:
        """The graph a call replays, or None: the eager fallback (exact-length call, a stream's true end, a decode
        call placed with another margin, or a shape not in the plan)."""
        if call.length is None or call.true_end or (call.kind == "decode" and call.margin != self.margin):
            return None
        key = GraphKey(call.kind, call.length, call.rows_padded)
        return key if key in self.keys else None

    def ordered(self) -> list[GraphKey]:
        """Capture order, by expected use: fewest rows first, then decode before AP-BWE, then shortest first (the
        module docstring says why)."""
        return sorted(self.keys, key=lambda k: (k.rows, KIND_ORDER[k.kind], k.length))


def predict_capture_s(key: GraphKey, done: Sequence[tuple[GraphKey, float]]) -> float | None:
    """The likely seconds to capture `key`, from `done` (captured keys and their seconds, in order): the latest capture
    of its kind, scaled up by the work ratio when `key` is larger, never down. A capture is a fixed cost (launching
    and recording the kernels, instantiating) plus warm-up runs that grow with the work, so its time grows at most in
    proportion to the work: an upper bound without noise. None: no capture of this kind yet (nothing to go by)."""
    for prev, seconds in reversed(done):
        if prev.kind == key.kind:
            return seconds * max(1.0, key.work / prev.work)
    return None


@dataclass(frozen=True)
class CaptureReport:
    """What one `capture_within` did. `left`: planned shapes not tried (the budget, or repeated failures stopped the
    capture); they and `failed` run eager."""

    planned: int
    captured: tuple[GraphKey, ...]
    failed: tuple[GraphKey, ...]
    left: tuple[GraphKey, ...]
    seconds: float
    budget_s: float  # 0: no limit
    stopped: Literal["budget", "failures"] | None

    @property
    def first_eager(self) -> GraphKey | None:
        """The first planned shape, in capture order, that runs eager (None: every planned shape has a graph)."""
        eager = self.failed + self.left  # failed shapes were tried, so they come first in the order
        return eager[0] if eager else None


def capture_within(
    order: Sequence[GraphKey],
    capture: Callable[[GraphKey], object],
    *,
    budget_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
    max_failures: int = MAX_CONSECUTIVE_FAILURES,
) -> CaptureReport:
    """Capture `order` front to back with `capture(key)` until the next capture would likely end past `budget_s`
    seconds from the start (0: no limit). The first capture of a kind has no estimate: it runs while any budget is
    left. A capture that raises is logged and skipped; `max_failures` in a row stop the capture."""
    if budget_s < 0:
        raise ValueError(f"budget_s must be >= 0 (0: no limit), got {budget_s}")
    started = clock()
    done: list[tuple[GraphKey, float]] = []
    failed: list[GraphKey] = []
    stopped: Literal["budget", "failures"] | None = None
    consecutive = 0
    tried = 0
    for key in order:
        if budget_s > 0:
            elapsed = clock() - started
            if elapsed >= budget_s or elapsed + (predict_capture_s(key, done) or 0.0) > budget_s:
                stopped = "budget"
                break
        tried += 1
        began = clock()
        try:
            capture(key)
        except Exception:  # noqa: BLE001 - one shape left eager serves the same audio; the others keep their graphs
            logger.exception("codec graph capture failed; this shape runs eager", extra={"shape": str(key)})
            failed.append(key)
            consecutive += 1
            if consecutive >= max_failures:
                stopped = "failures"
                break
            continue
        consecutive = 0
        done.append((key, clock() - began))
    return CaptureReport(
        planned=len(order),
        captured=tuple(k for k, _ in done),
        failed=tuple(failed),
        left=tuple(order[tried:]),
        seconds=clock() - started,
        budget_s=budget_s,
        stopped=stopped,
    )


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
    precision: Precision | SRPrecision
    graph: Any  # torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]  # static device buffers the graph reads
    output: Tensor  # static device buffer the graph writes
    capture_s: float
    pool_bytes: int  # growth of the device memory reserved by this capture (the shared pool)
    allocated_bytes: int  # growth of the memory held after it (static buffers and the output)
    # One replay timed alone by CUDA events right after the capture (`CodecGraphs(time_replays=True)`): the call's own
    # device seconds, which events in service cannot give beside an engine's process (they count its slices too).
    replay_s: float | None = None

    def replay(self) -> Tensor:
        self.graph.replay()
        return self.output


def decode_inputs(
    decoder: Any, key: GraphKey, device: torch.device, margin: int = 0
) -> tuple[Tensor, Tensor]:
    """Static inputs of a decode graph: packed rows [rows, length + 2 * margin + 3] int64 (`run_decode`'s layout;
    here every row a whole window from column `margin`) and d-vectors [rows, D]."""
    packed = torch.zeros(key.rows, key.length + 2 * margin + 3, dtype=torch.long, device=device)
    packed[:, -3:] = torch.tensor([margin, key.length, key.length])
    return packed, torch.zeros(key.rows, decoder.d_vector_dim, device=device)


def run_decode(decoder: Any, packed: Tensor, d: Tensor, margin: int = 0) -> Tensor:
    """The decode call on packed rows (graph body and eager path alike): each row's ids, then its window's start
    column, its length and its wave span's length (the span starts at column `margin`):
    `BiCodecDecoder.decode_rows`."""
    return cast(
        Tensor,
        decoder.decode_rows(packed[:, :-3], packed[:, -3], packed[:, -2], packed[:, -1], d, margin=margin),
    )


def graph_body(
    decoder: Any, sr: Any | None, key: GraphKey, device: torch.device, margin: int = 0
) -> tuple[tuple[Tensor, ...], Callable[[], Tensor]]:
    """A graph's static inputs on `device` and the body captured over them: the call the eager path makes
    (`run_decode`, `SuperResolution.enhance_batch`). tests/unit/services/device/test_graph_bodies.py checks on a CPU that a CUDA
    capture would accept each body (no host sync, no data-dependent shape, no copy from host memory)."""
    if key.kind == "decode":
        packed, d = decode_inputs(decoder, key, device, margin)
        return (packed, d), lambda: run_decode(decoder, packed, d, margin)
    if sr is None:
        raise ValueError(f"{key}: an AP-BWE graph without a super-resolution model")
    x = torch.zeros(key.rows, key.length, device=device)
    return (x,), lambda: sr.enhance_batch(x)


class CodecGraphs:
    """The captured graphs of one decoder (and optionally one SR model) on one CUDA device."""

    def __init__(
        self,
        decoder: Any,
        sr: Any | None,
        plan: GraphPlan,
        *,
        decode_precision: Precision = "tf32",
        sr_precision: SRPrecision = "fp32",
        warmup: int = 2,
        time_replays: bool = False,
    ) -> None:
        device = torch.device(decoder.device)
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the decoder is on {device}")
        if decode_precision not in PRECISIONS:
            raise ValueError(f"decode precision must be one of {PRECISIONS}, got {decode_precision!r}")
        if sr_precision not in SR_PRECISIONS:
            raise ValueError(f"AP-BWE precision must be one of {SR_PRECISIONS}, got {sr_precision!r}")
        self.decoder, self.sr, self.plan, self.device = decoder, sr, plan, device
        self.precision: dict[WindowKind, Precision | SRPrecision] = {
            "decode": decode_precision,
            "sr": sr_precision,
        }
        self.warmup = warmup
        self.time_replays = time_replays
        self.pool: Any = None  # the shared memory pool, made at the first capture (it needs CUDA)
        self.graphs: dict[GraphKey, CapturedGraph] = {}
        self.report: CaptureReport | None = None

    def get(self, call: Call) -> CapturedGraph | None:
        """The graph a call replays, or None (eager), counted by path: a planned shape without a graph (left by the
        budget or a failed capture) is `uncaptured`; a shape outside the plan is `eager`."""
        key = self.plan.key_for(call)
        graph = None if key is None else self.graphs.get(key)
        (_CALLS_GRAPH if graph is not None else _CALLS_EAGER if key is None else _CALLS_UNCAPTURED).inc()
        return graph

    def capture_all(
        self,
        progress: Callable[[CapturedGraph], None] | None = None,
        *,
        budget_s: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
        capture: Callable[[GraphKey], CapturedGraph] | None = None,
    ) -> list[CapturedGraph]:
        """Capture the planned shapes in the plan's order (expected use) within `budget_s` wall seconds (0: no limit),
        before serving (the TF32 switches move while a graph is captured); `self.report` says what was done.
        `capture` replaces the CUDA capture (tests: a fake one with a fake `clock`)."""
        capture_one = capture or self.capture
        order = [
            k
            for k in self.plan.ordered()
            if k not in self.graphs and (k.kind == "decode" or self.sr is not None)
        ]

        def run(key: GraphKey) -> None:
            self.graphs[key] = graph = capture_one(key)
            if progress is not None:
                progress(graph)

        self.report = capture_within(order, run, budget_s=budget_s, clock=clock)
        return [self.graphs[k] for k in self.plan.ordered() if k in self.graphs]

    def status(self) -> dict[str, Any]:
        """What start-up captured (for the log line and /v1/tts/health)."""
        report = self.report
        first = report.first_eager if report is not None else None
        return {
            "planned": report.planned if report is not None else len(self.plan.keys),
            "captured": len(self.graphs),
            "failed": len(report.failed) if report is not None else 0,
            "seconds": round(report.seconds, 2) if report is not None else 0.0,
            "budget_s": report.budget_s if report is not None else None,
            "stopped": report.stopped if report is not None else None,
            "first_eager": None
            if first is None
            else {"kind": first.kind, "length": first.length, "rows": first.rows},
            "precision": dict(self.precision),  # the captured graphs' (eager: fp32, or AP-BWE's fp16)
            # Growth of the device memory reserved while capturing: the graph pool and the warm-up runs' cache.
            "reserved_mib": round(sum(g.pool_bytes for g in self.graphs.values()) / 2**20, 1),
        }

    @torch.inference_mode()
    def capture(self, key: GraphKey) -> CapturedGraph:
        inputs, body = graph_body(self.decoder, self.sr, key, self.device, self.plan.margin)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        precision = self.precision[key.kind]
        torch.cuda.synchronize(self.device)
        reserved, allocated = (
            torch.cuda.memory_reserved(self.device),
            torch.cuda.memory_allocated(self.device),
        )
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
        captured = CapturedGraph(
            key,
            precision,
            graph,
            inputs,
            output,
            time.perf_counter() - started,
            torch.cuda.memory_reserved(self.device) - reserved,
            torch.cuda.memory_allocated(self.device) - allocated,
        )
        if self.time_replays:
            try:
                captured.replay_s = self._time_replay(graph)
            except Exception:  # noqa: BLE001 - the graph serves; its calls fall back to CUDA events for own seconds
                logger.exception(
                    "timing a replay failed; this shape's own seconds come from events",
                    extra={"shape": str(key)},
                )
        return captured

    def _time_replay(self, graph: Any) -> float:
        """One replay's device seconds by CUDA events, before serving (nothing else of this process on the GPU), after
        an untimed one (a graph's first replay also uploads it)."""
        stream = torch.cuda.current_stream(self.device)
        graph.replay()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        graph.replay()
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end)) / 1000.0

    def table(self) -> list[dict[str, Any]]:
        """One row per captured graph: shape, precision, capture seconds, memory (for the GPU kit's report)."""
        return [
            {
                "kind": g.key.kind,
                "length": g.key.length,
                "rows": g.key.rows,
                "precision": g.precision,
                "capture_s": round(g.capture_s, 4),
                "pool_mib": round(g.pool_bytes / 2**20, 2),
                "allocated_mib": round(g.allocated_bytes / 2**20, 2),
                "capture_replay_ms": None if g.replay_s is None else round(g.replay_s * 1000, 3),
            }
            for g in sorted(self.graphs.values(), key=lambda g: g.key)
        ]


def capture_codec_graphs(
    bicodec: Any,
    sr: Any | None,
    policy: SchedulerPolicy,
    *,
    sr_precision: SRPrecision,
    budget_s: float,
    time_replays: bool = False,
) -> CodecGraphs | None:
    """The codec's call shapes captured in one memory pool, before any other device work (capture moves the TF32
    switches for its duration), the most used first, within `budget_s` (TTS_CODEC_GRAPH_BUDGET_S). Shapes not
    captured (over the budget, or a capture that failed) serve eager: slower, same audio; None when capture failed
    as a whole. `time_replays`: time a replay of each graph alone at capture (a call's own seconds)."""
    kinds: tuple[WindowKind, ...] = ("decode", "sr") if sr is not None else ("decode",)
    try:
        graphs = CodecGraphs(
            bicodec,
            sr,
            GraphPlan.from_policy(policy, kinds),
            sr_precision=sr_precision,
            time_replays=time_replays,
        )
        graphs.capture_all(budget_s=budget_s)
    except Exception:  # noqa: BLE001 - graphs are an optimisation; the eager path serves the same audio
        logger.exception("CUDA graph capture failed; the codec runs eager")
        return None
    status = graphs.status()
    for state in ("planned", "captured", "failed"):
        metrics.CODEC_GRAPHS.labels(state=state).set(status[state])
    first = status["first_eager"]
    left = "none" if first is None else f"{first['kind']} {first['length']} x {first['rows']} rows"
    budget = f"budget {status['budget_s']:g} s" if status["budget_s"] else "no budget"
    (logger.warning if status["failed"] else logger.info)(
        f"codec graphs: captured {status['captured']} of {status['planned']} in {status['seconds']} s ({budget}); "
        f"first shape left eager: {left}; decode {status['precision']['decode']}, AP-BWE {status['precision']['sr']}",
        extra=status,
    )
    return graphs
