"""One simulated load: streams arrive, ask the real `Admission`, generate on a modelled engine and have their
windows run by the real `CodecScheduler` on a modelled device, all on a virtual clock.

What is modelled (and nothing else):
- one device (`DeviceTimeline`): engine steps (every generating request one id per step; newcomers' prefill in
  the step they join) and codec calls, one at a time, first come first served; or (`device_sharing="sliced"`,
  `SlicedDeviceTimeline`) the engine's and the codec's calls each at half speed while both have work; or
  (`"overlapped"`, `OverlappedDeviceTimeline`) each at 1 / (2 - the cost model's `device_overlap`) while both have work,
  and each engine step's Python (`engine_host`) on API process 0's GIL first, as the engine core runs in that process;
- the API processes: each stream belongs to one (round robin); a process turns its streams' ids into audio on one
  GIL at `host_ms.per_audio_second` (charged per token as ids arrive), so ids become usable only when their
  process got to them; and takes each request (`host_ms.per_request`, on the same GIL) before admission sees it;
- each stream: `preamble_ids` ids before its first semantic id, then ~`audio_seconds` of semantic tokens (50 per
  second) and a stop id; its ids go, as they become usable, to the service's own planners (`DecodePlanner` with the
  service's schedule; at 48 kHz `SRPlanner` over the decoded chunks); a window is submitted as soon as planned, audio
  goes out in order, each piece told to the stream's `PlaybackClock.note_audio` and to a client playing it back
  (`StreamCadence`, 100 ms prebuffer);
- long-form jobs beside them (`background_jobs`): each one engine row of `background_audio_s` of speech (the engine
  model has no priorities: it steps every row), decoded with the exact schedule on a background codec stream
  (services/device/background.py), windows awaited in order as a job's synthesis does; admission neither counts
  nor paces them. A job ends with the live load (or, with no live stream, when its speech is decoded).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bench.sim.breakdown import Ledger, breakdown
from bench.sim.engine_pace import PacedStepLoop
from bench.sim.goals import Arrivals
from bench.sim.inprocess_engine import EngineOnServingGIL
from bench.sim.overlapped_device import OverlappedDeviceTimeline
from bench.sim.sliced_device import DEVICE_SHARINGS, DeviceSharing, SlicedDeviceTimeline
from bench.sim.windows import HOP, SR_CONTEXT, SR_GRID, SR_MAX_BLOCK, SR_MIN_BLOCK
from bench.standin.cost_model import (
    CostModel,
    CostModelRunner,
    DeviceTimeline,
    StepLoop,
    delta_due,
)
from core.llm.engine_pace import EnginePace
from core.sr_planner import SRPlanner, SRWindow
from core.streaming import DecodePlanner, LatencyPreference, PlannedWindow, StreamingConfig
from core.tokens import SEMANTIC_CODEBOOK_SIZE as SEMANTIC_CODEBOOK
from services.device.admission import Admission
from services.device.admission_profiles import ADMISSION_PROFILES
from services.device.background import BackgroundPolicy
from services.device.calls import CALL_SECONDS_READS, CallSecondsRead, SchedulerPolicy
from services.device.carried import known_carried
from services.device.device_layout import profile_on
from services.device.playback import PlaybackClock
from services.device.scheduler import CodecScheduler, StreamHandle
from services.device.windows import DecodeWindow
from services.usage.flow_monitor import StreamCadence
from shared.settings import Settings

TOKENS_PER_SECOND = 50
# Admission settings under which every stream is admitted (to see what the device carries, or what overload does).
ADMISSION_OFF: dict[str, Any] = {
    "pace_margin": 0.0,
    "max_codec_busy": float("inf"),
    "miss_grace_s": float("inf"),
    "max_codec_share": float("inf"),
    "ramp_floor": 10**9,
    "max_wait_s": 0.0,
}


def served_streaming(**fields: Any) -> StreamingConfig:
    """The service's chunk schedule (TTS_STREAM_*), with these StreamingConfig fields over it."""
    return replace(StreamingConfig.from_settings(Settings()), **fields)


