"""What the codec scheduler shows operators: the Prometheus families move with each device call (rows, padding,
first vs steady waits, deadline misses of playing streams), the scrape-time gauges, admission's refusals by rule and
its read-only view, and the admin route's snapshot. The scheduler runs on a fake clock that only its runner moves."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from services.device import CodecScheduler, SchedulerPolicy, telemetry
from services.device.admission import Admission
from services.device.telemetry import SchedulerStats
from services.device.windows import DecodeWindow
from shared.metrics import REGISTRY
from tests.codec_fakes import FakeClock, RecordingRunner, played, window

P = "veena3_tts_"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(P + name, labels) or 0.0


class Delta:
    """Counters are process-wide: every check is a difference across the test's own work."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self.series = series
        self.before = [value(name, **labels) for name, labels in series]

    def __call__(self) -> list[float]:
        return [value(name, **labels) - b for (name, labels), b in zip(self.series, self.before, strict=True)]


def make(policy: SchedulerPolicy | None = None, cost: float = 0.05) -> tuple[CodecScheduler, FakeClock]:
    clock = FakeClock()
    return CodecScheduler(RecordingRunner(clock, cost), policy or SchedulerPolicy(), clock=clock), clock


async def test_a_call_counts_its_rows_padding_batch_size_and_busy_seconds() -> None:
    d = Delta(
        ("codec_scheduler_calls_total", {"kind": "decode", "shape": "bucketed"}),
        ("codec_scheduler_rows_total", {"kind": "decode"}),
        ("codec_scheduler_padded_rows_total", {"kind": "decode"}),
        ("codec_scheduler_batch_rows_count", {"kind": "decode"}),
        ("codec_scheduler_batch_rows_sum", {"kind": "decode"}),
        ("codec_scheduler_busy_seconds_total", {"kind": "decode"}),
        ("codec_scheduler_rows_total", {"kind": "sr"}),
    )
    sched, _ = make(SchedulerPolicy(pad_batch=True))
    async with sched:
        handles = [sched.open_stream() for _ in range(5)]
        await asyncio.gather(*(h.decode(window(20 + i)) for i, h in enumerate(handles)))
    assert [len(c.windows) for c in sched.runner.calls] == [5]  # type: ignore[attr-defined]
    calls, rows, padded, batches, batch_rows, busy, sr_rows = d()
    # One call of 5 rows padded to the batch bucket 6, 0.05 s of the fake clock; nothing of the other kind.
    assert (calls, rows, padded, batches, batch_rows, sr_rows) == (1, 5, 1, 1, 5, 0)
    assert busy == pytest.approx(0.05)
    assert sched.stats.padded_rows == 1 and sched.stats.rows == 5  # the stats and the counters agree
    assert sched.stats.kept_tokens == sum(
        20 + i for i in range(5)
    )  # the audio decoded (admission's audio second)


async def test_a_decode_rows_kept_tokens_count_as_audio_not_its_context() -> None:
    sched, _ = make()
    async with sched:
        await sched.open_stream().decode(DecodeWindow(np.zeros(30, np.int32), None, 8, 20))  # 12 kept
    assert sched.stats.kept_tokens == 12


async def test_the_eager_fallback_counts_as_an_exact_shape_call() -> None:
    d = Delta(
        ("codec_scheduler_calls_total", {"kind": "decode", "shape": "exact"}),
        ("codec_scheduler_calls_total", {"kind": "decode", "shape": "bucketed"}),
    )
    sched, _ = make(SchedulerPolicy(decode_buckets=(16, 32)))
    async with sched:
        await sched.open_stream().decode(window(40))  # longer than every bucket
    assert d() == [1, 0] and sched.stats.eager_calls == 1


async def test_a_newcomers_first_window_and_a_playing_streams_window_wait_in_their_own_series() -> None:
    d = Delta(
        ("codec_scheduler_window_wait_seconds_count", {"kind": "decode", "phase": "first"}),
        ("codec_scheduler_window_wait_seconds_sum", {"kind": "decode", "phase": "first"}),
        ("codec_scheduler_window_wait_seconds_count", {"kind": "decode", "phase": "steady"}),
        ("codec_scheduler_window_wait_seconds_sum", {"kind": "decode", "phase": "steady"}),
    )
    sched, _ = make()
    async with sched:
        playing, playback = played(sched)
        playback.note_audio(3.0)  # 3 s buffered: its window waits behind the newcomer's
        newcomer = sched.open_stream()
        # 16 and 200 tokens cannot share a call (padding past max_pad_waste): two calls, the newcomer's first.
        await asyncio.gather(newcomer.decode(window(16)), playing.decode(window(200)))
    assert [len(c.windows) for c in sched.runner.calls] == [1, 1]  # type: ignore[attr-defined]
    first_n, first_s, steady_n, steady_s = d()
    assert (first_n, steady_n) == (1, 1)
    assert first_s == pytest.approx(0.0)  # ran at once
    assert steady_s == pytest.approx(0.05)  # one call (0.05 s) behind the newcomer's


