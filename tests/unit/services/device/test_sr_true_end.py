"""A stream's AP-BWE true end rides a bucket's graph: the planner shapes the last window to a bucket's length (more
left context, which leaves the kept output as it is), and the scheduler puts such a window only in a call of exactly
its length, beside other streams' rows, never padded. Until then every stream's last window ran as an eager call of
its own (fp32, kernel by kernel: docs/benchmarks.md, "48 kHz at the AP-BWE precision served")."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.apbwe import SuperResolution
from core.sr_planner import RATIO, SRPlanner, SRWindow
from services.device import CodecScheduler, SchedulerPolicy
from services.device.calls import DEFAULT_SR_BUCKETS
from services.device.graphs import GraphPlan
from services.device.runner import ModelRunner
from services.pipeline.audio_output import SR_MAX_BLOCK, SR_MIN_BLOCK
from tests.codec_fakes import FakeClock, RecordingRunner
from tests.tiny_models import small_sr

GRID, CONTEXT = 80, 880  # the released AP-BWE's STFT grid and context


def _planner(
    end_lengths: tuple[int, ...] = DEFAULT_SR_BUCKETS, grid: int = GRID, context: int = CONTEXT
) -> SRPlanner:
    return SRPlanner(
        grid=grid, context=context, min_block=SR_MIN_BLOCK, max_block=SR_MAX_BLOCK, end_lengths=end_lengths
    )


def _windows(planner: SRPlanner, signal: np.ndarray, sizes: list[int]) -> list[SRWindow]:
    out, i = [], 0
    for n in sizes:
        out += planner.push(signal[i : i + n])
        i += n
    out += planner.push(signal[i:])
    return out + planner.finish()


def _starts(windows: list[SRWindow]) -> list[int]:
    """Each window's first input sample (its kept output starts keep_start / 3 samples into it)."""
    starts, done = [], 0
    for w in windows:
        starts.append(done - w.keep_start // RATIO)
        done += (w.keep_end - w.keep_start) // RATIO
    return starts


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 60_000), on_grid=st.booleans(), sizes=st.lists(st.integers(1, 12_000), max_size=12)
)
def test_the_true_end_takes_a_buckets_length_on_the_grid_and_the_rest_is_unchanged(
    length: int, on_grid: bool, sizes: list[int]
) -> None:
    n = max(GRID, length // GRID * GRID) if on_grid else length
    signal = np.arange(
        1, n + 1, dtype=np.float32
    )  # each sample its index + 1: a window's samples say where it reads
    shaped_planner = _planner()
    shaped, plain = _windows(shaped_planner, signal, sizes), _windows(_planner(()), signal, sizes)
    assert len(shaped) == len(plain) and [w.true_end for w in shaped] == [w.true_end for w in plain]
    for a, b in zip(shaped[:-1], plain[:-1], strict=True):  # every window but the true end is as before
        assert np.array_equal(a.samples, b.samples) and (a.keep_start, a.keep_end) == (
            b.keep_start,
            b.keep_end,
        )
    # An end off the grid is extended with zeros to it, by less than a grid step, only where a bucket then holds it.
    pad = shaped_planner.end_padding
    assert 0 <= pad < GRID and (pad == 0 or n % GRID)
    padded = np.concatenate([signal, np.zeros(pad, np.float32)])
    # The kept output tiles the (padded) signal exactly once, every window a slice of it starting on the grid.
    assert sum(w.keep_end - w.keep_start for w in shaped) == RATIO * padded.size
    for w, start in zip(shaped, _starts(shaped), strict=True):
        assert start >= 0 and start % GRID == 0
        assert np.array_equal(w.samples, padded[start : start + w.length])
    end, exact = shaped[-1], plain[-1]
    assert end.true_end and end.keep_end == RATIO * end.length  # it reaches the signal's end
    needed = exact.length + -n % GRID  # the exact window's reach, its end brought onto the grid
    fits = [b for b in DEFAULT_SR_BUCKETS if needed <= b <= n + -n % GRID]
    if fits:
        assert end.length == fits[0] and pad == -n % GRID  # the shortest bucket that holds it
    else:
        assert (
            pad == 0 and end.length == exact.length
        )  # too short for every bucket: its exact length, as before


def test_a_planner_without_end_lengths_keeps_only_the_context_it_needs() -> None:
    planner, shaped = _planner(()), _planner()
    for p in (planner, shaped):
        p.push(np.zeros(40_000, np.float32))
    assert (
        planner._buf.size <= CONTEXT + SR_MAX_BLOCK
        and shaped._buf.size <= max(DEFAULT_SR_BUCKETS) + SR_MAX_BLOCK
    )


def test_end_lengths_off_the_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="multiples of grid"):
        _planner((2_250,))


