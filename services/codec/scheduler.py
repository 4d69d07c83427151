"""The codec scheduler: every stream's decode and super-resolution windows, run earliest-deadline-first as a few
batched, bucketed calls on one device.

Why this shape (specs/gpu_serving.md §2-3): per-chunk thread hops, equal-length-only batching and shortest-first
order made the service carry ~8 streams on a GPU whose codec carries hundreds. Here a stream's window is one
awaitable; the scheduler owns the order and the batch:

- **Deadline order.** A window's deadline is when its stream's audio runs out at real-time playback
  (`StreamHandle.deadline`): a new stream's first window gets one from its arrival, so it goes first, and a stream
  with seconds buffered waits. The most urgent window picks the call's kind (decode or SR) and its length bucket.
- **Bounded work per call.** A call holds at most `max_call_work` units (rows x bucket length), so no window waits
  more than one call behind a more urgent one.
- **Fixed shapes.** Rows are right-padded to a length bucket (the models mask each convolution's input beyond a
  row's valid length), and, where the runner replays captured graphs, the row count is padded to a batch bucket. A
  row joins a call only while the call's padding stays within `max_pad_waste` (a row left out is the next call's
  head at the latest). A window longer than every bucket runs alone at its exact length (the eager fallback). A
  stream's AP-BWE true end is never padded: shaped to a bucket's length (core.sr_planner `end_lengths`) it shares
  that bucket's calls and graph, else it runs at its exact length (rows of one length may share it).
- **No timer.** A lone window runs at once; batches form while a call is in flight. An idle server adds no latency.

The scheduler runs on the event loop and never touches a model: the `DeviceRunner` does (one device thread for the
real models; a cost-model stand-in on a virtual clock for `bench.simulate`). It keeps the figures admission needs
(busy ratio, cost per unit of work, deadline misses), says why a window waits (`why_waiting`), and counts each call
for Prometheus (`telemetry.record_call`).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.codec.calls import Call, DeviceRunner, SchedulerPolicy
from services.codec.telemetry import SchedulerStats, record_call
from services.codec.windows import DecodeWindow, SRWindow, WindowKind

logger = logging.getLogger("services.codec.scheduler")

Clock = Callable[[], float]

@dataclass(eq=False)
class _Pending:
    kind: WindowKind
    window: DecodeWindow | SRWindow
    stream: StreamHandle
    deadline: float
    seq: int
    submitted: float
    future: asyncio.Future[np.ndarray]
    # Fixed at submission and read on every plan (a plan scans ~40 pending windows at 48 kHz under load):
    units: int  # device work units: wave-span tokens (decode) or samples (SR): what buckets and bounds count
    span: tuple[int, int] | None  # decode: the window's wave span (SchedulerPolicy.units)
    bucket: int | None  # the smallest length bucket holding `units`; None: longer than every bucket, or a true end
    # of a length no bucket has
    true_end: bool  # an SR window at its stream's true end: never padded (in a bucket only when exactly its length)


def _urgency(p: _Pending) -> tuple[float, int]:
    return p.deadline, p.seq


class StreamHandle:
    """One stream's place in the scheduler and its playback clock.

    The stream tells the handle each time audio leaves for the client (`note_audio`); the first one starts the
    clock. `deadline()` is when the client's buffer would run dry at real-time playback; before the first audio it is
    the stream's arrival, so a newcomer's first window is the most urgent."""

    def __init__(self, scheduler: CodecScheduler, stream_id: int, arrival: float) -> None:
        self.scheduler = scheduler
        self.id = stream_id
        self.arrival = arrival
        self.first_audio_at: float | None = None
        self.audio_seconds = 0.0
        self.closed = False
        # A listener plays this stream as it comes: a missed deadline is an underrun, which admission must see. A
        # non-streaming job (start_playback) has deadlines only for ordering: nobody hears it miss one.
        self.realtime = True

    def note_audio(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.first_audio_at is None:
            self.first_audio_at = self.scheduler.clock()
        self.audio_seconds += seconds

    def start_playback(self, at: float) -> None:
        """Start the playback clock at `at` if no audio has started it yet: a non-streaming job plays "from its
        arrival", so its windows get deadlines as a stream's would, neither starved nor starving."""
        self.realtime = False
        if self.first_audio_at is None:
            self.first_audio_at = at

    def deadline(self) -> float:
        if self.first_audio_at is None:
            return self.arrival
        return self.first_audio_at + self.audio_seconds

    def buffered_seconds(self) -> float:
        """Audio the client holds that it has not played yet (real-time playback from the first audio)."""
        if self.first_audio_at is None:
            return 0.0
        return max(0.0, self.first_audio_at + self.audio_seconds - self.scheduler.clock())

    async def decode(self, window: DecodeWindow) -> np.ndarray:
        return await self.scheduler.submit(self, "decode", window)

    async def decode_all(self, windows: Sequence[DecodeWindow]) -> list[np.ndarray]:
        """Several decode windows of this stream at once, their kept audio in order (`asyncio.gather` over `decode`
        made a task per window, and a wake-up of each, for every decoded chunk)."""
        return await self.scheduler.submit_many(self, "decode", windows)

    async def super_resolve(self, window: SRWindow) -> np.ndarray:
        return await self.scheduler.submit(self, "sr", window)

    async def super_resolve_all(self, windows: Sequence[SRWindow]) -> list[np.ndarray]:
        """Several windows of this stream at once (a decoded chunk is ~3 AP-BWE windows), their kept audio in order."""
        return await self.scheduler.submit_many(self, "sr", windows)

    async def pace(self, max_ahead_s: float) -> None:
        """Wait while this stream is more than `max_ahead_s` of audio ahead of its client's playback."""
        while True:
            ahead = self.buffered_seconds() - max_ahead_s
            if ahead <= 0:
                return
            await self.scheduler.sleep(ahead)

    def close(self) -> None:
        self.scheduler.close_stream(self)