@dataclass(frozen=True)
class SimConfig:
    model: CostModel
    streams: int
    sample_rate: int = 16_000
    arrive_within_s: float = 10.0
    seed: int = 0
    audio_seconds: float = 10.0  # each stream speaks about this much (uniform +-20%)
    # ids before the first semantic id: 1 for a voice whose 32 global tokens are stored (global_tokens and cloned voices,
    # and every built-in style voice once pinned: TTS_PIN_VOICES_AT_START); 40 when the model must emit them first
    preamble_ids: int = 1
    prompt_tokens: int = 200  # prefill per request (~10 s of text plus the prompt's frame)
    api_processes: int = 1
    # ids per delta after the first, as vLLM hands them out (stream_interval; the rest at the end): None, the
    # service's own (TTS_LLM_STREAM_INTERVAL). A stream's planner sees its ids only as whole deltas.
    stream_interval: int | None = None
    prebuffer_s: float = 0.1
    latency: LatencyPreference = "balanced"
    adaptive_schedule: bool = (
        True  # Admission.first_chunk_schedule picks each newcomer's schedule, as the service does
    )
    sr_lead: bool = True  # at 48 kHz, a lead window where Admission.sr_lead allows it, as the service does
    shape_true_ends: bool = (
        True  # at 48 kHz, true ends shaped to a bucket's length (the policy's sr_end_lengths)
    )
    streaming: StreamingConfig | None = (
        None  # the decode schedule before `latency` applies (None: the service's)
    )
    admission: dict[str, Any] = field(default_factory=dict)  # keyword settings for Admission
    policy: SchedulerPolicy = field(default_factory=SchedulerPolicy)
    background_jobs: int = 0  # long-form jobs running beside the live streams from the start
    background_audio_s: float = 600.0  # speech per job
    background: BackgroundPolicy = field(default_factory=BackgroundPolicy)
    # What admission reads as a codec call's seconds: from dispatch to end, the wait behind the engine's step
    # included (as the service measures), or the call's own device time (`CostModelRunner.run_timed`).
    call_seconds_read: CallSecondsRead = "dispatch_to_end"
    # How the engine and the codec share the device: one call at a time (`DeviceTimeline`), by time slices, about
    # half each while both have work, as a GPU shares itself between two processes (`SlicedDeviceTimeline`), or
    # overlapping as two streams of one process's context (`OverlappedDeviceTimeline`, the model's `device_overlap`).
    device_sharing: DeviceSharing = "serial"
    # None: the engine steps every generating request, as vLLM does; else each live one is held to its pace line, as
    # the service does with TTS_LLM_PACE_LEAD_IDS (core/llm/engine_pace.py)
    engine_pace: EnginePace | None = None

    def __post_init__(self) -> None:
        if self.sample_rate not in (16_000, 48_000):
            raise ValueError("sample_rate must be 16000 or 48000")
        if self.streams < 0 or self.streams + self.background_jobs < 1 or self.api_processes < 1:
            raise ValueError("a live stream or a background job, and api_processes >= 1")
        if self.stream_interval is not None and self.stream_interval < 1:
            raise ValueError("stream_interval must be >= 1")
        if self.call_seconds_read not in CALL_SECONDS_READS:
            raise ValueError(f"call_seconds_read must be one of {CALL_SECONDS_READS}")
        if self.device_sharing not in DEVICE_SHARINGS:
            raise ValueError(f"device_sharing must be one of {DEVICE_SHARINGS}")


def device_for(sharing: DeviceSharing, model: CostModel) -> DeviceTimeline | SlicedDeviceTimeline:
    """The modelled device of a sharing (`SimConfig.device_sharing`)."""
    if sharing == "serial":
        return DeviceTimeline()
    if sharing == "sliced":
        return SlicedDeviceTimeline()
    return OverlappedDeviceTimeline(overlap=model.device_overlap)


