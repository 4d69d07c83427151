"""The codec scheduler's decisions: deadline order, newcomers first, bounded and bucketed calls, cancellation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.device import CodecScheduler, SchedulerPolicy, SRWindow
from services.device.calls import Call
from tests.codec_fakes import FakeClock, RecordingRunner, played, window


def scheduler(policy: SchedulerPolicy | None = None) -> tuple[CodecScheduler, FakeClock]:
    clock = FakeClock()
    return CodecScheduler(RecordingRunner(clock), policy or SchedulerPolicy(), clock=clock), clock


async def test_a_newcomers_first_window_goes_before_a_stream_with_audio_buffered() -> None:
    sched, clock = scheduler()
    playing, playback = played(sched)
    playback.note_audio(3.0)  # three seconds buffered: its deadline is three seconds away
    clock.now += 0.5
    newcomer = sched.open_stream()
    sched._pending.clear()
    loop = asyncio.get_running_loop()
    sched._wake = asyncio.Event()
    # Queue both without running the loop, then plan.
    for handle, tag, n in ((playing, 1, 200), (newcomer, 2, 16)):
        sched._enqueue(handle, "decode", window(n, tag), loop.create_future())
    policy_call = sched.plan()
    assert policy_call is not None and policy_call.windows[0].ids[0] == 2


async def test_rows_of_different_lengths_share_one_bucketed_call_and_results_return_to_their_streams() -> (
    None
):
    sched, clock = scheduler(SchedulerPolicy(pad_batch=True))
    async with sched:
        handles = [sched.open_stream() for _ in range(5)]
        first = asyncio.gather(*(h.decode(window(20 + i, tag=i)) for i, h in enumerate(handles)))
        results = await first
    for i, audio in enumerate(results):
        assert audio.shape == ((20 + i) * 320,) and np.all(audio == i)
    runner = sched.runner
    assert isinstance(runner, RecordingRunner)
    # Submitted together: one call, rows (20-24 tokens) padded to the 24-token bucket, the 5 rows to the batch bucket 6.
    assert [len(c.windows) for c in runner.calls] == [5]
    assert runner.calls[0].length == 24 and runner.calls[0].rows_padded == 6


async def test_work_per_call_is_bounded_so_an_urgent_window_waits_at_most_one_call() -> None:
    policy = SchedulerPolicy(max_call_decode_tokens=256, pad_batch=False)
    sched, clock = scheduler(policy)
    async with sched:
        handles = [sched.open_stream() for _ in range(12)]
        await asyncio.gather(*(h.decode(window(64)) for h in handles))
    runner = sched.runner
    assert all(c.work <= 256 for c in runner.calls)  # type: ignore[attr-defined]


async def test_a_window_longer_than_every_bucket_runs_alone_at_its_exact_length() -> None:
    sched, _ = scheduler(SchedulerPolicy(decode_buckets=(16, 32)))
    async with sched:
        h = sched.open_stream()
        audio = await h.decode(window(40))
    assert audio.shape == (40 * 320,)
    call = sched.runner.calls[0]  # type: ignore[attr-defined]
    assert call.length is None and sched.stats.eager_calls == 1


async def test_an_sr_window_at_the_true_end_is_never_padded_into_a_bucket() -> None:
    sched, _ = scheduler()
    sr = SRWindow(samples=np.zeros(3_000, np.float32), keep_start=0, keep_end=9_000, true_end=True)
    sched._wake = asyncio.Event()
    h = sched.open_stream()
    sched._enqueue(h, "sr", sr, asyncio.get_running_loop().create_future())
    call = sched.plan()
    assert call is not None and call.length is None and call.true_end


async def test_a_cancelled_caller_drops_its_window_before_it_runs() -> None:
    sched, _ = scheduler()
    async with sched:
        h = sched.open_stream()
        task = asyncio.create_task(h.decode(window(16)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other = sched.open_stream()
        await other.decode(window(16, tag=3))
    assert all(c.windows[0].ids[0] == 3 for c in sched.runner.calls[-1:])  # type: ignore[attr-defined]


class FailingDevice(RecordingRunner):
    async def run(self, call: Call) -> list[np.ndarray]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


async def test_a_device_failure_reaches_every_row_of_the_call_and_every_window_submitted_together() -> None:
    sched = CodecScheduler(FailingDevice(FakeClock()))
    async with sched:
        h = sched.open_stream()
        with pytest.raises(RuntimeError, match="illegal memory"):
            await h.decode(window(16))
        with pytest.raises(RuntimeError, match="illegal memory"):
            await sched.submit_many(h, "decode", [window(16, 1), window(16, 2)])
        assert sched.pending_windows == 0


async def test_windows_submitted_together_share_one_call_and_come_back_in_order() -> None:
    sched, _ = scheduler(SchedulerPolicy(pad_batch=False))
    async with sched:
        h = sched.open_stream()
        results = await h.decode_all(
            [window(20, 1), window(24, 2), window(22, 3)]
        )  # a decoded chunk's windows
    assert [(a.size, set(a.tolist())) for a in results] == [
        (20 * 320, {1.0}),
        (24 * 320, {2.0}),
        (22 * 320, {3.0}),
    ]
    assert [[w.ids[0] for w in c.windows] for c in sched.runner.calls] == [[1, 2, 3]]  # type: ignore[attr-defined]


async def test_on_a_cpu_each_decode_window_is_a_call_of_its_own_whatever_else_waits() -> None:
    """A row's audio must not depend on its call's other rows (a seeded request meets different streams each time):
    on a CPU no two decode windows share a call; AP-BWE windows (length-independent) still do."""
    sched, _ = scheduler(SchedulerPolicy.for_cpu(1))
    async with sched:
        one, other = sched.open_stream(), sched.open_stream()
        await asyncio.gather(
            one.decode_all([window(20, 1), window(24, 2)]),
            other.decode(window(20, 3)),
            one.super_resolve_all([SRWindow(np.zeros(3_520, np.float32), 0, 3 * 3_520)] * 2),
        )
    calls = sched.runner.calls  # type: ignore[attr-defined]
    assert sorted(len(c.windows) for c in calls if c.kind == "decode") == [1, 1, 1]
    assert [len(c.windows) for c in calls if c.kind == "sr"] == [2]


class GatedRunner(RecordingRunner):
    """Holds every call until the test opens the gate."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.gate = asyncio.Event()

    async def run(self, call: Call) -> list[np.ndarray]:
        await self.gate.wait()
        return await super().run(call)