async def test_a_window_submitted_before_first_audio_stays_first_even_if_audio_starts_while_it_waits() -> (
    None
):
    d = Delta(
        ("codec_scheduler_window_wait_seconds_count", {"kind": "decode", "phase": "first"}),
        ("codec_scheduler_window_wait_seconds_count", {"kind": "decode", "phase": "steady"}),
    )
    sched, clock = make()
    async with sched:
        h, playback = played(sched)
        a = asyncio.ensure_future(h.decode(window(16)))
        b = asyncio.ensure_future(h.decode(window(200)))  # its own call, after a's
        await a
        playback.note_audio(0.5)  # a's audio left: b was submitted before it
        await b
        await h.decode(window(16))  # after the first audio: steady
    assert d() == [2, 1]


async def test_only_playing_realtime_streams_count_deadline_misses() -> None:
    d = Delta(
        ("codec_scheduler_deadline_misses_total", {"kind": "decode"}),
        ("codec_scheduler_deadline_miss_seconds_count", {}),
        ("codec_scheduler_deadline_miss_seconds_sum", {}),
    )
    sched, clock = make(cost=0.05)
    async with sched:
        listener, playback = played(sched)
        playback.note_audio(0.02)  # 20 ms buffered; a 50 ms call ends 30 ms after it runs dry
        await listener.decode(window(16))
        batch_job, batch_playback = played(sched)
        batch_playback.start_playback(clock())  # nobody hears a non-streaming job miss
        batch_playback.note_audio(0.01)
        await batch_job.decode(window(16))
        await sched.open_stream().decode(window(16))  # no audio yet: its deadline orders, nobody is listening
    misses, count, late = d()
    assert (misses, count) == (1, 1)
    assert late == pytest.approx(0.03)
    assert sched.stats.missed_deadlines == 1


async def test_a_window_is_late_only_once_its_listener_has_run_dry() -> None:
    """A newcomer's windows are queued by its arrival (the most urgent), but its listener needs the second one only
    when the first one's audio has played. Judged by the queueing deadline, the second window counted the first
    audio's latency as a miss, and admission's miss rule then refused arrivals with nobody short of audio."""
    d = Delta(("codec_scheduler_deadline_misses_total", {"kind": "decode"}))
    sched, clock = make(cost=0.05)
    async with sched:
        h, playback = played(sched)
        first = asyncio.ensure_future(h.decode(window(16)))
        second = asyncio.ensure_future(
            h.decode(window(200))
        )  # queued at arrival, its own call after the first
        await first
        playback.note_audio(0.08)  # the first audio leaves 50 ms after arrival: 80 ms of it
        await second  # ends 50 ms later, 30 ms before those 80 ms have played
        assert sched.recent_misses() == 0
        late = h.decode(window(16))  # queued with 30 ms left; ends 20 ms after the listener ran dry
        await late
    assert d() == [1]
    assert sched.recent_misses(0.019) == 1 and sched.recent_misses(0.021) == 0
    assert sched.worst_recent_miss() == pytest.approx(0.02) and sched.worst_recent_miss(0.021) is None
    # admission's refusal says how late (what a client, or a failed test, then shows)
    refusal = Admission(sched, clock=clock, miss_grace_s=0.0).decide()
    assert refusal.rule == "misses" and "a window ended 20 ms after its audio ran out" in refusal.reason


async def test_a_settled_streams_window_ending_close_to_dry_is_a_near_miss_a_negative_grace_counts() -> None:
    """Admission's default grace (-50 ms) counts a settled stream's window that ended with under 50 ms of audio left:
    the warning before windows miss together. A newcomer's (not yet settled) close call is not one, nor does any
    near miss reach the deadline-miss metric or a grace of zero or more."""
    d = Delta(("codec_scheduler_deadline_misses_total", {"kind": "decode"}))
    sched, clock = make(cost=0.05)
    async with sched:
        newcomer, fresh = played(sched)
        fresh.note_audio(0.08)  # 80 ms of audio: its 50 ms window ends with 30 ms left
        await newcomer.decode(window(60))
        assert sched.recent_misses(-0.05) == 0  # not settled when queued: no near miss
        settled, playback = played(sched)
        playback.note_audio(1.0)
        await settled.decode(window(60))  # 60 kept tokens: settled from here on
        clock.now = playback.deadline() - 0.08  # 80 ms left when the next window is queued
        await settled.decode(window(16))  # ends 30 ms before its listener runs dry
    assert sched.recent_misses(-0.05) == 1 and sched.recent_misses(-0.02) == 0
    assert sched.recent_misses() == 0 and d() == [0]
    refusal = Admission(sched, clock=clock, miss_grace_s=-0.05).decide()
    assert "a near miss: a window ended with 30 ms of audio left" in refusal.reason