class SimRow:
    """One generating request: ids made by the engine, and ids its API process has handled (usable)."""

    __slots__ = ("prompt_tokens", "total", "generated", "handed", "usable", "process", "_need", "_waiter")

    def __init__(self, prompt_tokens: int, total: int, process: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.total = total
        self.generated = 0
        self.handed = (
            0  # ids the engine has handed out (in deltas): its API process is handling or has handled them
        )
        self.usable = 0
        self.process = process
        self._need = 0
        self._waiter: asyncio.Future[None] | None = None

    def step(self) -> bool:
        self.generated += 1
        return self.generated >= self.total

    def delta(self, interval: int) -> int:
        """The ids the engine hands out after this step (`delta_due`: vLLM's stream_interval); 0 between deltas."""
        if not delta_due(self.generated, self.handed, self.total, interval):
            return 0
        count, self.handed = self.generated - self.handed, self.generated
        return count

    def deliver(self, count: int) -> None:
        self.usable += count
        if self._waiter is not None and self.usable >= self._need and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_usable(self, ids: int) -> None:
        if self.usable >= ids:
            return
        self._need = ids
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter


@dataclass
class StreamResult:
    arrival: float
    admitted: bool
    reason: str = ""
    first_audio: float | None = None
    # When its first decode window was planned: its ids were usable (admission, prefill, engine steps, the API
    # process's handling behind it); first audio waits for the codec's calls after it
    first_window: float | None = None
    end: float | None = None
    audio_seconds: float = 0.0
    underruns: int = 0
    underrun_seconds: float = 0.0
    generation_seconds: float | None = None


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.rng = np.random.default_rng(config.seed)
        self.device = device_for(config.device_sharing, config.model)
        self.runner = CostModelRunner(
            config.model, self.device, noise=False, call_seconds_read=config.call_seconds_read
        )
        self.ledger = Ledger(config.model)  # what binds, term by term (bench/sim/breakdown.py)
        self.cut_windows = 0  # decode windows cut short for a listener about to run dry (DecodePlanner.cut)
        self.device.observer = self.ledger.observe
        self._first_marked: set[tuple[str, int]] = (
            set()
        )  # (kind, id of an open handle): its first window marked
        self.loop = asyncio.get_running_loop()
        self.scheduler = CodecScheduler(
            self.runner, config.policy, clock=self.loop.time, background=config.background
        )
        self.job_rows: set[SimRow] = set()  # background rows: their ids are never noted to admission
        settings = Settings()
        # In the layout the overlapped device models the engine core runs in API process 0: its steps' Python holds
        # that process's GIL (bench/sim/inprocess_engine.py).
        engine_device = (
            EngineOnServingGIL(self.device, config.model, lambda cost: self._hold_host(0, cost))
            if config.device_sharing == "overlapped"
            else self.device
        )
        if config.engine_pace is None:
            self.engine = StepLoop(
                config.model, engine_device, on_step=self._on_step, max_running=settings.llm.max_num_seqs
            )
        else:
            self.engine = PacedStepLoop(
                config.model,
                engine_device,
                config.engine_pace,
                exempt=lambda row: row in self.job_rows,
                on_step=self._on_step,
                max_running=settings.llm.max_num_seqs,
            )
        self.admission = Admission(
            self.scheduler, clock=self.loop.time, generating=lambda: self.engine.active, **config.admission
        )
        self.gil_free = [0.0] * config.api_processes
        self.host_busy = [0.0] * config.api_processes
        # The service's own schedule (shared/settings/ stream_*, read as the pipeline reads it): what ships.
        base = config.streaming or StreamingConfig.from_settings(settings)
        self.base_config = base
        self.stream_config = base.for_latency(config.latency)
        self.stream_interval = config.stream_interval or settings.llm.llm_stream_interval
        self.results: list[StreamResult] = []
        self.started = self.loop.time()
        self.job_audio_s = 0.0  # audio the jobs' decoded windows kept

    # ---- the API processes: a delta's ids become usable once their process has handled them
    def _on_step(self, rows: Any) -> None:
        per_token = self.cfg.model.host_seconds_per_token()
        by_process: dict[int, list[tuple[SimRow, int]]] = {}
        for row in rows:
            count = row.delta(self.stream_interval)
            if count:
                by_process.setdefault(row.process, []).append((row, count))
        for process, group in by_process.items():
            done = self._hold_host(process, per_token * sum(count for _, count in group))
            self.loop.call_at(done, self._deliver, group)

    async def _take_request(self, process: int) -> None:
        """The request's own host work (HTTP, key, text, prompt, admission's call) on its process's GIL, in turn
        with the ids that process hands out, before admission and the engine see it."""
        cost = self.cfg.model.host_ms_per_request / 1000.0
        if cost > 0:
            await asyncio.sleep(self._hold_host(process, cost) - self.loop.time())

    def _hold_host(self, process: int, cost: float) -> float:
        """`cost` seconds of the process's GIL, from now or when its earlier work ends; returns when this ends."""
        start = max(self.loop.time(), self.gil_free[process])
        self.gil_free[process] = start + cost
        self.host_busy[process] += cost
        self.ledger.note_host(start, start + cost)
        return start + cost

    def _deliver(self, group: list[tuple[SimRow, int]]) -> None:
        for row, count in group:
            row.deliver(count)
        self.admission.note_tokens(sum(count for row, count in group if row not in self.job_rows))

    # ---- one long-form job
    async def job(self, index: int) -> None:
        """As a job's non-streamed synthesis: the exact schedule, each window's audio awaited before the next."""
        tokens = max(1, round(self.cfg.background_audio_s * TOKENS_PER_SECOND))
        pre = self.cfg.preamble_ids
        row = SimRow(self.cfg.prompt_tokens, pre + tokens + 1, index % self.cfg.api_processes)
        handle = self.scheduler.open_stream(work_class="background")
        planner = DecodePlanner(
            self.base_config.for_latency("exact"), hop=HOP, codebook_size=SEMANTIC_CODEBOOK
        )
        self.job_rows.add(row)
        self.admission.background_generating += 1
        generating = True
        self.engine.add(row)
        try:
            fed = 0
            while fed < tokens:
                await row.wait_usable(pre + fed + 1)
                usable = min(tokens, row.usable - pre)
                windows = planner.push([0] * (usable - fed))  # token values do not change the schedule
                fed = usable
                await self._job_decode(handle, planner, windows)
            await row.wait_usable(row.total)
            self.admission.background_generating -= 1
            generating = False
            await self._job_decode(handle, planner, planner.finish())
        finally:
            if generating:
                self.admission.background_generating -= 1
                self.engine.drop(row)
            handle.close()

    async def _job_decode(
        self, handle: StreamHandle, planner: DecodePlanner, windows: list[PlannedWindow]
    ) -> None:
        for w in windows:
            await handle.decode(DecodeWindow(w.ids, None, w.keep_start, w.keep_end))
            self.job_audio_s += planner.take(w, np.zeros(w.kept_tokens * HOP, np.float32)).size / 16_000

    # ---- one stream
    async def stream(self, index: int, arrival: float, audio_seconds: float) -> None:
        await asyncio.sleep(max(0.0, arrival - self.loop.time()))
        result = StreamResult(arrival=self.loop.time(), admitted=False)
        self.results.append(result)
        await self._take_request(index % self.cfg.api_processes)
        view = self.admission.view()  # read-only: what the rules are about to read
        # as the service does: a waitable rule holds the caller
        decision = await self.admission.admit(super_resolved=self.cfg.sample_rate == 48_000)
        self.ledger.note_decision(self.loop.time(), view, self.scheduler.active_streams)
        if not decision.admit:
            result.reason = decision.reason
            return
        result.admitted = True
        # As the service's synthesis job does: under load a newcomer's first chunk waits for the full look-ahead.
        latency = (
            self.admission.first_chunk_schedule(self.cfg.latency)
            if self.cfg.adaptive_schedule
            else self.cfg.latency
        )
        stream_config = self.base_config.for_latency(latency)
        # As the synthesis job asks it: a short first chunk's held overlap as the first AP-BWE window's right context.
        sr_lead = (
            self.cfg.sr_lead
            and self.cfg.sample_rate == 48_000
            and latency != "exact"
            and self.admission.sr_lead()
        )
        tokens = max(1, round(audio_seconds * TOKENS_PER_SECOND))
        pre = self.cfg.preamble_ids
        row = SimRow(self.cfg.prompt_tokens, pre + tokens + 1, index % self.cfg.api_processes)
        playback = PlaybackClock(self.loop.time(), clock=self.scheduler.clock)
        handle = self.scheduler.open_stream(playback, super_resolved=self.cfg.sample_rate == 48_000)
        cadence = StreamCadence(prebuffer_s=self.cfg.prebuffer_s, observe_metrics=False, clock=self.loop.time)
        self.engine.add(row)
        out: asyncio.Queue[tuple[asyncio.Future[Any] | None, float]] = asyncio.Queue()
        producers = [
            asyncio.ensure_future(
                self._submit_decodes(row, handle, stream_config, tokens, pre, out, result, sr_lead)
            )
        ]
        try:
            while True:
                task, seconds = await out.get()
                if task is None:
                    break
                await task
                cadence.on_chunk(seconds, self.loop.time())
                playback.note_audio(seconds)
                result.audio_seconds += seconds
                if result.first_audio is None:
                    result.first_audio = self.loop.time()
        finally:
            for p in producers:
                p.cancel()
            handle.close()
            self._first_marked -= {("decode", id(handle)), ("sr", id(handle))}
        result.end = self.loop.time()
        result.underruns = cadence.underruns
        result.underrun_seconds = cadence.underrun_seconds

    async def _submit_decodes(
        self,
        row: SimRow,
        handle: StreamHandle,
        stream_config: StreamingConfig,
        tokens: int,
        pre: int,
        out: asyncio.Queue[Any],
        result: StreamResult,
        sr_lead: bool,
    ) -> None:
        """The service's own planners, fed as the ids become usable: `DecodePlanner` and, at 48 kHz, `SRPlanner`
        over the decoded chunks."""
        started = self.loop.time()
        planner = DecodePlanner(stream_config, hop=HOP, codebook_size=SEMANTIC_CODEBOOK)
        sr = (
            SRPlanner(
                grid=SR_GRID,
                context=SR_CONTEXT,
                min_block=SR_MIN_BLOCK,
                max_block=SR_MAX_BLOCK,
                end_lengths=self.cfg.policy.sr_end_lengths(SR_GRID) if self.cfg.shape_true_ends else (),
            )
            if self.cfg.sample_rate == 48_000
            else None
        )
        fed = 0
        while fed < tokens:
            await row.wait_usable(pre + fed + 1)
            usable = min(tokens, row.usable - pre)
            windows = planner.push([0] * (usable - fed))  # token values do not change the schedule
            fed = usable
            if not windows and self._cut_due(handle, planner, stream_config):
                windows = planner.cut()
                self.cut_windows += len(windows)
            self._note_first_window(result, windows)
            await self._submit(planner, sr, windows, handle, out, final=False, sr_lead=sr_lead)
        await row.wait_usable(row.total)  # the stop id: generation ended
        result.generation_seconds = self.loop.time() - started
        windows = planner.finish()
        self._note_first_window(result, windows)
        await self._submit(planner, sr, windows, handle, out, final=True)
        out.put_nowait((None, 0.0))

    def _note_first_window(self, result: StreamResult, windows: list[PlannedWindow]) -> None:
        if windows and result.first_window is None:
            result.first_window = self.loop.time()

    def _cut_due(self, handle: StreamHandle, planner: DecodePlanner, config: StreamingConfig) -> bool:
        """The service's cut (services/pipeline/synthesis.py `_cut_due`): the listener would run dry within the
        schedule's `cut_runway_s` on the audio planned so far. The service plans a window once the ones before it
        were sent, so there the audio sent is what was planned, less what its chain holds (at 48 kHz up to ~0.15 s
        for the next AP-BWE window: the service cuts that much sooner); here windows planned run on while the next
        is planned, so the audio planned stands in for it."""
        limit = config.cut_runway_s
        playback = handle.playback
        if limit is None or not isinstance(playback, PlaybackClock) or playback.first_audio_at is None:
            return False
        planned_s = (planner.tokens_in - planner.pending_tokens) * HOP / 16_000
        return playback.first_audio_at + planned_s - self.loop.time() <= limit

    async def _submit(
        self,
        planner: DecodePlanner,
        sr: SRPlanner | None,
        windows: list[PlannedWindow],
        handle: StreamHandle,
        out: asyncio.Queue[Any],
        *,
        final: bool,
        sr_lead: bool = False,
    ) -> None:
        for w in windows:
            window = DecodeWindow(w.ids, None, w.keep_start, w.keep_end)
            self._mark_first("decode", handle, window)
            task = asyncio.ensure_future(handle.decode(window))
            chunk = planner.take(w, np.zeros(w.kept_tokens * HOP, np.float32))  # the sizes the service plays
            if sr is None:
                out.put_nowait((task, chunk.size / 16_000))
                continue
            await task  # SR needs the decoded audio; windows after it are already queued behind
            for s in sr.push(
                chunk, planner.held_audio if sr_lead else None
            ):  # the lead window, as AudioOutput
                self._mark_first("sr", handle, s)
                out.put_nowait((self._sr(handle, s), (s.keep_end - s.keep_start) / 48_000))
        if sr is not None and final:
            for s in sr.finish():
                out.put_nowait((self._sr(handle, s), (s.keep_end - s.keep_start) / 48_000))

    def _mark_first(self, kind: str, handle: StreamHandle, window: object) -> None:
        if (kind, id(handle)) not in self._first_marked:
            self._first_marked.add((kind, id(handle)))
            self.ledger.mark_first(window)

    @staticmethod
    def _sr(handle: StreamHandle, s: SRWindow) -> asyncio.Future[Any]:
        return asyncio.ensure_future(
            handle.super_resolve(s)
        )  # the planner's window as it is (zeros: decoded zeros)

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        arrivals = (
            np.sort(self.rng.uniform(0.0, cfg.arrive_within_s, cfg.streams))
            if cfg.arrive_within_s > 0
            else np.zeros(cfg.streams)
        )
        lengths = self.rng.uniform(0.8, 1.2, cfg.streams) * cfg.audio_seconds
        self.scheduler.start()
        jobs = [asyncio.ensure_future(self.job(i)) for i in range(cfg.background_jobs)]
        try:
            await asyncio.gather(
                *(
                    self.stream(i, float(a), float(s))
                    for i, (a, s) in enumerate(zip(arrivals, lengths, strict=True))
                )
            )
            if cfg.streams:  # a job ends with the live load
                for job in jobs:
                    job.cancel()
            await asyncio.gather(*jobs, return_exceptions=bool(cfg.streams))
        finally:
            await self.engine.aclose()
            await self.scheduler.aclose()
        return self.report()

    def report(self) -> dict[str, Any]:
        cfg = self.cfg
        elapsed = max(1e-9, self.loop.time() - self.started)
        admitted = [r for r in self.results if r.admitted]
        ttfa = [1000 * (r.first_audio - r.arrival) for r in admitted if r.first_audio is not None]
        first_ids = [1000 * (r.first_window - r.arrival) for r in admitted if r.first_window is not None]
        stats = self.scheduler.stats
        busy = self.device.busy_seconds
        gen = [r.generation_seconds for r in admitted if r.generation_seconds]
        return {
            "cost_model": cfg.model.name,
            "llm_step_ms": {"fixed": cfg.model.llm_step.fixed, "per_row": cfg.model.llm_step.per_unit},
            "host_ms_per_audio_second": cfg.model.host_ms_per_audio_second,
            "host_ms_per_request": cfg.model.host_ms_per_request,
            "sample_rate": cfg.sample_rate,
            "arrive_within_s": cfg.arrive_within_s,
            "api_processes": cfg.api_processes,
            "call_seconds_read": cfg.call_seconds_read,
            "device_sharing": cfg.device_sharing,
            "stream_interval": self.stream_interval,
            "seed": cfg.seed,
            "streams_requested": cfg.streams,
            "streams_admitted": len(admitted),
            "streams_refused": cfg.streams - len(admitted),
            "refused_by": dict(self.admission.refused),
            "admitted_after_waiting": self.admission.waited,
            "long_first_chunks": self.admission.long_first_chunks,
            "first_chunks": {
                f"{schedule}/{reason}": n for (schedule, reason), n in self.admission.first_chunks.items()
            },
            "sr_leads": dict(self.admission.sr_leads),
            "ttfa_ms_p50": _pct(ttfa, 50),
            "ttfa_ms_p95": _pct(ttfa, 95),
            "ttfa_ms_max": max(ttfa, default=None),
            # arrival to the first decode window's ids usable: the part of first audio before the codec's calls
            "first_window_ms_p50": _pct(first_ids, 50),
            "first_window_ms_p95": _pct(first_ids, 95),
            "underruns_prebuffer_100ms": sum(1 for r in admitted if r.underruns),
            "underrun_seconds": round(sum(r.underrun_seconds for r in admitted), 3),
            "missed_deadlines": stats.missed_deadlines,
            "gpu_busy_ratio": round(sum(busy.values()) / elapsed, 3),
            "gpu_busy_seconds": {k: round(v, 3) for k, v in busy.items()},
            "mean_decode_batch": round(stats.mean_batch("decode"), 2),
            "mean_sr_batch": round(stats.mean_batch("sr"), 2),
            "codec_calls": stats.calls,
            "eager_codec_calls": stats.eager_calls,  # exact-length calls: no graph on a GPU
            "cut_windows": self.cut_windows,
            "llm_steps": self.engine.steps,
            "mean_llm_rows": round(self.engine.row_steps / self.engine.steps, 1)
            if self.engine.steps
            else 0.0,
            "generation_s_p50": _pct(gen, 50, 2),
            "host_busy_ratio_max": round(max(self.host_busy) / elapsed, 3),
            "simulated_seconds": round(elapsed, 2),
            "background_jobs": cfg.background_jobs,
            "background_audio_s": round(self.job_audio_s, 2),
            "background_device_s": round(stats.background_seconds, 3),
            # audio seconds per second of device time the job's codec calls held, and per simulated second
            "background_audio_per_device_s": round(self.job_audio_s / stats.background_seconds, 1)
            if stats.background_seconds
            else None,
            "background_audio_per_s": round(self.job_audio_s / elapsed, 2),
            "background_pauses": self.scheduler.background.pauses,
            "breakdown": breakdown(
                self.ledger,
                [(r.arrival, r.first_audio, r.end) for r in admitted],
                self.loop.time(),
                [r.audio_seconds for r in admitted],
                stats,
            ),
        }


def _pct(values: list[float], q: float, digits: int = 1) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), digits)