def test_only_a_padded_policy_shapes_true_ends() -> None:
    assert SchedulerPolicy().sr_end_lengths(GRID) == DEFAULT_SR_BUCKETS
    assert (
        SchedulerPolicy.for_cpu().sr_end_lengths(GRID) == ()
    )  # no graph to ride on a CPU: the longer window only costs


def test_an_ap_bwe_with_another_hop_gets_the_end_lengths_on_its_grid() -> None:
    """A checkpoint's own config sets the grid (hop 100 -> 100 samples): only buckets a window can start on at both
    ends are end lengths, so its planner is built (it refuses lengths off its grid) and its true ends still ride."""
    lengths = SchedulerPolicy().sr_end_lengths(100)
    assert lengths == (4_800, 6_400, 8_000, 12_800)
    _planner(lengths, grid=100, context=900)  # accepted


# ------------------------------------------------------------------------------------------ the scheduler


def _sr(n: int, true_end: bool = False) -> SRWindow:
    return SRWindow(np.zeros(n, np.float32), 0, RATIO * n, true_end)


async def _plans(*windows: SRWindow) -> list:
    """The calls the scheduler plans for these windows, submitted in this order by one stream each (equal
    deadlines: submission order decides)."""
    clock = FakeClock()
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(), clock=clock)
    sched._wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    for w in windows:
        sched._enqueue(sched.open_stream(), "sr", w, loop.create_future(), deadline=1.0)
    calls = []
    while (call := sched.plan()) is not None:
        calls.append(call)
    return calls


async def test_a_true_end_of_a_buckets_length_shares_that_buckets_call_and_graph() -> None:
    (call,) = await _plans(_sr(3_520, true_end=True), _sr(3_000), _sr(3_520, true_end=True))
    assert call.length == 3_520 and not call.true_end and len(call.windows) == 3
    assert GraphPlan.from_policy(SchedulerPolicy()).key_for(call) is not None  # a graph, not the eager path


async def test_a_call_holding_a_true_end_never_grows_past_its_length() -> None:
    calls = await _plans(_sr(3_520, true_end=True), _sr(4_000))
    assert [(c.length, len(c.windows)) for c in calls] == [(3_520, 1), (4_800, 1)]
    calls = await _plans(
        _sr(3_000), _sr(3_520, true_end=True), _sr(4_000)
    )  # joins, raising nothing, then pins
    assert [(c.length, len(c.windows)) for c in calls] == [(3_520, 2), (4_800, 1)]


async def test_a_true_end_never_rides_a_longer_call() -> None:
    calls = await _plans(_sr(4_700), _sr(3_520, true_end=True))
    assert [(c.length, len(c.windows), c.true_end) for c in calls] == [(4_800, 1, False), (3_520, 1, False)]


async def test_a_true_end_of_no_buckets_length_still_runs_exact() -> None:
    calls = await _plans(_sr(3_333, true_end=True), _sr(3_000))
    assert [(c.length, c.true_end) for c in calls] == [(None, True), (3_520, False)]


# ------------------------------------------------------------------------------------------ the audio


@pytest.fixture(scope="module")
def sr() -> SuperResolution:
    return small_sr(seed=7)


