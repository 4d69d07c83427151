"""What an admitted stream's first chunk is: the schedule it asked for or the exact one, and at 48 kHz whether its
first AP-BWE window takes the lead. Chosen from admission's measures (`Admission`: the engine's pace, the codec's cost
per stream, the streams open, when the device last refused), after the stream is admitted; admission's rules decide
whether it is admitted at all.

**The exact first chunk under load** (`FirstChunkChoices.schedule`). A short first-second schedule (balanced, lowest)
decodes about 3.5 tokens per kept one for a stream's first second, the exact schedule about 1.5, and a busy device
pays that on every newcomer. So once the codec's measured cost per stream times the streams open plus one passes
`short_schedule_share` of the device, and the engine does not lead (`engine_lead.py`), a newcomer gets the exact
schedule: its first audio comes later, and the device carries more streams in real time. With `exact_after_refusal_s`
set (the `own_seconds` and later profiles), also while a capacity rule refused within that many seconds, so a burst
the device carries keeps the short chunk and newcomers get the exact one once the device is full. With
`exact_after_ramp` as well, also within that many seconds of the ramp (rule 0) refusing or holding a caller: arrivals
faster than the ramp lets in get the exact first chunk before the device refuses anyone.

**The engine's pace.** A short first-second schedule's first full-look-ahead chunk waits for its tokens plus a full
look-ahead within the one second already played, so a newcomer keeps it only while the engine gives each request
`short_needs_pace` (3x) real time or more (or is not measured yet); below that it gets the exact schedule
(`llm_behind`). The exact schedule's later chunks need about the chunk growth times real time, and a stream whose
engine falls short of that has its chunks cut to what has its look-ahead (`TTS_STREAM_CUT_RUNWAY_MS`,
core/streaming.py `DecodePlanner.cut`), so the exact schedule needs no pace of its own (`exact_needs_pace`, 0). With
`unmeasured_short_streams` set (the `bursts` profile: 32), newcomers past that many open streams get the exact
schedule before the codec is measured at all (`unmeasured_busy`): a flood from idle would otherwise put every early
newcomer on the short chunk at once. A `reproducible` stream (a seed) gets what it asked for. With `sr_short_streams`
set (off by default; for the benches), past that many open streams while 48 kHz streams are live (AP-BWE rows ran
within the codec's window) a newcomer gets the exact schedule and no lead window (`sr_busy`): in a 48 kHz burst the
short chunk's second window and the lead's 80 ms are the first to miss, and a miss refuses the arrivals behind them.

**The 48 kHz lead window** (`FirstChunkChoices.sr_lead`). A new 48 kHz stream's first AP-BWE window may take its right
context from the decode schedule's held overlap (core.sr_planner): its first audio then leaves with the first decoded
chunk (token 16 instead of 28, and a decode call sooner), holding 80 ms instead of 265. Only while the engine gives
each request `sr_lead_needs_pace` (3.5) x real time or more, or is not measured yet: the next piece needs 8 more tokens
within those 80 ms of playback (46 ms at 3.5x) plus its decode and AP-BWE calls, and a slower engine plays the lead
dry at the scheduler's deadlines, whose misses refuse newcomers. A `reproducible` stream takes it at any pace.
The runs that chose these: docs/decisions/cut-runway.md, docs/decisions/admission-profiles.md and docs/benchmarks.md
("48 kHz first audio and the lead window").
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from services.device.engine_lead import engine_leads
from shared.metrics import FIRST_CHUNK_SCHEDULES

if TYPE_CHECKING:
    from core.streaming import LatencyPreference

logger = logging.getLogger("services.device.first_chunks")


class AdmissionMeasures(Protocol):
    """What the choices read of `Admission` (services/device/admission.py)."""

    scheduler: Any  # the CodecScheduler: active_streams
    clock: Callable[[], float]
    need_tokens_per_s: float
    engine_lead_pace: float
    last_capacity_refusal: float  # when a capacity rule last refused (clock seconds)
    last_ramp_hold: float  # when the ramp last refused a caller or held one it admitted (clock seconds)

    def engine_pace(self) -> float | None: ...

    def codec_cost(self) -> float | None: ...

    def share_streams(self) -> int:  # the streams the codec's cost is multiplied by (open, or playing)
        ...

    def sr_live(self) -> bool:  # 48 kHz streams are live: AP-BWE rows ran within the codec's window
        ...

    @property
    def codec_cost_basis(self) -> str:  # what `codec_cost()` is per: stream_second or audio_second
        ...


class FirstChunkChoices:
    """The first-chunk and lead-window choices, counted: `first_chunks` ((schedule given, reason) -> count),
    `long_first_chunks` (streams that asked for a short first chunk and got the exact one), `sr_leads` (taken,
    llm_slow, sr_busy, seeded)."""

    def __init__(
        self,
        measures: AdmissionMeasures,
        *,
        short_schedule_share: float,
        exact_needs_pace: float,
        sr_lead_needs_pace: float,
        exact_after_refusal_s: float | None,
        short_needs_pace: float,
        unmeasured_short_streams: float,
        exact_after_ramp: bool = False,
        sr_short_streams: float = math.inf,
    ) -> None:
        self.measures = measures
        self.sr_short_streams = sr_short_streams
        self.short_needs_pace = short_needs_pace
        self.unmeasured_short_streams = unmeasured_short_streams
        self.short_schedule_share = short_schedule_share
        self.exact_needs_pace = exact_needs_pace
        self.sr_lead_needs_pace = sr_lead_needs_pace
        self.exact_after_refusal_s = exact_after_refusal_s
        self.exact_after_ramp = exact_after_ramp
        # Reasons: requested (asked for exact), engine_ahead (the engine leads), unmeasured (no codec cost yet),
        # unmeasured_busy (switched to exact: none measured, unmeasured_short_streams open), codec_light (under the
        # share), llm_slow (kept: the engine is under exact_needs_pace), codec_busy (switched to exact: over the
        # share), llm_behind (switched to exact: the engine is under short_needs_pace), refusing (switched to exact:
        # a capacity rule refused within exact_after_refusal_s), sr_busy (switched to exact: sr_short_streams open
        # while 48 kHz streams are live), seeded.
        self.first_chunks: Counter[tuple[str, str]] = Counter()
        self.long_first_chunks = 0
        self.sr_leads: Counter[str] = Counter()

    def schedule(self, requested: LatencyPreference, *, reproducible: bool = False) -> LatencyPreference:
        schedule, reason = (requested, "seeded") if reproducible else self._choose(requested)
        self.first_chunks[(schedule, reason)] += 1
        FIRST_CHUNK_SCHEDULES.labels(schedule=schedule, reason=reason).inc()
        return schedule

    def _choose(self, requested: LatencyPreference) -> tuple[LatencyPreference, str]:
        if requested == "exact":
            return requested, "requested"
        m = self.measures
        if self._sr_busy():
            self.long_first_chunks += 1
            return "exact", "sr_busy"
        pace = m.engine_pace()
        if engine_leads(pace, m.need_tokens_per_s, m.engine_lead_pace):
            return requested, "engine_ahead"
        cost = m.codec_cost()
        streams = m.scheduler.active_streams
        if cost is None:
            if streams < self.unmeasured_short_streams:
                return requested, "unmeasured"
            self.long_first_chunks += 1
            return "exact", "unmeasured_busy"
        counted = m.share_streams()  # what rule 3 multiplies the cost by: open, or playing
        share = cost * (counted + 1)
        last = (
            max(m.last_capacity_refusal, m.last_ramp_hold)
            if self.exact_after_ramp
            else m.last_capacity_refusal
        )
        refusing = self.exact_after_refusal_s is not None and m.clock() - last <= self.exact_after_refusal_s
        behind = pace is not None and pace < self.short_needs_pace * m.need_tokens_per_s
        if share <= self.short_schedule_share and not behind:
            if not refusing:
                return requested, "codec_light"
            reason = "refusing"
        else:
            reason = "codec_busy" if share > self.short_schedule_share else "llm_behind"
        if pace is None or pace < self.exact_needs_pace * m.need_tokens_per_s:
            return requested, "llm_slow"
        self.long_first_chunks += 1
        logger.info(
            "first chunk: exact instead of %s (%s): codec %.4f device s per %s x (%d streams + 1) = "
            "%.2f of the device; the LLM gives %.0f tokens/s per generating request",
            *(requested, reason, cost, m.codec_cost_basis, counted, share, pace),
        )
        return "exact", reason

    def _sr_busy(self) -> bool:
        """`sr_short_streams` streams are open while 48 kHz streams are live (AP-BWE rows ran lately)."""
        m = self.measures
        return m.scheduler.active_streams >= self.sr_short_streams and m.sr_live()

    def sr_lead(self, *, reproducible: bool = False) -> bool:
        m = self.measures
        if reproducible:
            reason = "seeded"
        elif self._sr_busy():
            reason = "sr_busy"
        else:
            pace = m.engine_pace()
            reason = (
                "taken"
                if pace is None or pace >= self.sr_lead_needs_pace * m.need_tokens_per_s
                else "llm_slow"
            )
        self.sr_leads[reason] += 1
        return reason in ("seeded", "taken")