async def test_a_cancelled_caller_of_several_windows_drops_every_one_not_yet_run() -> None:
    clock = FakeClock()
    runner = GatedRunner(clock)
    sched = CodecScheduler(runner, SchedulerPolicy(max_inflight=1), clock=clock)
    async with sched:
        busy = asyncio.create_task(
            sched.open_stream().decode(window(16, tag=9))
        )  # holds the one call in flight
        await asyncio.sleep(0.01)
        h = sched.open_stream()
        caller = asyncio.create_task(
            sched.submit_many(h, "decode", [window(16, 1), window(16, 2), window(16, 3)])
        )
        await asyncio.sleep(0.01)
        assert sched.pending_windows == 3
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert sched.pending_windows == 0
        runner.gate.set()
        await busy
        await sched.open_stream().decode(window(16, tag=4))
    assert [[w.ids[0] for w in c.windows] for c in runner.calls] == [[9], [4]]


def test_default_buckets_pad_three_rows_to_three_and_lengths_to_the_next_eighth() -> None:
    policy = SchedulerPolicy()
    assert policy.batch_bucket(3) == 3 and policy.batch_bucket(5) == 6 and policy.batch_bucket(13) == 16
    assert policy.bucket("decode", 17) == 24 and policy.bucket("decode", 73) == 80
    assert policy.bucket("decode", 248) == 256 and policy.bucket("decode", 257) is None