class CodecScheduler:
    """Owns the codec models' device work. Start with `start()` (or `async with`), stop with `aclose()`."""

    def __init__(self, runner: DeviceRunner, policy: SchedulerPolicy | None = None, *,
                 clock: Clock = time.monotonic, busy_window_s: float = 2.0) -> None:
        self.runner = runner
        self.policy = policy or SchedulerPolicy()
        self.clock = clock
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # pacing's wait (a virtual one in tests)
        self.stats = SchedulerStats()
        self._pending: list[_Pending] = []
        self._seq = itertools.count()
        self._stream_ids = itertools.count(1)
        self._streams: dict[int, StreamHandle] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._busy_window_s = busy_window_s
        self._recent_calls: deque[tuple[float, float]] = deque()  # (end time, device seconds) within the window
        # (end time, worst lateness in seconds) of calls that missed a row's deadline, within the window
        self._recent_misses: deque[tuple[float, float]] = deque()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the planning loop on the running event loop (again if it stopped, or ran on a loop now gone:
        tests run each case on a loop of its own; windows queued on the old loop are dropped)."""
        loop = asyncio.get_running_loop()
        task = self._loop_task
        if task is None or task.done() or task.get_loop() is not loop:
            if task is not None and task.get_loop() is not loop:
                self._pending.clear()
                self._inflight.clear()
            self._wake = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="codec-scheduler")

    async def aclose(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif task is not None:  # started on a loop that is gone: nothing of it can still run here
            self._pending.clear()
            self._inflight.clear()
            return
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the codec scheduler stopped"))
        self._pending.clear()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def __aenter__(self) -> CodecScheduler:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ streams
    def open_stream(self, arrival: float | None = None) -> StreamHandle:
        handle = StreamHandle(self, next(self._stream_ids), self.clock() if arrival is None else arrival)
        self._streams[handle.id] = handle
        return handle

    def close_stream(self, handle: StreamHandle) -> None:
        handle.closed = True
        self._streams.pop(handle.id, None)
        for pending in self._pending:
            if pending.stream is handle and not pending.future.done():
                pending.future.cancel()

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    @property
    def pending_windows(self) -> int:
        return sum(1 for p in self._pending if not p.future.done())

    @property
    def calls_in_flight(self) -> int:
        return len(self._inflight)

    @property
    def busy_window_s(self) -> float:  # what busy_ratio and recent_misses look back over
        return self._busy_window_s

    # ------------------------------------------------------------------ submitting
    async def submit(self, stream: StreamHandle, kind: WindowKind, window: DecodeWindow | SRWindow) -> np.ndarray:
        """Queue one window and wait for its kept audio. Cancelling the caller drops the window (if not yet run)."""
        return (await self.submit_many(stream, kind, (window,)))[0]

    async def submit_many(self, stream: StreamHandle, kind: WindowKind,
                          windows: Sequence[DecodeWindow | SRWindow]) -> list[np.ndarray]:
        """Queue windows of one stream together and wait for all their kept audio, in order: one wake-up of the
        planner and no task per window (`asyncio.gather` over `submit` made a task each). Cancelling the caller, or
        a window's failure, drops those not yet run."""
        self.start()  # a no-op while the loop runs here
        if stream.closed:
            raise RuntimeError(f"stream {stream.id} is closed")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[np.ndarray]] = []
        for window in windows:
            futures.append(loop.create_future())
            self._enqueue(stream, kind, window, futures[-1])
        assert self._wake is not None
        self._wake.set()
        try:
            results = []
            for future in futures:  # a loop, not a comprehension: no coroutine of its own per call (Python 3.11)
                results.append(await future)
            return results
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()  # the caller went away: the planner skips it

    def _enqueue(self, stream: StreamHandle, kind: WindowKind, window: DecodeWindow | SRWindow,
                 future: asyncio.Future[np.ndarray], deadline: float | None = None) -> None:
        """Add one window to the pending list, which stays in deadline order (a deadline is fixed at submission), so
        a plan never sorts; its work units, wave span, bucket and true end are fixed here too. The stream's deadline
        unless given (tests)."""
        units, span = self.policy.units(kind, window)
        true_end = isinstance(window, SRWindow) and window.true_end
        bucket = self.policy.bucket(kind, units)
        if true_end and bucket != units:  # a true end is never padded: bucketed only when it fills one exactly
            bucket = None
        pending = _Pending(kind, window, stream, stream.deadline() if deadline is None else deadline, next(self._seq),
                           self.clock(), future, units, span, bucket, true_end)
        bisect.insort(self._pending, pending, key=_urgency)

    # ------------------------------------------------------------------ planning (pure: tests call it directly)
    def plan(self) -> Call | None:
        """The next call: the most urgent window's kind and bucket, then more windows in deadline order while the
        call's work stays within bounds. Removes the chosen windows from the pending list."""
        planned = self._plan()
        return None if planned is None else planned[0]

    def _plan(self) -> tuple[Call, list[_Pending]] | None:
        # `_pending` is in deadline order (`_enqueue` inserts in order). Only its head is read: up to `scan_limit`
        # live windows, and no further once no later row could fit the call (a row never shrinks the call's length).
        # Windows whose caller went away are dropped as the scan meets them; the rest of the list is left as it is.
        pending = self._pending
        n = len(pending)
        first = 0
        while first < n and pending[first].future.done():
            first += 1
        if first == n:
            pending.clear()
            return None
        head = pending[first]
        policy = self.policy
        kind, length = head.kind, head.bucket
        true_end = head.true_end and length is None  # the call's flag: exact-length true ends (a bucketed one rides)
        max_work = policy.max_work(kind)
        scan_limit = policy.scan_limit
        chosen = [head]
        live = 1  # live windows looked at, the head included
        i = first + 1
        if length is None:
            # The eager fallback or a stream's true end: exact length; rows of the same exact length may share it.
            units = head.units
            while i < n and live < scan_limit and (len(chosen) + 1) * units <= max_work:
                p = pending[i]
                i += 1
                if p.future.done():
                    continue
                live += 1
                if p.kind == kind and p.units == units and p.true_end == true_end:
                    chosen.append(p)
        else:
            valid = head.units
            max_rows = policy.batch_sizes[-1]
            max_pad_waste, pad_all_rows = policy.max_pad_waste, policy.pad_all_rows
            pinned = head.true_end  # a true end of exactly a bucket's length: the call's length may not grow
            while i < n and live < scan_limit and len(chosen) < max_rows and (len(chosen) + 1) * length <= max_work:
                p = pending[i]
                i += 1
                if p.future.done():
                    continue
                live += 1
                bucket = p.bucket
                if p.kind != kind or bucket is None:  # another kind, a true end of no bucket's length, or eager
                    continue
                new_length = max(length, bucket)
                if (pinned and new_length > length) or (p.true_end and new_length != p.units):
                    continue  # a true end is never padded: its row must be exactly the call's length
                rows = len(chosen) + 1
                if rows * new_length > max_work:
                    continue
                # Padding bounds every row, raising the bucket or not: a 16-token row in a 192-token call would
                # cost 12x its work (at 250 simulated streams that made calls 1.41x their valid work).
                waste = 1 - (valid + p.units) / (rows * new_length)
                if waste > max_pad_waste and (new_length > length or pad_all_rows):
                    continue
                chosen.append(p)
                length, valid = new_length, valid + p.units
                pinned = pinned or p.true_end
        taken = {id(p) for p in chosen}  # all alive here: their ids are theirs
        pending[:i] = [p for p in pending[:i] if id(p) not in taken and not p.future.done()]
        rows_padded = len(chosen) if length is None else policy.batch_bucket(len(chosen))
        if kind == "decode":
            spans = tuple(p.span or (0, p.window.length) for p in chosen)
            return Call(kind, tuple(p.window for p in chosen), length, rows_padded, true_end, spans,
                        policy.prenet_margin), chosen
        return Call(kind, tuple(p.window for p in chosen), length, rows_padded, true_end), chosen

    def why_waiting(self) -> list[tuple[int, WindowKind, float, str]]:
        """(stream id, kind, seconds to deadline, reason) for each pending window, most urgent first."""
        now = self.clock()
        out = []
        pending = [p for p in self._pending if not p.future.done()]  # in deadline order already
        busy = len(self._inflight) >= self.policy.max_inflight
        for rank, p in enumerate(pending):
            reason = "device busy" if busy else ("more urgent windows first" if rank else "next")
            out.append((p.stream.id, p.kind, p.deadline - now, reason))
        return out

    # ------------------------------------------------------------------ running
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._inflight) < self.policy.max_inflight:
                planned = self._plan()
                if planned is None:
                    break
                call, chosen = planned
                task = asyncio.get_running_loop().create_task(self._execute(call, chosen))
                self._inflight.add(task)
                task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._wake is not None:
            self._wake.set()

    async def _execute(self, call: Call, chosen: Sequence[_Pending]) -> None:
        started = self.clock()
        device_seconds: float | None = None
        try:
            if hasattr(self.runner, "run_timed"):  # a TimedDeviceRunner
                results, device_seconds = await self.runner.run_timed(call)
            else:
                results = await self.runner.run(call)
        except asyncio.CancelledError:
            for p in chosen:
                if not p.future.done():
                    p.future.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - every row of the call gets the failure
            for p in chosen:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            ended = self.clock()
            self._account(call, chosen, started, ended, device_seconds)
        for p, audio in zip(chosen, results, strict=True):
            if not p.future.done():
                p.future.set_result(audio)

    def _account(self, call: Call, chosen: Sequence[_Pending], started: float, ended: float,
                 device_seconds: float | None = None) -> None:
        s = self.stats
        # Start to end with the engine's kernels in between (the device serialises them; the stand-in's timeline
        # too), as admission's caps were calibrated; by the runner where it can (TimedDeviceRunner), else dispatch to
        # resume. Deadlines are judged at `ended`, when the audio reached the stream.
        seconds = max(0.0, device_seconds if device_seconds is not None else ended - started)
        s.calls += 1
        s.rows += len(call.windows)
        s.padded_rows += call.rows_padded - len(call.windows)
        s.work += call.work
        s.valid_work += call.valid_work
        s.busy_seconds += seconds
        s.eager_calls += call.length is None
        s.calls_by_kind[call.kind] += 1
        s.rows_by_kind[call.kind] += len(call.windows)
        s.seconds_by_kind[call.kind] += seconds
        s.work_by_kind[call.kind] += call.work
        late = [ended - p.deadline for p in chosen
                if ended > p.deadline and p.stream.first_audio_at is not None and p.stream.realtime]
        s.missed_deadlines += len(late)
        record_call(call, chosen, started, seconds, late)  # Prometheus (telemetry.py): pre-bound children only
        self._recent_calls.append((ended, seconds))
        if late:
            self._recent_misses.append((ended, max(late)))
        self._trim_recent(ended)

    def _trim_recent(self, now: float) -> None:
        horizon = now - self._busy_window_s
        while self._recent_calls and self._recent_calls[0][0] < horizon:
            self._recent_calls.popleft()
        while self._recent_misses and self._recent_misses[0][0] < horizon:
            self._recent_misses.popleft()

    # ------------------------------------------------------------------ load figures (admission reads these)
    def busy_ratio(self) -> float:
        """Share of the last `busy_window_s` the device spent on codec calls (0..max_inflight)."""
        now = self.clock()
        self._trim_recent(now)
        return sum(seconds for _, seconds in self._recent_calls) / self._busy_window_s

    def recent_misses(self, grace_s: float = 0.0) -> int:
        """Calls in the last `busy_window_s` that ended more than `grace_s` after a playing row's deadline (the
        deadline assumes no client prebuffer: a client holding 100 ms hears nothing of a 50 ms miss)."""
        self._trim_recent(self.clock())
        return sum(1 for _, late in self._recent_misses if late > grace_s)

    def min_slack(self) -> float:
        """Seconds to the most urgent deadline among streams already playing (inf when none)."""
        now = self.clock()
        slack = [h.deadline() - now for h in self._streams.values() if h.first_audio_at is not None and h.realtime]
        return min(slack, default=math.inf)
