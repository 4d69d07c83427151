"""The codec scheduler: every stream's decode and super-resolution windows, run earliest-deadline-first as a few
batched, bucketed calls on one device.

Why this shape (docs/reference/gpu-serving.md#scheduling-the-codec): per-chunk thread hops, equal-length-only
batching and shortest-first order hold a service to ~8 streams on a GPU whose codec carries hundreds. Here a stream's
window is one awaitable; the scheduler owns the order and the batch:

- **Deadline order.** A window's deadline is when its stream's audio runs out at real-time playback
  (its playback clock's `deadline()`): a new stream's first window gets one from its arrival, so it goes first, and a stream
  with seconds buffered waits. The most urgent window picks the call's kind (decode or SR) and its length bucket.
- **Bounded work per call.** A call holds at most `max_work` units (padded rows x bucket length:
  `SchedulerPolicy.fits`), so no window waits more than one call behind a more urgent one, and every bucketed call
  has a captured graph's shape.
- **Fixed shapes.** Rows are right-padded to a length bucket (the models mask each convolution's input beyond a
  row's valid length), and, where the runner replays captured graphs, the row count is padded to a batch bucket. A
  row joins a call only while the call's padding stays within `max_pad_waste` (a row left out is the next call's
  head at the latest). A window longer than every bucket runs alone at its exact length (the eager fallback). A
  stream's AP-BWE true end is never padded: shaped to a bucket's length (core.sr_planner `end_lengths`) it shares
  that bucket's calls and graph, else it runs at its exact length (rows of one length may share it).
- **No timer by default.** A lone window runs at once; batches form while a call is in flight. An idle server adds
  no latency. With `SchedulerPolicy.hold_slack_s` set, live windows wait while none is due within it (one timer for
  the most urgent), so a stream running ahead of real time is decoded in fewer, fuller calls.
- **Model calls beside the windows.** A voice's speaker vector, a cloning reference's encode and the CTC aligner
  run on the same device: `run_model_call` queues one with a deadline `SchedulerPolicy.model_call_slack_s` after its
  submission, so it waits behind every window due sooner (a newcomer's first window, a stream about to run dry) and
  behind no window due later; it runs alone, on the runner's device thread, and its seconds count as the codec
  calls' do.

The scheduler runs on the event loop and never touches a model: the `DeviceRunner` does (one device thread for the
real models; a cost-model stand-in on a virtual clock for `bench.sim.load`). It keeps the figures admission needs
(busy ratio, cost per unit of work, deadline misses), records why each window waits when it decides
(`why_waiting`), and counts each call for Prometheus (`telemetry.record_call`, `telemetry.record_model_call`). A
stream's playback clock and pacing belong to delivery (`playback.PlaybackClock`): the scheduler reads a stream's
deadline from it and never paces.

**Turns between keys on a CPU.** Given `turns` (services/device/key_share.py `CpuTurns`; the runtime gives it on a
CPU only), a key's live windows stay queued while a key that used less (engine steps and decodes, one decayed
account) is busy, and each live call's seconds are charged to its rows' keys: on two cores a flood's decodes
otherwise take the cores another key's engine steps need. The wait is in the queue, never on a device thread. On a
GPU there are no turns: a call batches many keys' windows, and splitting them would cost the batch.

**Work classes.** A stream opened as `background` (long-form jobs: nobody listens yet) queues its windows apart from
the live ones, in submission order, and they run only in device time live streams do not need: when no live window
or model call waits and `background.BackgroundGate` lets them (no live miss, no live stream short of audio, a bounded
share while live streams are open), one background call at a time. Their seconds are accounted apart and never
reach the figures admission reads (busy ratio, misses, open streams per key, cost per stream).

Longer than 500 lines because what stays here shares the pending lists and the device slots; what has a seam
of its own lives beside it: `queueing.py` (a stream's handle and the entries of the pending lists), `batching.py`
(forming one call from the pending windows' head), `accounting.py` (each call's device seconds, and the busy ratio
and misses admission reads). Here: the lifecycle, submission, the choice between live, model-call and background
work, the turns between keys, and the wait reasons.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from services.device.accounting import DeviceTimeAccount
from services.device.background import BackgroundGate, BackgroundPolicy
from services.device.batching import form_call
from services.device.calls import Call, DeviceRunner, ModelCallKind, SchedulerPolicy
from services.device.headroom import drain_headroom
from services.device.key_share import CpuTurns
from services.device.loop_lag import LoopLag
from services.device.queueing import PendingModelCall, PendingWindow, StreamHandle, urgency
from services.device.windows import (
    DecodeWindow,
    FixedDeadline,
    SRWindow,
    StreamDeadline,
    WaitReason,
    WindowKind,
)
from services.device.work_class import WorkClass

logger = logging.getLogger("services.device.scheduler")

Clock = Callable[[], float]
T = TypeVar("T")


# How soon the planner looks again while windows wait for a lighter key's turn (its steps end without telling us).
TURN_RECHECK_S = 0.005
# A held window this close to its release runs now: a timer set for the remainder could round to no time at all.
HOLD_TOLERANCE_S = 1e-4

_NOT_RUN = object()  # a model call's result when its caller went away before a device thread took it


class CodecScheduler:
    """Owns the codec models' device work. Start with `start()` (or `async with`), stop with `aclose()`."""

    def __init__(
        self,
        runner: DeviceRunner,
        policy: SchedulerPolicy | None = None,
        *,
        clock: Clock = time.monotonic,
        busy_window_s: float = 2.0,
        background: BackgroundPolicy | None = None,
        loop_lag: LoopLag | None = None,
        turns: CpuTurns | None = None,
    ) -> None:
        self.runner = runner
        # Turns between keys (CPU only; None: EDF alone): the keys of live calls on the device, the keys whose
        # windows wait for a lighter key, and the timer that looks again
        self.turns = turns
        self._running_keys: Counter[str | None] = Counter()
        self._held_keys: set[str | None] = set()
        self._turn_timer: asyncio.TimerHandle | None = None
        # The event loop's stalls, taken off a miss before admission reads it (loop_lag.py); None: every miss counts
        self.loop_lag = loop_lag
        self.policy = policy or SchedulerPolicy()
        self.clock = clock
        # Device seconds, rows and misses (accounting.py); `stats` is its `SchedulerStats`
        self.account = DeviceTimeAccount(busy_window_s)
        self.stats = self.account.stats
        self._pending: list[PendingWindow] = []
        # Background streams (work_class.py): their windows in submission order, apart from the live ones, and the
        # gate that says when one of their calls may start (background.py). Empty: the live path reads none of it.
        self._bg_pending: list[PendingWindow] = []
        self._bg_streams: dict[int, StreamHandle] = {}
        self._bg_inflight = 0
        self._bg_timer: asyncio.TimerHandle | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self.background = BackgroundGate(background or BackgroundPolicy(), busy_window_s)
        self._model_calls: list[PendingModelCall] = []  # in deadline order, like `_pending`
        self._seq = 0  # submissions so far: each window's and model call's place in line
        self._stream_ids = itertools.count(1)
        self.on_live_close: Callable[[StreamHandle], None] | None = None  # told of each live stream's close
        self._streams: dict[int, StreamHandle] = {}
        self._settled = 0  # live streams open and settled (StreamHandle.settled)
        # When each closed live stream's listener runs out of audio (a heap): it still plays until then
        self._playing_until: list[float] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        # The last decision (a plan, or a model call taking the device): its number, the submissions it saw, and why
        # the work it did not look at waits. A window the plan looked at and left out carries its own reason.
        self._decisions = 0
        self._decided_seq = 0
        self._unreached: WaitReason = "deadline_order"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the planning loop on the running event loop (again if it stopped, or ran on a loop now gone:
        tests run each case on a loop of its own; work queued on the old loop is dropped)."""
        loop = asyncio.get_running_loop()
        task = self._loop_task
        if task is None or task.done() or task.get_loop() is not loop:
            if task is not None and task.get_loop() is not loop:
                self._pending.clear()
                self._bg_pending.clear()
                self._model_calls.clear()
                self._inflight.clear()
                self._bg_inflight, self._bg_timer, self._hold_timer = 0, None, None
                self._running_keys.clear()
                self._held_keys, self._turn_timer = set(), None
            self._wake = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="codec-scheduler")

    @property
    def serving_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the planning loop runs on, while it runs (worker threads hand model calls to it)."""
        task = self._loop_task
        if task is None or task.done():
            return None
        loop = task.get_loop()
        return loop if loop.is_running() else None

    async def aclose(self) -> None:
        if self.loop_lag is not None:
            await self.loop_lag.aclose()
        task, self._loop_task = self._loop_task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif task is not None:  # started on a loop that is gone: nothing of it can still run here
            self._pending.clear()
            self._bg_pending.clear()
            self._model_calls.clear()
            self._inflight.clear()
            return
        for timer in (self._bg_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self._bg_timer = self._hold_timer = None
        queued: list[PendingWindow | PendingModelCall] = [
            *self._pending,
            *self._bg_pending,
            *self._model_calls,
        ]
        for waiting in queued:
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError("the codec scheduler stopped"))
        self._pending.clear()
        self._bg_pending.clear()
        self._model_calls.clear()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def __aenter__(self) -> CodecScheduler:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ streams
    def open_stream(
        self,
        playback: StreamDeadline | None = None,
        owner: str | None = None,
        work_class: WorkClass = "live",
        *,
        super_resolved: bool = False,
    ) -> StreamHandle:
        """A stream whose windows are ordered by `playback`'s deadline (delivery's `PlaybackClock`); None: every
        window due at the opening (a stream nobody plays as it comes). `owner`: the key it serves. A `background`
        stream's windows wait in their own queue, in submission order, for device time live streams do not need.
        `super_resolved`: its audio goes through AP-BWE (admission weighs it: services/device/carried.py)."""
        handle = StreamHandle(
            self,
            next(self._stream_ids),
            playback or FixedDeadline(self.clock()),
            owner,
            work_class,
            super_resolved,
        )
        (self._streams if work_class == "live" else self._bg_streams)[handle.id] = handle
        if self.loop_lag is not None:
            self.loop_lag.run_while(lambda: bool(self._streams))
        return handle

    def close_stream(self, handle: StreamHandle) -> None:
        handle.closed = True
        live = handle.work_class == "live"
        closed = (self._streams if live else self._bg_streams).pop(handle.id, None)
        if live and closed is not None and closed.settled:
            self._settled -= 1
        if live and closed is not None and self.on_live_close is not None:
            self.on_live_close(handle)  # continuations.py: its key may continue it
        if live and closed is not None and handle.playback.heard:
            heapq.heappush(self._playing_until, handle.playback.deadline())
            self._forget_played()  # read or not, the heap holds only listeners still playing
        for pending in self._pending if live else self._bg_pending:
            if pending.stream is handle and not pending.future.done():
                pending.future.cancel()

    @property
    def active_streams(self) -> int:
        """Open live streams (admission's count; background streams are `background_streams`)."""
        return len(self._streams)

    @property
    def playing_streams(self) -> int:
        """Live streams a listener still plays: the open ones, and the closed ones whose audio has not run out.
        Admission's rule 3 may multiply its codec cost per second of audio by these (`codec_share_streams`): with
        arrivals that keep coming, that product is the codec's share of the device at real time."""
        self._forget_played()
        return len(self._streams) + len(self._playing_until)

    def _forget_played(self) -> None:
        """Drop the closed streams whose listeners have run out of audio."""
        now, ends = self.clock(), self._playing_until
        while ends and ends[0] <= now:
            heapq.heappop(ends)

    @property
    def settled_streams(self) -> int:
        """Open live streams past their first second of audio (admission's codec cost of settled streams)."""
        return self._settled

    @property
    def background_streams(self) -> int:
        return len(self._bg_streams)

    def live_streams_by_kind(self) -> tuple[int, int]:
        """Open live streams at the codec's 16 kHz and through AP-BWE (admission's carried streams)."""
        resolved = sum(1 for handle in self._streams.values() if handle.super_resolved)
        return len(self._streams) - resolved, resolved

    def streams_by_owner(self) -> Counter[str]:
        """Open live streams per key ("" for keyless ones): admission's share per key reads it when the device is
        short."""
        return Counter(handle.owner or "" for handle in self._streams.values())

    @property
    def pending_windows(self) -> int:
        """Live windows waiting (background ones: `pending_background_windows`)."""
        return sum(1 for p in self._pending if not p.future.done())

    @property
    def pending_background_windows(self) -> int:
        return sum(1 for p in self._bg_pending if not p.future.done())

    @property
    def pending_model_calls(self) -> int:
        return sum(1 for m in self._model_calls if not m.future.done())

    @property
    def calls_in_flight(self) -> int:
        return len(self._inflight)

    @property
    def busy_window_s(self) -> float:  # what busy_ratio and recent_misses look back over
        return self.account.window_s

    # ------------------------------------------------------------------ submitting
    async def submit(
        self, stream: StreamHandle, kind: WindowKind, window: DecodeWindow | SRWindow
    ) -> np.ndarray:
        """Queue one window and wait for its kept audio. Cancelling the caller drops the window (if not yet run)."""
        return (await self.submit_many(stream, kind, (window,)))[0]

    async def submit_many(
        self, stream: StreamHandle, kind: WindowKind, windows: Sequence[DecodeWindow | SRWindow]
    ) -> list[np.ndarray]:
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
            for (
                future
            ) in futures:  # a loop, not a comprehension: no coroutine of its own per call (Python 3.11)
                results.append(await future)
            return results
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()  # the caller went away: the planner skips it

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _enqueue(
        self,
        stream: StreamHandle,
        kind: WindowKind,
        window: DecodeWindow | SRWindow,
        future: asyncio.Future[np.ndarray],
        deadline: float | None = None,
    ) -> None:
        """Add one window to the pending list, which stays in deadline order (a deadline is fixed at submission), so
        a plan never sorts; its work units, wave span, bucket and true end are fixed here too. The stream's deadline
        unless given (tests)."""
        units, span = self.policy.units(kind, window)
        true_end = isinstance(window, SRWindow) and window.true_end
        bucket = self.policy.bucket(kind, units)
        if (
            true_end and bucket != units
        ):  # a true end is never padded: bucketed only when it fills one exactly
            bucket = None
        playback = stream.playback
        if stream.work_class == "background":
            deadline = math.inf  # no listener: behind every live window, in submission order among its own
        pending = PendingWindow(
            kind,
            window,
            stream,
            playback.deadline() if deadline is None else deadline,
            self._next_seq(),
            self.clock(),
            future,
            units,
            span,
            bucket,
            true_end,
            not playback.started,
        )
        if stream.work_class == "background":
            self._bg_pending.append(pending)
        else:
            bisect.insort(self._pending, pending, key=urgency)

    async def run_model_call(self, kind: ModelCallKind, fn: Callable[[], T]) -> T:
        """Run `fn`, a blocking model call on the serving device (a speaker vector, a reference encode, an
        alignment), as the scheduler's own device work: on the runner's device thread, alone, between codec calls,
        in deadline order with the windows (due `SchedulerPolicy.model_call_slack_s` after now), its device seconds
        counted in the busy ratio and the cost admission reads. Cancelling the caller before a device thread takes
        the call means it never runs; once it runs it finishes (a thread cannot be stopped) and its result is
        dropped. `fn`'s exception reaches the caller."""
        self.start()
        now = self.clock()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        call = PendingModelCall(kind, fn, now + self.policy.model_call_slack_s, self._next_seq(), now, future)
        bisect.insort(self._model_calls, call, key=urgency)
        assert self._wake is not None
        self._wake.set()
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()

    # ------------------------------------------------------------------ planning (pure: tests call it directly)
    def plan(self) -> Call | None:
        """The next call: the most urgent window's kind and bucket, then more windows in deadline order while the
        call's work stays within bounds. Removes the chosen windows from the pending list."""
        planned = self._plan()
        return None if planned is None else planned[0]

    def _plan(self, queue: list[PendingWindow] | None = None) -> tuple[Call, list[PendingWindow]] | None:
        # `queue`: the live windows (`_pending`) unless given (the background queue, `_plan_background`).
        # `_pending` is in deadline order (`_enqueue` inserts in order); batching.py forms the call from its head.
        # Windows whose caller went away are dropped as the scan meets them; the rest of the list is left as it is.
        # Those the scan never reaches wait for `_unreached`.
        pending = self._pending if queue is None else queue
        n = len(pending)
        first = 0
        while first < n and pending[first].future.done():
            first += 1
        if first == n:
            pending.clear()
            return None
        self._decisions += 1
        self._decided_seq = self._seq
        if queue is None and self._hold(pending[first]):
            self._unreached = "held"
            return None
        formed = form_call(pending, first, self.policy, self._decisions)
        self._unreached = formed.unreached
        return formed.call, formed.chosen

    def _plan_turns(self) -> tuple[Call, list[PendingWindow]] | None:
        """`_plan` over the live windows whose key is not waiting for a lighter key's turn (`CpuTurns.held`); the
        planned call's keys count as running until it ends."""
        assert self.turns is not None
        queued = {p.stream.owner for p in self._pending if not p.future.done()}
        self._held_keys = held = self.turns.held(queued, +self._running_keys) if queued else set()
        if not held:
            planned = self._plan()
        else:
            for p in self._pending:
                if p.stream.owner in held:
                    p.waiting, p.decided = "lighter_key_busy", self._decisions
            self._look_again_for_turns()
            free = [p for p in self._pending if p.stream.owner not in held]
            planned = self._plan(free) if free else None
            if planned is not None:
                taken = {id(p) for p in planned[1]}
                self._pending = [p for p in self._pending if id(p) not in taken]
        if planned is not None:
            self._running_keys.update(p.stream.owner for p in planned[1])
        return planned

    def _hold(self, head: PendingWindow) -> bool:
        """Whether the live queue waits (`SchedulerPolicy.hold_slack_s`): its most urgent window is due later than
        the hold. If so, a timer wakes the planner when it is due within it; a window due sooner wakes it on arrival."""
        wait = head.deadline - self.clock() - self.policy.hold_slack_s
        if wait <= HOLD_TOLERANCE_S:
            return False
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        wake = self._wake
        if wake is not None:

            def look() -> None:
                self._hold_timer = None
                wake.set()

            self._hold_timer = asyncio.get_running_loop().call_later(wait, look)
        return True

    def _look_again_for_turns(self) -> None:
        if self._turn_timer is not None or self._wake is None:
            return
        wake = self._wake

        def look() -> None:
            self._turn_timer = None
            wake.set()

        self._turn_timer = asyncio.get_running_loop().call_later(TURN_RECHECK_S, look)

    def _plan_background(self) -> tuple[Call, list[PendingWindow]] | None:
        """A background call, if background windows wait, none runs yet and the gate lets one start now (there is
        no live work to run when this is asked); else None, and a timer to look again while some wait."""
        bg = self._bg_pending
        while bg and bg[0].future.done():
            bg.pop(0)
        if not bg or self._bg_inflight:
            return None
        now = self.clock()
        live = len(self._streams)
        allowed = self.background.may_start(
            now,
            live_streams=live,
            live_misses=self.recent_misses() if live else 0,
            live_min_slack=self._live_slack() if live else math.inf,
        )
        if not allowed:
            self._look_again_later()
            return None
        return self._plan(bg)

    def _live_slack(self) -> float:
        """Seconds to the most urgent deadline of any live stream, a newcomer waiting for its first audio included
        (its deadline is its arrival): background work waits while any live window is due soon."""
        now = self.clock()
        return min((h.playback.deadline() - now for h in self._streams.values()), default=math.inf)

    def _look_again_later(self) -> None:
        """Wake the planner after `retry_s` (a paused background queue: a share or a miss passes with time alone)."""
        if self._bg_timer is not None or self._wake is None:
            return
        wake = self._wake

        def look() -> None:
            self._bg_timer = None
            wake.set()

        self._bg_timer = asyncio.get_running_loop().call_later(self.background.policy.retry_s, look)

    def _next_model_call(self) -> PendingModelCall | None:
        """The most urgent model call whose caller still waits, if it is due before every pending window (cancelled
        ones met on the way are dropped); it leaves the queue. Each window then waits in deadline order."""
        calls = self._model_calls
        while calls and calls[0].future.done():
            calls.pop(0)
        if not calls:
            return None
        held = self._held_keys
        head = next((p for p in self._pending if not p.future.done() and p.stream.owner not in held), None)
        if head is not None and urgency(head) < urgency(calls[0]):
            return None
        self._decisions += 1
        self._decided_seq = self._seq
        self._unreached = "deadline_order"
        return calls.pop(0)

    def why_waiting(self) -> list[tuple[int | None, WindowKind | ModelCallKind, float, WaitReason]]:
        """(stream id, or None for a model call; kind; seconds to deadline; reason) for each pending window and model
        call, most urgent first. The reason is the one recorded when the scheduler last decided (`WaitReason`)."""
        now = self.clock()
        busy = len(self._inflight) >= self.policy.max_inflight
        queued: list[PendingWindow | PendingModelCall] = [*self._pending, *self._model_calls]
        waiting = sorted((w for w in queued if not w.future.done()), key=urgency)
        out: list[tuple[int | None, WindowKind | ModelCallKind, float, WaitReason]] = []
        for w in waiting:
            reason: WaitReason
            if isinstance(w, PendingWindow) and w.decided == self._decisions:
                reason = w.waiting
            elif w.seq <= self._decided_seq:  # there at the last decision, which did not reach it
                reason = self._unreached if isinstance(w, PendingWindow) else "deadline_order"
            else:
                reason = "device_busy" if busy else "queued"
            stream_id = w.stream.id if isinstance(w, PendingWindow) else None
            out.append((stream_id, w.kind, w.deadline - now, reason))
        return out

    # ------------------------------------------------------------------ running
    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._inflight) < self.policy.max_inflight:
                model_call = self._next_model_call()
                if model_call is not None:
                    task = loop.create_task(self._execute_model_call(model_call))
                else:
                    planned = self._plan() if self.turns is None else self._plan_turns()
                    if planned is not None:
                        task = loop.create_task(self._execute(*planned))
                    elif self._bg_pending:
                        planned = self._plan_background()
                        if planned is None:
                            break
                        self._bg_inflight += 1
                        task = loop.create_task(self._execute(*planned, background=True))
                    else:
                        break
                self._inflight.add(task)
                task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._wake is not None:
            self._wake.set()

    async def _execute(self, call: Call, chosen: Sequence[PendingWindow], background: bool = False) -> None:
        started = self.clock()
        device_seconds: float | None = None
        try:
            results, device_seconds = await self.runner.run_timed(call)
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
            if background:
                self._bg_inflight -= 1
                self.account.background_call(call, ended, started, device_seconds, self.background)
            else:
                self._settled += self.account.live_call(
                    call, chosen, started, ended, device_seconds, self.loop_lag, lone=len(self._streams) <= 1
                )
                if self.turns is not None:
                    self._running_keys.subtract(p.stream.owner for p in chosen)
                    seconds = max(0.0, device_seconds if device_seconds is not None else ended - started)
                    self.turns.charge([(p.stream.owner, p.units) for p in chosen], seconds)
        for p, audio in zip(chosen, results, strict=True):
            if not p.future.done():
                p.future.set_result(audio)

    async def _execute_model_call(self, call: PendingModelCall) -> None:
        future = call.future

        def guarded() -> Any:
            # Read from the device thread: a cancelled future stays cancelled, so a stale read only runs a call
            # whose result is then dropped.
            return _NOT_RUN if future.cancelled() else call.fn()

        started = self.clock()
        device_seconds: float | None = None
        result: Any = _NOT_RUN
        try:
            result, device_seconds = await self.runner.run_model_call(guarded)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - the caller gets the model's failure
            if not future.done():
                future.set_exception(exc)
        finally:
            if result is not _NOT_RUN or device_seconds is None:  # it ran (or failed): it held the device
                self.account.model_call(call, started, self.clock(), device_seconds)
        if result is not _NOT_RUN and not future.done():
            future.set_result(result)

    # ------------------------------------------------------------------ load figures (admission reads these)
    def busy_ratio(self) -> float:
        """Share of the last `busy_window_s` the device spent on the scheduler's calls, codec and model calls
        (0..max_inflight)."""
        return self.account.busy_ratio(self.clock())

    def recent_misses(self, grace_s: float = 0.0) -> int:
        """Calls in the last `busy_window_s` that ended more than `grace_s` after a playing row's deadline (the
        deadline assumes no client prebuffer: a client holding 100 ms hears nothing of a 50 ms miss), less the event
        loop's stalls around it (`loop_lag`)."""
        return self.account.recent_misses(self.clock(), grace_s)

    def worst_recent_miss(self, grace_s: float = 0.0) -> float | None:
        """The worst of those: seconds its window ended after its listener ran dry (negative: a near miss)."""
        return self.account.worst_recent_miss(self.clock(), grace_s)

    def drain_headroom(self) -> float:
        """Seconds the most pressed listener keeps if the live queue drains now in deadline order at the codec's
        measured seconds per work unit (headroom.py; admission's rule 3 reads it)."""
        now = self.clock()
        return drain_headroom(self._pending, self._streams.values(), now, self.account.seconds_per_work(now))

    def min_slack(self) -> float:
        """Seconds to the most urgent deadline among live streams already playing (inf when none)."""
        now = self.clock()
        slack = [h.playback.deadline() - now for h in self._streams.values() if h.playback.heard]
        return min(slack, default=math.inf)