async def test_a_short_row_does_not_ride_in_a_long_bucket_past_the_padding_bound() -> None:
    sched, clock = scheduler()
    loop = asyncio.get_running_loop()
    handles = [sched.open_stream() for _ in range(3)]
    for i, (h, n) in enumerate(
        zip(handles, (177, 16, 170), strict=True)
    ):  # in deadline order: 177 is the head
        sched._enqueue(h, "decode", window(n, i), loop.create_future(), deadline=float(i))
    call = sched.plan()
    # The 177-token head picks the 192 bucket; the 170-token row fits (waste 10%); the 16-token row would make it 38%.
    assert call is not None and call.length == 192 and [w.length for w in call.windows] == [177, 170]
    nxt = sched.plan()
    assert nxt is not None and nxt.length == 16 and [w.length for w in nxt.windows] == [16]
    lax = CodecScheduler(sched.runner, SchedulerPolicy(pad_all_rows=False), clock=clock)
    for i, (h, n) in enumerate(zip(handles, (177, 16, 170), strict=True)):
        lax._enqueue(h, "decode", window(n, i), loop.create_future(), deadline=float(i))
    lax_call = lax.plan()
    assert lax_call is not None and [w.length for w in lax_call.windows] == [177, 16, 170]


class LateLoopRunner(RecordingRunner):
    """A runner whose call holds the device `cost` but whose caller resumes `late` seconds after that (a
    busy event loop): the clock moves by both, the runner reports the device's share."""

    def __init__(self, clock: FakeClock, cost: float, late: float) -> None:
        super().__init__(clock, cost)
        self.late = late

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        rows = await self.run(call)
        self.clock.now += self.late
        return rows, self.cost


async def test_a_timed_runner_s_device_seconds_are_the_measure_not_the_loop_s_lateness() -> None:
    clock = FakeClock()
    sched = CodecScheduler(LateLoopRunner(clock, cost=0.004, late=0.006), SchedulerPolicy(), clock=clock)
    stream, playback = played(sched)
    playback.note_audio(0.001)  # playing, 1 ms buffered: the call ends after its deadline
    async with sched:
        await stream.decode(window(16))
    assert sched.stats.busy_seconds == pytest.approx(0.004)  # admission's codec cost reads this
    assert sched.busy_ratio() == pytest.approx(0.004 / 2.0)
    assert sched.stats.missed_deadlines == 1  # lateness is judged when the audio reached the stream


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["submit", "cancel", "plan"]),
            st.integers(0, 5),
            st.integers(1, 300),
            st.booleans(),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_pending_windows_stay_in_deadline_order_through_submits_cancels_and_plans(ops) -> None:
    """Windows are kept in deadline order as they come (a plan never sorts): whatever the order of submissions,
    deadlines, cancellations (a hung-up stream, a superseded context) and plans, every plan starts at the most urgent
    live window, and every window not cancelled is planned exactly once."""

    async def main() -> None:
        sched, _ = scheduler(SchedulerPolicy(decode_buckets=(16, 64, 256), batch_sizes=(1, 2, 4)))
        loop = asyncio.get_running_loop()
        handle = sched.open_stream()
        live: dict[int, tuple[float, int]] = {}  # window tag -> (deadline, submission order)
        futures = []
        planned: list[int] = []

        def plan_all(limit: int) -> None:
            for _ in range(limit):
                call = sched.plan()
                if call is None:
                    return
                urgent = min(live.values())
                tags = [int(w.ids[0]) for w in call.windows]
                assert live[tags[0]] == urgent  # the head is the most urgent live window
                planned.extend(tags)
                for tag in tags:
                    del live[tag]

        for i, (op, arg, length, flag) in enumerate(ops):
            if op == "submit":
                future = loop.create_future()
                deadline = float(arg) + (0.5 if flag else 0.0)
                sched._enqueue(handle, "decode", window(length, i), future, deadline=deadline)
                futures.append((i, future))
                live[i] = (deadline, i)
            elif op == "cancel" and futures:
                tag, future = futures[arg % len(futures)]
                future.cancel()
                live.pop(tag, None)
            elif op == "plan":
                plan_all(arg)
        plan_all(10_000)
        assert live == {} and len(planned) == len(set(planned))

    asyncio.run(main())


