"""Call shapes: how the codec scheduler shapes its device calls (`SchedulerPolicy`: length and batch buckets, call
bounds, padding, the decode rows' wave spans, the model calls' slack), one planned call (`Call`), and what runs it
(`DeviceRunner`).

Pure values: the scheduler plans `Call`s with them, the runners (services/device/runner.py, the cost-model stand-in)
run them, the graphs (services/device/graphs.py) are captured per their shapes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, get_args

import numpy as np

from services.device.windows import DecodeWindow, SRWindow, WindowKind

T = TypeVar("T")

# Model calls the scheduler runs beside the codec windows, on the same device thread: a voice's BiCodec speaker
# vector, a cloning reference's encode (wav2vec2 + BiCodec encoder), the CTC aligner's wav2vec2.
# "move": idle sleep taking the codec models off the device and back (services/deployment/idle_sleep.py).
ModelCallKind = Literal["speaker", "reference", "align", "move"]
MODEL_CALL_KINDS: tuple[ModelCallKind, ...] = ("speaker", "reference", "align", "move")

DEFAULT_DECODE_BUCKETS = (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256)
# Lengths every 8 tokens to 64, then every 16 to 128, then every 32: the streaming schedule's windows (16-56 tokens
# in a stream's first second, 73-248 after) land within ~12% of a bucket. With the batch buckets below, fine
# buckets cut the decode device time of 200 simulated streams by 19% against (16, 32, 48, 64, 96, 128, 192, 256) x
# powers of two (docs/benchmarks.md); every shape is a captured graph on CUDA (graphs.py: GraphPlan).
# 16 kHz input samples, context included: multiples of AP-BWE's 80-sample grid around the windows core.sr_planner
# makes with the pipeline's block sizes (services/pipeline/audio_output.py SR_MIN_BLOCK..SR_MAX_BLOCK, 1,600..8,000
# samples, plus 880 samples of context on each side; 880 fewer at a stream's start). 2,240: a stream's lead window
# (1,280 kept + 880 of guessed context after balanced's first chunk): in 3,520 its 39% padding kept lead windows
# from sharing calls, and 32 streams starting at once ran 32 one-row calls (bench.sim.load).
DEFAULT_SR_BUCKETS = (2_240, 3_520, 4_800, 6_400, 8_000, 9_760, 12_800)
DEFAULT_BATCH_SIZES = (
    1,
    2,
    3,
    4,
    6,
    8,
    12,
    16,
    24,
    32,
    48,
    64,
)  # calls hold ~2-3 rows: 3 -> 4 wasted a quarter
# The released BiCodec's wave-generator reach in tokens (core.bicodec.wave_reach_tokens; the runtime sets the loaded
# decoder's own): a decode window's wave generator runs on its kept tokens and this many more on each side, not on
# all of its context and look-ahead (the prenet, ~5% of the cost, still reads the whole window).
DEFAULT_DECODE_REACH = 11
# Prenet columns on each side of a call's wave spans: a window's context beyond its span must fit (24 tokens of
# context and look-ahead - 11 of reach = 13 at the service's schedule; a longer one widens the span instead).
DEFAULT_DECODE_MARGIN = 16


@dataclass(frozen=True)
class SchedulerPolicy:
    """How calls are shaped. Defaults suit a GPU; `for_cpu()` suits the CPU (no graphs, no batch padding)."""

    decode_buckets: tuple[int, ...] = DEFAULT_DECODE_BUCKETS
    sr_buckets: tuple[int, ...] = DEFAULT_SR_BUCKETS
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    # rows x bucket length of one BiCodec call. On a device shared with the engine a long call stalls every LLM step
    # behind it (8,192 tokens: ~150 ms on the H100 model): 2,048 is what bench.sim.load calibrated admission with, and
    # 4,096 or 8,192 let 4-5 of 248 admitted streams underrun at 0.01 ms/row (docs/benchmarks.md, "Many streams on a modelled device").
    max_call_decode_tokens: int = 2_048
    max_call_sr_samples: int = 262_144  # rows x bucket length of one AP-BWE call (16 kHz samples)
    max_pad_waste: float = 0.25  # a row joins a call only while the call's padding stays under this share
    pad_all_rows: bool = (
        True  # the bound holds for shorter rows too (False: only for rows that raise the bucket)
    )
    pad_batch: bool = True  # pad the row count to a batch bucket (captured graphs need fixed shapes)
    # Rows of one decode call at most (None: the largest batch size). The CPU decodes one window per call: BiCodec's
    # convolutions round a row differently beside other rows or at another length (~1e-6), AP-BWE's phase head turns
    # that into audible differences, and a seeded request's audio must not depend on which streams it met.
    max_decode_rows: int | None = None
    max_inflight: int = 1  # calls on the device at once (1 on a GPU: kernels serialise anyway)
    scan_limit: int = 256  # pending windows looked at per call, in deadline order
    # Decode rows: the wave generator runs on each window's kept tokens +- `decode_reach` (None: the whole window),
    # the prenet on the whole window within `decode_margin` columns on each side (DecodeWindow.wave_span). Buckets,
    # call bounds and padding then count wave-span tokens, the call's cost.
    decode_reach: int | None = DEFAULT_DECODE_REACH
    decode_margin: int = DEFAULT_DECODE_MARGIN
    # A model call (`CodecScheduler.run_model_call`) is due this long after its submission and waits in deadline order
    # with the windows: every window due before that goes first (a newcomer's first window is due at its arrival,
    # a playing stream's when its listener runs dry), and no stream of windows holds it back longer. A stream holding
    # more than this much audio can spare the tens of milliseconds a model call holds the device.
    model_call_slack_s: float = 0.25
    # A live call waits while even its most urgent window is due more than this many seconds from now (inf: never
    # waits; the scheduler is work-conserving). While an engine runs streams ahead of real time, their windows are
    # ready long before they are due; decoding each as it comes makes many small calls, each paying the call's fixed
    # cost and each stretching the engine's next step. Held, they join the next urgent window's call or wait until
    # one is due. A newcomer's first window is due at its arrival, so it never waits for this. Off by default: in the
    # simulator it fills bursts' calls but lets admitted streams underrun in sustained overload, and at 48 kHz it
    # misses deadlines (docs/decisions/engine-step.md).
    hold_slack_s: float = math.inf

    def __post_init__(self) -> None:
        for name in ("decode_buckets", "sr_buckets", "batch_sizes"):
            values = getattr(self, name)
            if not values or list(values) != sorted(set(values)) or values[0] < 1:
                raise ValueError(f"{name} must be increasing positive integers, got {values}")
        if self.max_decode_rows is not None and self.max_decode_rows < 1:
            raise ValueError("max_decode_rows must be >= 1")
        if self.max_inflight < 1 or self.scan_limit < 1:
            raise ValueError("max_inflight and scan_limit must be >= 1")
        if (self.decode_reach is not None and self.decode_reach < 0) or self.decode_margin < 0:
            raise ValueError("decode_reach and decode_margin must be >= 0")
        if self.model_call_slack_s < 0:
            raise ValueError("model_call_slack_s must be >= 0")
        if not self.hold_slack_s >= 0:
            raise ValueError("hold_slack_s must be >= 0 (inf: never hold)")

    @property
    def prenet_margin(self) -> int:
        """Prenet columns on each side of a decode call's wave spans (0: whole windows, no trim)."""
        return 0 if self.decode_reach is None else self.decode_margin

    def units(self, kind: WindowKind, window: DecodeWindow | SRWindow) -> tuple[int, tuple[int, int] | None]:
        """A window's device work units (decode: its wave span's tokens; SR: its samples) and, for decode, the span."""
        if kind == "decode" and isinstance(window, DecodeWindow):
            span = window.wave_span(self.decode_reach, self.prenet_margin)
            return span[1] - span[0], span
        return window.length, None

    @classmethod
    def for_cpu(cls, cores: int = 1) -> SchedulerPolicy:
        return cls(
            pad_batch=False,
            max_decode_rows=1,
            max_inflight=max(1, cores),
            max_call_decode_tokens=4_096,
            max_call_sr_samples=65_536,
        )

    def sr_end_lengths(self, grid: int) -> tuple[int, ...]:
        """The lengths a stream's AP-BWE true end is shaped to (core.sr_planner `end_lengths`): with padded batches
        (graphs), the AP-BWE buckets on the model's STFT grid (all of them for the released model's 80 samples; an
        AP-BWE checkpoint with another hop gets those it can start a window on), so a true end rides a bucket's graph
        beside other rows; on a CPU none (no graph to ride, and the longer window would only cost compute)."""
        return tuple(n for n in self.sr_buckets if n % grid == 0) if self.pad_batch else ()

    def buckets(self, kind: WindowKind) -> tuple[int, ...]:
        return self.decode_buckets if kind == "decode" else self.sr_buckets

    def max_rows(self, kind: WindowKind) -> int:
        """Rows of one call at most."""
        if kind == "decode" and self.max_decode_rows is not None:
            return self.max_decode_rows
        return self.batch_sizes[-1]

    def max_work(self, kind: WindowKind) -> int:
        return self.max_call_decode_tokens if kind == "decode" else self.max_call_sr_samples

    def fits(self, kind: WindowKind, rows: int, length: int) -> bool:
        """Whether `rows` rows padded to `length` make one call: its padded row count (`batch_bucket`) times the
        length within the work bound. Padded, because the graph plan holds only shapes within the bound: a shape
        past it has no graph, and its eager fp32 call costs several times a graph's, stalling every stream behind it
        (docs/decisions/gpu-time-slices.md)."""
        return self.batch_bucket(rows) * length <= self.max_work(kind)

    def bucket(self, kind: WindowKind, length: int) -> int | None:
        """The smallest bucket holding `length`, or None (longer than every bucket: run alone, exact length)."""
        buckets = self.buckets(kind)
        i = bisect.bisect_left(buckets, length)
        return buckets[i] if i < len(buckets) else None

    def batch_bucket(self, rows: int) -> int:
        if not self.pad_batch:
            return rows
        i = bisect.bisect_left(self.batch_sizes, rows)
        return self.batch_sizes[i] if i < len(self.batch_sizes) else rows