async def test_streams_with_shaped_true_ends_batched_in_graph_shapes_equal_the_offline_upsample(sr) -> None:
    """The real model through the scheduler's GPU policy (padded batches, the AP-BWE buckets): every true end rides a
    bucketed call beside other rows; one off the grid is first extended to the grid with zeros, one too short for any
    bucket runs exact. Every stream equals `upsample` of what it planned (its signal, and those zeros)."""
    runner = _Recording(None, sr)
    rng = np.random.default_rng(9)
    lengths = (
        12_320,
        30_000,
        4_000,
        25_600,
        12_345,
        1_999,
    )  # the last two end off the grid, the last one short
    signals = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]
    policy = SchedulerPolicy()

    pads: dict[int, int] = {}  # stream -> the zeros its planner appended

    async def stream(handle, signal: np.ndarray, seed: int) -> np.ndarray:  # noqa: ANN001
        planner = _planner(policy.sr_end_lengths(sr.grid), sr.grid, sr.context)
        burst, i, pieces = np.random.default_rng(seed), 0, []
        while i < signal.size:
            n = int(burst.integers(300, 6_000))
            pieces += await handle.super_resolve_all(planner.push(signal[i : i + n]))
            i += n
        pieces += await handle.super_resolve_all(planner.finish())
        pads[seed] = planner.end_padding
        return np.concatenate(pieces)

    async with CodecScheduler(runner, policy) as sched:
        out = await asyncio.gather(*(stream(sched.open_stream(), s, k) for k, s in enumerate(signals)))
    runner.close()
    assert [pads[k] for k in range(len(lengths))] == [0, 0, 0, 0, 55, 0]
    for k, (signal, audio) in enumerate(zip(signals, out, strict=True)):
        planned = np.concatenate([signal, np.zeros(pads[k], np.float32)])
        np.testing.assert_allclose(audio, sr.upsample(planned), atol=1e-5)
    ends = [(call.length, w.length) for call in runner.calls for w in call.windows if w.true_end]
    assert len(ends) == len(lengths)
    assert sorted(n for length, n in ends if length is None) == [1_999]  # only the one too short ran exact
    assert all(
        length == n for length, n in ends if length is not None
    )  # the others exactly their call's length


class _Recording(ModelRunner):
    def __init__(self, decoder, sr) -> None:  # noqa: ANN001
        self.hop_length, self.calls = 320, []
        super().__init__(_NoDecoder(), sr)

    async def run_timed(self, call):  # noqa: ANN001, ANN201
        self.calls.append(call)
        return await super().run_timed(call)


class _NoDecoder:
    hop_length = 320
    device = "cpu"


def test_the_simulator_runs_shaped_true_ends_in_bucketed_calls() -> None:
    """`bench.sim.load` models what the service runs: with the GPU policy no AP-BWE true end is left eager (the
    served-precision cost model prices an eager call at ~4x a graph's fixed cost), unless shaping is turned off."""
    from bench.sim.run import SimConfig, simulate
    from bench.standin.cost_model import CostModel

    model = CostModel.load("bench/cost_models/h100-decode-tf32-sr-fp32.json").with_overrides(host_ms=1.5)
    reports = {
        shaped: simulate(
            SimConfig(
                model, 12, sample_rate=48_000, audio_seconds=3.0, arrive_within_s=1.0, shape_true_ends=shaped
            )
        )
        for shaped in (True, False)
    }
    assert reports[True]["eager_codec_calls"] == 0 and reports[False]["eager_codec_calls"] > 0
    assert all(r["streams_admitted"] == 12 and r["underruns_prebuffer_100ms"] == 0 for r in reports.values())


async def test_a_48khz_output_builds_for_an_ap_bwe_whose_grid_is_not_80() -> None:
    """The audio chain of a 48 kHz stream on a GPU-policy scheduler, for a checkpoint with a 100-sample grid: it is
    built (every bucket off that grid left out of its end lengths) and its true end takes one on the grid."""
    from types import SimpleNamespace

    from services.pipeline.audio_output import AudioOutput
    from services.pipeline.pipeline_stats import PipelineStats
    from shared.settings import Settings

    async with CodecScheduler(RecordingRunner(FakeClock()), SchedulerPolicy()) as sched:
        resources = SimpleNamespace(
            settings=Settings(), sr=SimpleNamespace(grid=100, context=900), scheduler=sched
        )
        out = AudioOutput(
            resources,
            audio_format="pcm",
            sample_rate=48_000,
            stream=True,
            want_bwe=True,
            stats=PipelineStats(),
        )
        assert out.bwe_stream.end_lengths == (4_800, 6_400, 8_000, 12_800)
        out.bwe_stream.push(np.zeros(20_000, np.float32))
        assert out.bwe_stream.finish()[-1].length in out.bwe_stream.end_lengths