def _full_scan_plan(pending: list, policy: SchedulerPolicy) -> list:
    """The planner's rule read over every live window (no early stop): what `_plan` must choose while reading only
    the head of the list."""
    live = [p for p in pending if not p.future.done()]
    if not live:
        return []
    head, chosen = live[0], [live[0]]
    length, valid, max_work = head.bucket, head.units, policy.max_work(head.kind)
    for p in live[1 : policy.scan_limit]:
        if length is None:
            if (
                p.kind == head.kind
                and p.units == head.units
                and p.true_end == head.true_end
                and (len(chosen) + 1) * head.units <= max_work
            ):
                chosen.append(p)
            continue
        if len(chosen) >= policy.batch_sizes[-1] or p.kind != head.kind or p.bucket is None:
            continue
        new_length, rows = max(length, p.bucket), len(chosen) + 1
        if policy.batch_bucket(rows) * new_length > max_work:  # the padded call must have a planned shape
            continue
        waste = 1 - (valid + p.units) / (rows * new_length)
        if waste > policy.max_pad_waste and (new_length > length or policy.pad_all_rows):
            continue
        chosen.append(p)
        length, valid = new_length, valid + p.units
    return chosen


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["decode", "decode", "sr", "sr_end"]),
            st.one_of(st.sampled_from([13, 16, 50, 64, 110, 128, 200]), st.integers(1, 300)),
            st.integers(0, 20),
            st.booleans(),
        ),
        min_size=1,
        max_size=80,
    ),
    max_decode=st.sampled_from([64, 256, 2_048]),
    scan_limit=st.integers(1, 40),
    max_rows=st.sampled_from([3, 4, 64]),
)
def test_a_plan_reads_only_the_head_yet_chooses_what_a_full_scan_would(
    rows, max_decode, scan_limit, max_rows
) -> None:
    """`_plan` stops reading once no later row could fit the call and drops cancelled windows only where it read:
    every call, and the order of what is left, is what the same rule over the whole list gives (decode and SR rows,
    true ends, the eager fallback, cancelled windows anywhere, any bound and scan limit)."""

    async def main() -> None:
        policy = SchedulerPolicy(
            decode_buckets=(16, 64, 128),
            sr_buckets=(800, 1_600),
            batch_sizes=(1, 2, max_rows),
            max_call_decode_tokens=max_decode,
            max_call_sr_samples=3 * 1_600,
            scan_limit=scan_limit,
        )
        sched, _ = scheduler(policy)
        loop = asyncio.get_running_loop()
        handle = sched.open_stream()
        for i, (kind, length, deadline, cancelled) in enumerate(rows):
            future = loop.create_future()
            if kind == "decode":
                sched._enqueue(handle, "decode", window(length, i), future, deadline=float(deadline))
            else:
                samples = np.full(length * 12, i, np.float32)
                sched._enqueue(
                    handle,
                    "sr",
                    SRWindow(samples, 0, 3 * samples.size, kind == "sr_end"),
                    future,
                    deadline=float(deadline),
                )
            if cancelled:
                future.cancel()
        while True:
            expected = _full_scan_plan(sched._pending, policy)
            survivors = [p for p in sched._pending if not p.future.done() and p not in expected]
            planned = sched._plan()
            if planned is None:
                assert expected == []
                break
            assert planned[1] == expected
            assert [p for p in sched._pending if not p.future.done()] == survivors

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["decode", "sr"])
@pytest.mark.parametrize("count", [23, 25, 42, 64, 100])
def test_every_bucketed_call_the_scheduler_forms_has_a_planned_graph(kind, count) -> None:
    """A call's padded row count times its length stays within the work bound, so every bucketed call the default
    policy forms is a shape the graph plan captures, whatever burst of one length waits. On an H100, 25-26 rows padded
    to 32 at 80 tokens had no graph and ran eager in fp32 (140 ms against ~41 ms for the graphs of the same rows)."""
    from services.device.graphs import GraphPlan

    async def main() -> None:
        policy = SchedulerPolicy()
        plan = GraphPlan.from_policy(policy)
        loop = asyncio.get_running_loop()
        for length in policy.buckets(kind):
            sched, _ = scheduler(policy)
            handle = sched.open_stream()
            for i in range(count):
                if kind == "decode":
                    sched._enqueue(handle, kind, window(length, i), loop.create_future(), deadline=0.0)
                else:
                    sr = SRWindow(np.zeros(length, np.float32), 0, 3 * length)
                    sched._enqueue(handle, kind, sr, loop.create_future(), deadline=0.0)
            while (planned := sched._plan()) is not None:
                call, chosen = planned
                for p in chosen:
                    p.future.cancel()
                assert call.length == length
                assert plan.key_for(call) is not None, (kind, length, len(chosen), call.rows_padded)

    asyncio.run(main())