@dataclass(frozen=True)
class Call:
    """One batched device call: rows of one kind, each padded to `length`, the batch padded to `rows_padded`.
    `length` is None for the eager fallback (one row at its own length). `true_end`: SR rows at a stream's end.

    Decode rows: `spans[i]` is [start, end) of window i's tokens that the wave generator runs on (`length` is the
    bucket of these spans); the prenet reads each whole window within `margin` columns on each side of them."""

    kind: WindowKind
    windows: tuple[DecodeWindow | SRWindow, ...]
    length: int | None
    rows_padded: int
    true_end: bool = False
    spans: tuple[tuple[int, int], ...] = ()  # decode: one per window (empty: whole windows)
    margin: int = 0  # decode: prenet columns on each side of the spans

    def span(self, i: int) -> tuple[int, int]:
        """Row i's [start, end) on the device: its wave span (decode), else the whole window."""
        return self.spans[i] if self.spans else (0, self.windows[i].length)

    def units(self, i: int) -> int:
        """Row i's device work units: its wave span's tokens (decode) or its samples (SR)."""
        start, end = self.span(i)
        return end - start

    @property
    def row_length(self) -> int:
        """Every row's length on the device: the bucket, or the longest row's for the eager fallback."""
        return (
            self.length if self.length is not None else max(self.units(i) for i in range(len(self.windows)))
        )

    @property
    def work(self) -> int:
        """Device work units including padding (what the call costs): wave-span tokens for decode."""
        return self.row_length * self.rows_padded

    @property
    def prenet_work(self) -> int:
        """Decode: tokens the prenet reads, padding and margins included."""
        return (self.row_length + 2 * self.margin) * self.rows_padded

    @property
    def valid_work(self) -> int:
        return sum(self.units(i) for i in range(len(self.windows)))


