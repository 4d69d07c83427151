"""Admission from measured headroom: a new stream is admitted only while every stream already admitted keeps real
time. Overload is refused (503 with Retry-After), never spread over everyone.

The LLM and the codec share one device, so both are read, and neither by a fixed count above the streams the device
is known to carry:

0. **Carried streams.** Below what the GPU is known to carry at once on its layout (`carried.py`: a stated figure per
   GPU, 16 kHz and 48 kHz streams weighed apart), arriving no faster than that figure did, a newcomer is admitted on
   the count alone, unless a deadline was missed (rule 1): the measures lag a burst's first seconds, and below that
   count there is no flood to tell a burst from. Off where nothing is known (`carried` None). Above it the rules below.
0b. **Ramp.** Streams admitted within the last `pace_window_s` are not in any measure yet, so at most `ramp_share`
   (0.5) times as many as the older streams (at least `ramp_floor`, 32) may be that recent: a burst of hundreds
   cannot slip in before the measures move. The ramp passes by itself as its oldest admission leaves the window, so
   `admit()` holds a caller it refuses for up to `max_wait_s`, first come first served, instead of answering 503.
1. **Deadline misses.** A playing stream's window finished more than `miss_grace_s` after its audio ran out (the
   scheduler's `recent_misses`, last `busy_window_s`, less the event loop's stalls: `loop_lag.py`): refuse. A negative
   grace also counts a settled stream's window ending with that little audio left: the codec keeps windows in time
   while its backlog grows, then they miss together, so near misses must brake first.
1b. **Spacing near the limit.** At most one new stream per `spacing_s` while the device is near a limit: the LLM's
   projected pace under `spacing_pace` times the pace it must keep, or, for `miss_memory_s` after rule 1 refused, the
   codec's projected share over `spacing_share` of its cap. Each newcomer moves the measures little, so newcomers
   admitted together on the same reading can slow the engine past what each was admitted on.
2. **The LLM's pace.** Tokens per second per generating request, measured (`note_tokens`, over `pace_window_s`,
   weighted by the requests generating), projected for one more request as if the step cost grew with its rows
   (conservative: a step's fixed part does not grow), counted from at least `pace_rows_floor` rows. Real time needs
   `need_tokens_per_s` (50); below that times `pace_margin`, refuse. The pace already carries the codec's share of
   the device (codec calls delay the engine's steps). The margin is twice real time because a stream's first chunks
   wait for their tokens plus a look-ahead within the audio already played, and an engine at real time leaves no
   room. `sr_pace_margin` applies while AP-BWE rows ran within `codec_window_s`: a 48 kHz window also waits for the
   next decoded audio as its right context.
3. **The codec's cost per stream.** The scheduler's call seconds (codec calls and the model calls beside them:
   speaker vectors, reference encodes, CTC alignment) per second of one open stream over `codec_window_s`, times the
   streams open now plus one: above `max_codec_share` of the device, refuse. The stream count is exact at once, so a
   burst is seen before its windows reach the device. A call's seconds run from its dispatch to its end
   (`CodecScheduler._account`): on a device shared with the engine that includes the engine's work it queued behind,
   where the deadlines feel it. The cap sits above the whole device on purpose: a stream's first-second windows cost
   several decoded tokens per kept one, so while streams ramp up the cost per stream overstates their later cost.
   The measure's variants are `codec_cost.py`'s (per second open or of audio, every live stream or the settled
   ones); `queue_headroom_s` passes the rule while the codec's queue leaves every listener that much (`headroom.py`);
   `engine_lead_pace` stops reading it while the engine leads (`engine_lead.py`, off by default).
   `codec_stretch` divides the measure by how much longer a call runs than its own work beside the engine's steps on
   the device the layout gives (device_layout.py): the caps were calibrated where a call runs alone once started.
4. **The codec's share.** The scheduler's busy ratio, projected for one more playing stream and scaled for streams
   too recent to be in it; above `max_codec_busy`, refuse. Off by default: the busy share does not tell full from not.

**Each key's share.** When a rule above refuses, the device is short, and who is refused follows each key's share
(`key_share.py`): the key over its share is refused first, a key within its share is admitted past the rule.

No rule reads slack: a stream just started holds only its first chunk (80 ms), so a slack floor would refuse every
newcomer; a stream really running dry is a miss (1). The defaults and the runs that chose them:
docs/decisions/admission-rules.md. Beside it, each a seam of its own: `first_chunks.py` (an admitted stream's first
chunk), `key_share.py`, `engine_lead.py`, `headroom.py` (rule 3's pass), `codec_cost.py`, `carried.py` (rule 0).
Longer than 500 lines because the rules are read in one order in one place, beside the waiters' queue and the view
operators read; each rule's measure is a module of its own (above)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from services.device.carried import CarriedFloor, CarriedStreams
from services.device.codec_cost import CodecCostBasis, CodecCostMeter, CodecCostStreams, CodecShareStreams
from services.device.engine_lead import ENGINE_LEAD_PACE, engine_leads
from services.device.first_chunks import FirstChunkChoices
from services.device.headroom import queue_keeps_up
from services.device.key_share import KeyShares
from services.device.llm_pace import LLMPaceMeter
from services.device.telemetry import RecentRows
from shared.metrics import ADMISSION_REFUSALS, ADMISSION_WAIT

if TYPE_CHECKING:
    from core.streaming import LatencyPreference

REALTIME_TOKENS_PER_S = 50.0  # semantic tokens per second of audio
# admit()'s longest wait for a waitable rule (TTS_ADMISSION_MAX_WAIT_MS;
# docs/decisions/admission-rules.md): a refusal costs a caller at least Retry-After's second and a new request.
DEFAULT_MAX_WAIT_S = 0.25


@dataclass(frozen=True)
class AdmissionDecision:
    admit: bool
    reason: str  # one sentence for logs, metrics and the refusal's message
    retry_after_s: int = 1
    rule: str = "admitted"  # the rule that refused (a key of `Admission.refused`), or "admitted"
    waited_s: float = 0.0  # how long `Admission.admit` held the caller before this answer
    # over_share | within_share: the asking key against its share ("" while no rule refused: shares were not read)
    key_class: str = ""


# How long rule 0 stands aside after a missed deadline: a device that misses below its figure is not the device the
# figure was stated for (carried.py), and the measures take the time a burst's first seconds need to catch up.
CARRIED_SUSPEND_S = 60.0

# Rules that pass again by themselves within a known time, with nothing else changing: spacing (the next 30 ms
# slot) and the ramp (the oldest recent admission leaving the window). `admit()` waits out those in `wait_rules`.
WAITABLE_RULES = frozenset({"spacing", "ramp"})
# What the service waits out: the ramp only. Waiting out spacing too lets a queue of callers in one per 30 ms, where
# refusing lets in the next caller to arrive 30 ms or more after the last: a queue admits faster than spacing means
# to (docs/decisions/admission-rules.md).
DEFAULT_WAIT_RULES = frozenset({"ramp"})
# Rules that refuse because the device is full (not the ramp, which refuses while the measures catch up).
CAPACITY_RULES = frozenset({"misses", "spacing", "llm_pace", "codec_cost", "codec_busy"})


class Admission:
    """Decides whether one more stream fits. `decide()` is called once per new stream (every transport), before any
    work; `note_tokens(n)` is told of engine tokens as they arrive (the LLM's pace).

    `scheduler`: the `CodecScheduler` (busy_ratio, recent_misses, active_streams: live streams only). `generating`: how
    many requests the engine steps now (`engine.stepping_requests()`: paced ones held back are not), less
    `background_generating` (long-form jobs' requests, which no measure here counts); without it the pace rule is off."""

    def __init__(
        self,
        scheduler: Any,
        *,
        clock: Callable[[], float] | None = None,
        generating: Callable[[], int] | None = None,
        need_tokens_per_s: float = REALTIME_TOKENS_PER_S,
        pace_margin: float = 2.0,
        pace_window_s: float = 1.0,
        min_pace_sample_s: float = 0.25,
        max_codec_busy: float = math.inf,
        miss_grace_s: float = -0.05,
        bucket_s: float = 0.05,
        max_codec_share: float = 1.2,
        codec_window_s: float = 5.0,
        min_codec_sample_s: float = 5.0,
        ramp_floor: int = 32,
        ramp_share: float = 0.5,
        short_schedule_share: float = 0.8,
        exact_needs_pace: float = 0.0,
        spacing_s: float = 0.03,
        spacing_pace: float = 1.1,
        spacing_share: float = 0.8,
        miss_memory_s: float = 10.0,
        pace_rows_floor: int = 32,
        sr_lead_needs_pace: float = 3.5,
        engine_lead_pace: float = ENGINE_LEAD_PACE,
        exact_after_refusal_s: float | None = None,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        wait_rules: Iterable[str] = DEFAULT_WAIT_RULES,
        codec_cost_basis: CodecCostBasis = "stream_second",
        codec_cost_streams: CodecCostStreams = "every",
        codec_share_streams: CodecShareStreams = "open",
        exact_after_ramp: bool = False,
        short_needs_pace: float = 3.0,
        unmeasured_short_streams: float = math.inf,
        sr_short_streams: float = math.inf,
        sr_pace_margin: float | None = None,
        queue_headroom_s: float | None = None,
        codec_stretch: float = 1.0,
        carried: CarriedStreams | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.clock = clock or getattr(scheduler, "clock", None) or time.monotonic
        self.generating = generating
        self.need_tokens_per_s = need_tokens_per_s
        self.pace_margin = pace_margin
        self.sr_pace_margin = sr_pace_margin  # rule 2's while 48 kHz streams are live
        self._sr_rows = RecentRows("sr", codec_window_s)
        self.queue_headroom_s = queue_headroom_s  # rule 3 passes while the codec's queue leaves this
        if not codec_stretch >= 1.0:
            raise ValueError(f"codec_stretch must be at least 1, got {codec_stretch}")
        self.codec_stretch = codec_stretch  # rule 3's measure over this (device_layout.py)
        self.pace_window_s = pace_window_s
        self.max_codec_busy = max_codec_busy
        self.miss_grace_s = miss_grace_s
        self.max_codec_share = max_codec_share
        self.ramp_floor = ramp_floor
        self.ramp_share = ramp_share
        self.spacing_s, self.spacing_pace, self.spacing_share = spacing_s, spacing_pace, spacing_share
        self.miss_memory_s = miss_memory_s
        self.pace_rows_floor = pace_rows_floor
        self.engine_lead_pace = engine_lead_pace
        self.first_chunk_choices = FirstChunkChoices(
            self,
            short_schedule_share=short_schedule_share,
            exact_needs_pace=exact_needs_pace,
            sr_lead_needs_pace=sr_lead_needs_pace,
            exact_after_refusal_s=exact_after_refusal_s,
            exact_after_ramp=exact_after_ramp,
            short_needs_pace=short_needs_pace,
            unmeasured_short_streams=unmeasured_short_streams,
            sr_short_streams=sr_short_streams,
        )
        self.max_wait_s = max(0.0, max_wait_s)
        self.wait_rules = frozenset(wait_rules)  # the rules admit() waits out (others refuse at once)
        if not self.wait_rules <= WAITABLE_RULES:
            raise ValueError(
                f"wait_rules: only {sorted(WAITABLE_RULES)} pass by themselves, got "
                f"{sorted(self.wait_rules - WAITABLE_RULES)}"
            )
        # admit()'s wait (a virtual one in tests)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._queue_lock: asyncio.Lock | None = None
        self._queue_loop: asyncio.AbstractEventLoop | None = None
        self.waited = 0  # streams admitted after waiting (admit())
        self._last_miss_refusal = -math.inf  # when rule 1 last refused (rule 1b's memory)
        self.last_capacity_refusal = -math.inf  # when a rule of CAPACITY_RULES last refused
        self.last_ramp_hold = -math.inf  # when the ramp last refused a caller or held one it then admitted
        self.codec = CodecCostMeter(
            scheduler,
            window_s=codec_window_s,
            min_sample_s=min_codec_sample_s,
            basis=codec_cost_basis,
            streams=codec_cost_streams,
            share_streams=codec_share_streams,
            tokens_per_s=need_tokens_per_s,
        )
        self.llm = LLMPaceMeter(pace_window_s, min_pace_sample_s, bucket_s)  # rule 2's measure
        self.admitted = 0
        self._admitted_at: deque[float] = deque()  # admissions whose load the measures may not show yet
        self.refused: dict[str, int] = {}
        # (rule, key class) -> refusals; and streams of a key within its share admitted past a refusing rule
        self.refused_by_class: Counter[tuple[str, str]] = Counter()
        self.within_share_admitted = 0
        self.shares = KeyShares(self.clock, self.pace_window_s)
        self.background_generating = 0  # long-form jobs' requests generating now: in no measure here
        self.carried = None if carried is None else CarriedFloor(carried, self.clock)  # rule 0

    def _live_generating(self) -> int:
        return max(0, self.generating() - self.background_generating) if self.generating is not None else 0

    # ---------------------------------------------------------------- the LLM's pace
    def _advance(self) -> float:
        """Bring both measures (the LLM's pace, the codec's cost) up to now; return now."""
        now = self.clock()
        self.llm.advance(now, self._live_generating())
        self.codec.advance(now)
        return now

    @property
    def codec_cost_basis(self) -> CodecCostBasis:
        return self.codec.basis

    @property
    def codec_cost_streams(self) -> CodecCostStreams:
        return self.codec.streams

    def sr_live(self) -> bool:  # 48 kHz streams are live: AP-BWE rows ran within `codec_window_s`
        return self._sr_rows.within(self.scheduler.stats, self.clock())

    def share_streams(self) -> int:
        """The streams rule 3 multiplies the codec's cost by (`codec_share_streams`: open, or playing)."""
        return self.codec.streams_counted()

    def codec_cost(self) -> float | None:
        """Measured codec device seconds per second of one open stream or of audio decoded, of every live stream
        or the settled ones (codec_cost.py), over the last codec_window_s (None: too little measured)."""
        cost = self.codec.cost_at(self._advance())
        return None if cost is None else cost / self.codec_stretch

    def note_tokens(self, count: int) -> None:
        if count <= 0:
            return
        self.llm.note_tokens(self._advance(), count)

    def pace(self) -> float | None:
        """Measured tokens per second per generating request over the last window (None: too little measured)."""
        return self.llm.pace_at(self._advance())

    def engine_pace(self) -> float | None:
        """`pace()` where the engine's generating requests are known; None without them (the pace rule is off)."""
        return self.pace() if self.generating is not None else None

    # ---------------------------------------------------------------- the rule
    def decide(self, key: str | None = None, *, super_resolved: bool = True) -> AdmissionDecision:
        """Admit one more stream of `key` now or refuse it (counted either way), never waiting: what `admit()` does
        for a caller that cannot wait."""
        return self._settle(self._judge(key, super_resolved)[0], 0.0, key, super_resolved)

    async def admit(
        self, max_wait_s: float | None = None, key: str | None = None, *, super_resolved: bool = True
    ) -> AdmissionDecision:
        """Admit one more stream, waiting up to `max_wait_s` (default `self.max_wait_s`) while only a rule in
        `wait_rules` refuses (the ramp: it passes again by itself when the oldest recent admission leaves its window),
        in arrival order; refuse at once on any other rule, or when the wait would run past the bound. Why: a flood's
        callers past the ramp would get 503 and Retry-After 1 s where a wait of a few hundred ms lets them in. A caller
        cancelled while waiting leaves the queue and is neither admitted nor counted. `key`: the API key asking
        (None: keyless, counted as one key), for its share. `super_resolved`: the stream goes through AP-BWE (rule 0
        weighs it; True when unknown, the heavier kind)."""
        limit = self.max_wait_s if max_wait_s is None else max(0.0, max_wait_s)
        started = self.clock()
        queue = self._queue()
        decision, wait = self._judge(key, super_resolved)
        # Nobody waiting: answer at once when no wait could help. A key let in past a rule by its share does not queue
        # behind the over-share key's waiters.
        if (
            decision.key_class == "within_share"
            and decision.admit
            or not queue.locked()
            and (decision.admit or wait is None or decision.rule not in self.wait_rules or wait > limit)
        ):
            return self._settle(decision, 0.0, key, super_resolved)
        async with queue:  # FIFO: one waiter at a time, the earliest first
            while True:
                decision, wait = self._judge(key, super_resolved)
                waited = self.clock() - started
                if (
                    decision.admit
                    or wait is None
                    or decision.rule not in self.wait_rules
                    or waited + wait > limit
                ):
                    return self._settle(decision, waited, key, super_resolved)
                await self.sleep(wait)

    def has_headroom(self) -> bool:
        """Whether the device's rules would admit one more stream now (no key's share read, nothing counted): what a
        container's input gate reads to take inputs again (services/deployment/input_gate.py)."""
        remembered = (
            self._last_miss_refusal
        )  # a look, not a refusal: spacing's memory of misses stays as it was
        try:
            return self._rules()[0].admit
        finally:
            self._last_miss_refusal = remembered

    def _queue(self) -> asyncio.Lock:
        """The waiters' queue on the running loop (a lock is bound to one loop; tests run each case on its own)."""
        loop = asyncio.get_running_loop()
        if self._queue_loop is not loop:
            self._queue_lock, self._queue_loop = asyncio.Lock(), loop
        assert self._queue_lock is not None
        return self._queue_lock

    def _judge(self, key: str | None, super_resolved: bool = True) -> tuple[AdmissionDecision, float | None]:
        """The rules, then the asking key's share when one refuses (module doc, "Each key's share"), without
        counting: the decision, and for a waitable refusal the seconds until its rule may pass (None otherwise)."""
        decision, wait = self._rules(super_resolved)
        if decision.admit:
            return decision, None
        # a test's stand-in may not count per key
        by_owner = getattr(self.scheduler, "streams_by_owner", None)
        over, others_over = self.shares.judge(key, by_owner() if by_owner is not None else {})
        if not over and others_over:
            return AdmissionDecision(
                True, f"admitted within its share past {decision.rule}", key_class="within_share"
            ), None
        return replace(decision, key_class="over_share" if over else "within_share"), wait

    def _rules(self, super_resolved: bool = True) -> tuple[AdmissionDecision, float | None]:
        """The device's rules, in order, for any key (module doc); `super_resolved`: the newcomer's kind (rule 0)."""
        misses = self.scheduler.recent_misses(self.miss_grace_s)
        if misses:
            self._last_miss_refusal = self.clock()
            if self.carried is not None:
                self.carried.suspend(CARRIED_SUSPEND_S)
            return _refusal(
                "misses", _miss_reason(self.scheduler.worst_recent_miss(self.miss_grace_s)), 2
            ), None
        if self.carried is not None and self.carried.fits(*self._live_by_kind(), super_resolved):
            return AdmissionDecision(True, "admitted within the streams the device is known to carry"), None
        now = self.clock()
        while self._admitted_at and self._admitted_at[0] < now - self.pace_window_s:
            self._admitted_at.popleft()
        recent = len(self._admitted_at)  # admitted within the measuring window: not yet in the measures
        streams = self.scheduler.active_streams
        if recent >= max(self.ramp_floor, self.ramp_share * (streams - recent)):
            return _refusal(
                "ramp",
                f"ramping up: {recent} streams admitted in the last {self.pace_window_s:g} s "
                "are not in the measures yet",
                1,
            ), self._admitted_at[0] + self.pace_window_s - now + 1e-6
        generating = self._live_generating()
        pace = self.engine_pace()
        margin = self.pace_margin
        sr_live = self.sr_live()
        if self.sr_pace_margin is not None and sr_live:
            margin = self.sr_pace_margin
        projected = math.inf
        if pace is not None and generating > 0:
            # One more request as if each step's cost grew in proportion to its rows, counted from at least
            # `pace_rows_floor` rows: below that a step is mostly its fixed part (H100: 3.0 ms at 1 row, 6.5 at 64),
            # and a second request would otherwise seem to halve the first's pace on an idle GPU.
            rows = max(generating, self.pace_rows_floor)
            projected = pace * rows / (rows + 1)
            if projected < self.need_tokens_per_s * margin:
                return _refusal(
                    "llm_pace",
                    f"overloaded: the LLM gives {pace:.0f} tokens/s per stream to {generating} streams; one "
                    f"more would leave ~{projected:.0f}, real time needs {self.need_tokens_per_s:.0f} with margin",
                    1,
                ), None
        lead = engine_leads(pace, self.need_tokens_per_s, self.engine_lead_pace)  # engine_lead.py
        cost = None if lead else self.codec_cost()
        counted = self.share_streams() if cost is not None else streams
        share = None if cost is None else cost * (counted + 1)  # the codec's share with one more stream
        over = share is not None and share > self.max_codec_share
        if cost is not None and over and not queue_keeps_up(self.scheduler, self.queue_headroom_s, sr_live):
            return _refusal(
                "codec_cost",
                f"overloaded: {counted} streams hold the codec ~{cost * counted:.0%} of "
                f"the device; one more would pass {self.max_codec_share:.0%}",
                1,
            ), None
        near_pace = projected < self.spacing_pace * self.need_tokens_per_s * margin
        after_miss = (
            share is not None
            and share > self.spacing_share * self.max_codec_share
            and now - self._last_miss_refusal < self.miss_memory_s
        )
        if (near_pace or after_miss) and self._admitted_at and now - self._admitted_at[-1] < self.spacing_s:
            limit = "the LLM's pace" if near_pace else "the codec, after a missed deadline"
            return _refusal(
                "spacing", f"near capacity ({limit}): one new stream per {self.spacing_s * 1000:.0f} ms", 1
            ), self._admitted_at[-1] + self.spacing_s - now + 1e-6
        busy = self.scheduler.busy_ratio()
        # Streams admitted within the window are not in the measure yet; at most they double it (at start-up every
        # stream is recent and the measure is their first windows alone).
        if busy * min(2.0, (streams + 1) / max(1, streams - recent)) > self.max_codec_busy:
            return _refusal(
                "codec_busy", f"overloaded: the codec holds the device {busy:.0%} of the time", 1
            ), None
        return AdmissionDecision(True, "admitted"), None

    def _live_by_kind(self) -> tuple[int, int]:
        """Open live streams at 16 kHz and through AP-BWE (a test's stand-in scheduler that does not tell: every one
        counted as the heavier kind)."""
        by_kind = getattr(self.scheduler, "live_streams_by_kind", None)
        return by_kind() if by_kind is not None else (0, self.scheduler.active_streams)

    def _settle(
        self, decision: AdmissionDecision, waited_s: float, key: str | None, super_resolved: bool = True
    ) -> AdmissionDecision:
        """Count one final answer (an admission, or a refusal by its rule and key class) with the time its caller
        waited; a refusal also counts toward its key's share."""
        if decision.admit:
            self.admitted += 1
            if self.carried is not None:
                self.carried.note_admitted(super_resolved)
            self._admitted_at.append(self.clock())
            self.within_share_admitted += decision.key_class == "within_share"
            self.waited += waited_s > 0
            if waited_s > 0:  # only the ramp is waited out (`wait_rules`)
                self.last_ramp_hold = self.clock()
            ADMISSION_WAIT.observe(waited_s)
        else:
            self.refused[decision.rule] = self.refused.get(decision.rule, 0) + 1
            if decision.rule in CAPACITY_RULES:
                self.last_capacity_refusal = self.clock()
            elif decision.rule == "ramp":
                self.last_ramp_hold = self.clock()
            self.refused_by_class[(decision.rule, decision.key_class)] += 1
            ADMISSION_REFUSALS.labels(rule=decision.rule, key_class=decision.key_class).inc()
            self.shares.note_refusal(key)
        return replace(decision, waited_s=waited_s) if waited_s else decision

    # ---------------------------------------------------------------- an admitted stream's first chunk
    def first_chunk_schedule(
        self, requested: LatencyPreference, *, reproducible: bool = False
    ) -> LatencyPreference:
        """The first-chunk schedule an admitted stream gets: the one asked for, or `exact` under load
        (`first_chunks.py`)."""
        return self.first_chunk_choices.schedule(requested, reproducible=reproducible)

    def sr_lead(self, *, reproducible: bool = False) -> bool:
        """Whether a new 48 kHz stream's first AP-BWE window takes the lead (`first_chunks.py`)."""
        return self.first_chunk_choices.sr_lead(reproducible=reproducible)

    @property
    def first_chunks(self) -> Counter[tuple[str, str]]:
        return self.first_chunk_choices.first_chunks

    @property
    def long_first_chunks(self) -> int:
        return self.first_chunk_choices.long_first_chunks

    @property
    def sr_leads(self) -> Counter[str]:
        return self.first_chunk_choices.sr_leads

    def view(self) -> dict[str, Any]:
        """What admission last measured, for operators (metrics, the debug route): read-only, so looking never moves
        a measure (`codec_cost()` and `pace()` integrate up to now; this reads their windows as they stand)."""
        now = self.clock()
        cost, pace = self.codec.cost_at(now), self.llm.pace_at(now)
        cost = None if cost is None else cost / self.codec_stretch
        streams = self.share_streams()
        drained = None if self.queue_headroom_s is None else self.scheduler.drain_headroom()
        return {
            "codec_cost": cost,
            "codec_cost_basis": self.codec_cost_basis,
            "codec_cost_streams": self.codec_cost_streams,
            "codec_share_streams": self.codec.share_streams,
            "codec_share_with_one_more": None if cost is None else cost * (streams + 1),
            "max_codec_share": self.max_codec_share,
            "codec_stretch": self.codec_stretch,
            # rule 3's pass (None: off) and what the codec's queue leaves now (None: nothing measured, nobody heard)
            "queue_headroom_s": self.queue_headroom_s,
            "drain_headroom_s": drained if drained is not None and math.isfinite(drained) else None,
            "llm_tokens_per_s_per_request": pace,
            "need_tokens_per_s": self.need_tokens_per_s,
            "recent_misses": self.scheduler.recent_misses(self.miss_grace_s),
            "miss_grace_s": self.miss_grace_s,
            "admitted_recently": sum(1 for t in self._admitted_at if t >= now - self.pace_window_s),
            "admitted": self.admitted,
            # rule 0: the live streams' share of what the device is known to carry (None: nothing known)
            "carried_load": None
            if self.carried is None
            else self.carried.carried.load(*self._live_by_kind()),
            "refused": dict(self.refused),
            "refused_by_key_class": {f"{rule}/{cls}": n for (rule, cls), n in self.refused_by_class.items()},
            "within_share_admitted": self.within_share_admitted,
            "keys_refused_recently": self.shares.keys_refused_recently(),
            "first_chunks": {
                f"{schedule}/{reason}": n for (schedule, reason), n in self.first_chunks.items()
            },
            "sr_leads": dict(self.sr_leads),
        }


def _miss_reason(worst_s: float | None) -> str:
    """Rule 1's refusal, with how late the worst window it read was (what a client or a failed test shows)."""
    reason = "overloaded: a playing stream missed its audio deadline in the last seconds"
    if worst_s is None:
        return reason
    if worst_s > 0:
        return f"{reason} (a window ended {1000 * worst_s:.0f} ms after its audio ran out)"
    return f"{reason} (a near miss: a window ended with {-1000 * worst_s:.0f} ms of audio left)"


def _refusal(rule: str, reason: str, retry_after_s: int) -> AdmissionDecision:
    return AdmissionDecision(False, reason, max(1, math.ceil(retry_after_s)), rule)