def simulate(config: SimConfig) -> dict[str, Any]:
    """Run one load on a fresh virtual-time loop and return its report."""
    from bench.sim.virtual_loop import run_virtual

    async def main() -> dict[str, Any]:
        return await Simulation(config).run()

    return run_virtual(main)


def simulate_arrivals(
    model: CostModel,
    arrivals: Arrivals,
    admission: str,
    seed: int,
    *,
    streaming: StreamingConfig | None = None,
    admission_over: dict[str, Any] | None = None,
    device_sharing: DeviceSharing = "serial",
    engine_pace: EnginePace | None = None,
) -> dict[str, Any]:
    """One run of `arrivals` under `admission`: "off" (every stream admitted on the exact first chunk: what the
    modelled device carries) or an admission profile's name, its codec seconds read as it reads them, with
    `admission_over`'s `Admission` keywords over its own; on a device that runs one call at a time, `sliced` or
    `overlapped`; with
    the engine stepping every request, or held to `engine_pace`."""
    settings: dict[str, Any] = {"admission": ADMISSION_OFF, "latency": "exact"}
    if admission != "off":
        # a profile name, checked by the lookup; read on the modelled device, as the service reads it on its layout's
        profile = profile_on(ADMISSION_PROFILES[admission], device_sharing, model.device_overlap)  # type: ignore[index]
        # and what the modelled GPU is known to carry on that device, as the service reads it for its GPU (carried.py)
        carried = known_carried(model.name, device_sharing)
        settings = {
            "admission": {**profile.admission, "carried": carried, **(admission_over or {})},
            "call_seconds_read": profile.call_seconds_read,
        }
    config = SimConfig(
        model,
        arrivals.streams,
        sample_rate=arrivals.sample_rate,
        arrive_within_s=arrivals.within_s,
        seed=seed,
        streaming=streaming,
        device_sharing=device_sharing,
        engine_pace=engine_pace,
        **settings,
    )
    return simulate(config)


__all__ = [
    "ADMISSION_OFF",
    "SimConfig",
    "device_for",
    "Simulation",
    "served_streaming",
    "simulate",
    "simulate_arrivals",
]