async def test_scrape_gauges_read_the_schedulers_load() -> None:
    from shared import metrics

    sched, clock = make(cost=0.05)
    async with sched:
        playing, playback = played(sched)
        playback.note_audio(2.0)
        await playing.decode(window(16))
        sched.open_stream()  # open, not playing
    telemetry.refresh_gauges(sched)
    assert metrics.CODEC_SCHED_STREAMS._value.get() == 2
    assert metrics.CODEC_SCHED_PENDING._value.get() == 0
    assert metrics.CODEC_SCHED_BUSY_RATIO._value.get() == pytest.approx(0.05 / 2.0)
    assert metrics.CODEC_SCHED_MIN_SLACK._value.get() == pytest.approx(2.0 - 0.05)
    assert math.isnan(metrics.ADMISSION_CODEC_SHARE._value.get())  # no admission: not measured
    telemetry.refresh_gauges(None)
    assert (
        metrics.CODEC_SCHED_MIN_SLACK._value.get() == math.inf
        and metrics.CODEC_SCHED_STREAMS._value.get() == 0
    )


class FakeLoad:
    """The scheduler figures admission reads, set by the test."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.active_streams = 0
        self.misses = 0
        self.stats = SchedulerStats()

    def recent_misses(self, grace_s: float = 0.0) -> int:
        return self.misses

    def worst_recent_miss(self, grace_s: float = 0.0) -> float | None:
        return None  # no lateness figure: the plain reason

    def busy_ratio(self) -> float:
        return 0.0


def test_refusals_count_by_rule() -> None:
    clock = FakeClock()
    load = FakeLoad(clock)
    admission = Admission(load, clock=clock, ramp_floor=1)
    d = Delta(
        ("admission_refusals_total", {"rule": "misses", "key_class": "within_share"}),
        ("admission_refusals_total", {"rule": "ramp", "key_class": "within_share"}),
    )
    load.misses = 1
    assert not admission.decide().admit
    load.misses = 0
    assert admission.decide().admit
    assert not admission.decide().admit  # one admitted within the window, none older: ramping
    assert d() == [1, 1]
    assert admission.refused == {"misses": 1, "ramp": 1}


def drive(
    admission: Admission, load: FakeLoad, clock: FakeClock, look: bool
) -> list[tuple[bool, float | None]]:
    out = []
    for step in range(120):
        clock.now += 0.1
        load.active_streams = 1 + step // 10
        load.stats.busy_seconds += 0.004 * load.active_streams
        admission.note_tokens(5 * load.active_streams)
        if look:
            admission.view()
        out.append((admission.decide().admit, admission.codec_cost()))
    return out


def test_admissions_view_never_moves_a_measure() -> None:
    runs = []
    for look in (False, True):
        clock = FakeClock()
        load = FakeLoad(clock)
        admission = Admission(load, clock=clock, generating=lambda load=load: load.active_streams)
        runs.append(drive(admission, load, clock, look))
        view = admission.view()
    assert runs[0] == runs[1]
    assert view["codec_cost"] == pytest.approx(0.04, rel=0.2)
    assert view["llm_tokens_per_s_per_request"] == pytest.approx(50, rel=0.2)
    assert view["admitted"] + sum(view["refused"].values()) == 120


def pending(
    sched: CodecScheduler, handle: object, seconds_ahead: float, seq: int, loop: asyncio.AbstractEventLoop
) -> None:
    sched._enqueue(
        handle,
        "decode",
        window(16),
        loop.create_future(),  # type: ignore[arg-type]
        deadline=sched.clock() + seconds_ahead,
    )


def test_the_snapshot_lists_the_most_urgent_waiting_windows_first_capped() -> None:
    loop = asyncio.new_event_loop()
    try:
        sched, _ = make()
        handles = [sched.open_stream() for _ in range(3)]
        for seq, (h, ahead) in enumerate(zip(handles, (0.3, 0.1, 0.2), strict=True)):
            pending(sched, h, ahead, seq, loop)
        snap = telemetry.snapshot(sched, limit=2)
    finally:
        loop.close()
    assert snap["load"]["pending_windows"] == 3 and snap["waiting_shown"] == 2
    assert [w["stream_id"] for w in snap["waiting"]] == [handles[1].id, handles[2].id]
    assert snap["waiting"][0] == {
        "stream_id": handles[1].id,
        "kind": "decode",
        "seconds_to_deadline": 0.1,
        "reason": "queued",
    }  # no plan has looked at them, and the device is free
    assert snap["waiting_by_reason"] == {"queued": 3}
    assert snap["load"]["min_slack_s"] is None  # nobody playing: null, not Infinity (JSON has none)
    assert snap["admission"] is None and snap["stats"]["calls"] == 0


def test_the_batch_histogram_has_an_edge_at_every_batch_size_the_scheduler_pads_to() -> None:
    """shared/ cannot import services/, so the histogram repeats the scheduler's batch sizes: kept equal here, so each
    padded call shape counts in a bucket of its own."""
    from services.device.calls import DEFAULT_BATCH_SIZES
    from shared.metrics import _BATCH_BUCKETS

    assert tuple(_BATCH_BUCKETS) == tuple(DEFAULT_BATCH_SIZES)