# What a codec call's seconds are to the scheduler, and so to admission and the codec's busy measures. dispatch_to_end:
# from the device thread taking the call to its end, the wait behind the engine's work on the GPU included (the
# service's default). own: the call's own device time, its graph's replay timed alone at start-up (an eager call: CUDA
# events around it, which beside an engine's process also count the engine's slices; on a CPU, the thread's seconds).
# run: CUDA events around this run, its start on the device to its end: its own time where it runs alone once started,
# stretched where the engine's process shares the device by time slices (on a CPU, the thread's seconds).
CallSecondsRead = Literal["dispatch_to_end", "own", "run"]
CALL_SECONDS_READS: tuple[CallSecondsRead, ...] = get_args(CallSecondsRead)


class DeviceRunner(Protocol):
    """What runs the scheduler's device work: codec calls and the model calls beside them, one at a time per device
    thread (`SchedulerPolicy.max_inflight` of them at most), each with the seconds it held the device measured where
    it runs (the device thread, the stand-in's schedule): waiting behind the engine included, unlike
    dispatch-to-resume on the event loop, which would count a busy loop's lateness as device time.

    `run_timed`: each row's kept audio (float32), in row order. Decode rows: samples [keep_start * hop, keep_end *
    hop) of the row's window. SR rows: 48 kHz samples [keep_start, keep_end). The runner packs the rows into one host
    buffer (pinned on CUDA), copies once in and once out, and replays a captured graph for (kind, length,
    rows_padded) where it has one.

    `run_model_call`: `fn`'s result, run where the codec calls run (its work on the device finished when it returns,
    so the seconds are its own). `close`: stop its device threads (a runner replaced by another)."""

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]: ...

    async def run_model_call(self, fn: Callable[[], T]) -> tuple[T, float]: ...

    def close(self) -> None: ...
