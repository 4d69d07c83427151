"""A device cost model and the stand-ins built on it: a BENCHMARK TOOL, never a way to serve.

The cost model says what each device call costs: an LLM step over B rows, a prompt's
prefill, a BiCodec call of B x T tokens, an AP-BWE call of B x S input samples, each `fixed + per_unit x units`,
and the API path's CPU time per second of audio. Two users:

- `bench.sim.load` drives the real `CodecScheduler` and `Admission` on a virtual clock with these costs;
- `python -m bench.standin.serve --cost-model FILE` makes the real server (demo checkpoint only) replace the engine's steps and the
  codec's calls with waits of the modelled length (`CostModelRunner` here, `CostModelEngine` in
  `cost_model_engine.py`), so the wiring (HTTP, parser, scheduler, encoders) is measured on a CPU as if a GPU
  did the model work.

Both share `DeviceTimeline`: ONE device, one call at a time in arrival order (a GPU serialises kernels), used by
the engine's steps and the codec's calls alike. Waits are `asyncio.sleep`, so on a virtual clock they cost no
wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from services.device.calls import Call, CallSecondsRead
from services.device.device_layout import DEVICE_OVERLAP
from shared.settings.model import LLMSettings

_T = TypeVar("_T")
HOP = 320  # BiCodec: 16 kHz samples per semantic token
DEFAULT_PRENET_SHARE = 0.05
# How much an engine step and a codec call in one CUDA context overlap: the service's estimate (device_layout.py) until a
# cost model file sets `device_overlap` from the GPU kit's measure.
DEFAULT_DEVICE_OVERLAP = DEVICE_OVERLAP
# vLLM's engine core's own Python per step (scheduling, input preparation, the sampled ids' bookkeeping), within the
# engine step's figure: in the in-process layout it holds the serving process's GIL (bench/sim/inprocess_engine.py).
# An estimate, not a measurement: ~0.5 ms a step and ~4 us per running request (the scheduler walks each request a few
# times a step). The GPU kit's engine is not vLLM (the lent image has none), so a served in-process engine measures it:
# the stepping thread's CPU per step (core/llm/vllm_inproc.py).
DEFAULT_ENGINE_HOST_MS = (0.5, 0.004)
# The rows an engine runs at once: the service's `max_num_seqs` as it ships (vLLM's running requests; TTS_MAX_NUM_SEQS)
DEFAULT_MAX_RUNNING: int = LLMSettings.model_fields["max_num_seqs"].default


@dataclass(frozen=True)
class Linear:
    """`fixed + per_unit x units` milliseconds."""

    fixed: float
    per_unit: float

    def seconds(self, units: float) -> float:
        return (self.fixed + self.per_unit * units) / 1000.0


ENGINE_STEP_VARIANTS = ("compiled", "graph")  # bench/gpu/engine_step.py's variants, the closer to vLLM first


def engine_step_fit(path: str | Path, variant: str = "compiled") -> Linear:
    """The engine step `bench/gpu/engine_step.py` fitted on a GPU (its `engine-step.json`, `variant`'s `fit`): the
    cost model's `llm_step_ms`. Refuses what is not a figure: the tiny `--quick` model, a run off a GPU, a variant
    with no fit (fewer than two batches measured)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        fit = data["variants"][variant].get("fit")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"engine step {path}: no variant {variant!r} in an engine-step.json ({exc})"
        ) from exc
    if data.get("config") != "released" or data.get("device") in (None, "cpu"):
        raise ValueError(
            f"engine step {path}: measured with the {data.get('config')} config on {data.get('device')}: the "
            "plumbing, not a figure (a GPU run at the released config is)"
        )
    if not fit:
        raise ValueError(
            f"engine step {path}: variant {variant!r} has no fit (fewer than two batches measured)"
        )
    step = Linear(float(fit["fixed"]), float(fit["per_row"]))
    if step.fixed < 0 or step.per_unit < 0:
        raise ValueError(
            f"engine step {path}: variant {variant!r} fits a negative term ({fit}): not a step's cost"
        )
    return step


@dataclass(frozen=True)
class CostModel:
    name: str
    llm_step: Linear  # units: rows in the step
    llm_prefill: Linear  # units: prompt tokens
    decode: Linear  # units: rows_padded x length tokens (a whole window's decode per token)
    sr: Linear  # units: rows_padded x length 16 kHz input samples
    host_ms_per_audio_second: float  # CPU of the API path, per process (one GIL)
    # CPU of one request apart from its audio (HTTP, key, text, prompt, admission, submit, log), on its process's GIL
    # before its first id can be handled: `bench/bench_request_cost.py` measures it. 0: not modelled.
    host_ms_per_request: float = 0.0
    # The prenet's share of a decoded token's cost (the rest is the wave generator's): a call whose wave generator runs
    # on trimmed spans (`Call.spans`) pays it on every token the prenet reads and the rest on span tokens only.
    # 0.05: measured on a CPU at the released size (prenet 48-193 ms, wave generator 923-3,826 ms for 48-192
    # tokens, one thread; by FLOPs 4.4%); the GPU kit measures it on the device (docs/benchmarks.md).
    decode_prenet_share: float = DEFAULT_PRENET_SHARE
    # The share per prenet length where the file gives one (`"prenet_share": {"48": 0.30, "96": 0.19, ...}`, the GPU
    # kit's measure): linear between the lengths given, the end values beyond them. Empty: `decode_prenet_share`.
    decode_prenet_shares: tuple[tuple[int, float], ...] = ()
    # An exact-length call (`Call.length` None: a stream's AP-BWE true end, a window longer than every bucket) runs
    # eager at the process's fp32, launched kernel by kernel: `decode_ms.eager` / `sr_ms.eager` when the file gives
    # them (the H100 acceptance sweep's fp32 B=1 calls: AP-BWE ~7.5 ms fixed, launch-bound), else the graph figures.
    decode_eager: Linear | None = None
    sr_eager: Linear | None = None
    # How much an engine step and a codec call overlap in one CUDA context (`DEFAULT_DEVICE_OVERLAP`): read by the
    # overlapped device only.
    device_overlap: float = DEFAULT_DEVICE_OVERLAP
    # The engine core's Python within each step (`DEFAULT_ENGINE_HOST_MS`), units: rows: on the serving process's GIL
    # where the engine core runs in it (the overlapped device's layout); part of the step's cost, not more of it.
    engine_host: Linear = Linear(*DEFAULT_ENGINE_HOST_MS)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostModel:
        def part(key: str, unit: str, entry: Any = None) -> Linear:
            try:
                entry = data[key] if entry is None else entry
                value = Linear(float(entry["fixed"]), float(entry[unit]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"cost model: '{key}' needs numbers 'fixed' and '{unit}' ({exc})") from exc
            if value.fixed < 0 or value.per_unit < 0:
                raise ValueError(f"cost model: '{key}' must not be negative")
            return value

        def eager(key: str, unit: str) -> Linear | None:
            entry = data.get(key)
            eager_entry = entry.get("eager") if isinstance(entry, dict) else None
            return None if eager_entry is None else part(f"{key}.eager", unit, eager_entry)

        try:
            host = float(data.get("host_ms", {}).get("per_audio_second", 0.0))
            host_per_request = float(data.get("host_ms", {}).get("per_request", 0.0))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(
                f"cost model: 'host_ms.per_audio_second' and 'host_ms.per_request' must be numbers ({exc})"
            ) from exc
        shares = _prenet_shares(data)
        share = shares[0][1] if len(shares) == 1 else DEFAULT_PRENET_SHARE
        try:
            overlap = float(data.get("device_overlap", DEFAULT_DEVICE_OVERLAP))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cost model: 'device_overlap' must be a number ({exc})") from exc
        if not 0.0 <= overlap <= 1.0:
            raise ValueError(f"cost model: 'device_overlap' must lie in [0, 1], got {overlap}")
        engine_host = (
            part("engine_host_ms", "per_row") if "engine_host_ms" in data else Linear(*DEFAULT_ENGINE_HOST_MS)
        )
        return cls(
            name=str(data.get("name", "unnamed")),
            llm_step=part("llm_step_ms", "per_row"),
            llm_prefill=part("llm_prefill_ms", "per_token"),
            decode=part("decode_ms", "per_token"),
            sr=part("sr_ms", "per_input_sample"),
            host_ms_per_audio_second=max(0.0, host),
            host_ms_per_request=max(0.0, host_per_request),
            decode_prenet_share=share,
            decode_prenet_shares=shares if len(shares) > 1 else (),
            decode_eager=eager("decode_ms", "per_token"),
            sr_eager=eager("sr_ms", "per_input_sample"),
            device_overlap=overlap,
            engine_host=engine_host,
        )

    @classmethod
    def load(cls, path: str | Path) -> CostModel:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cost model {path}: not a readable JSON file ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"cost model {path}: expected a JSON object")
        return cls.from_dict(data)

    def with_overrides(
        self,
        *,
        llm_per_row: float | None = None,
        host_ms: float | None = None,
        host_ms_per_request: float | None = None,
        device_overlap: float | None = None,
    ) -> CostModel:
        from dataclasses import replace

        out = self
        if device_overlap is not None:
            if not 0.0 <= device_overlap <= 1.0:
                raise ValueError(f"device_overlap must lie in [0, 1], got {device_overlap}")
            out = replace(out, device_overlap=device_overlap)
        if llm_per_row is not None:
            out = replace(
                out,
                llm_step=Linear(out.llm_step.fixed, llm_per_row),
                name=f"{out.name} (llm per_row {llm_per_row})",
            )
        if host_ms is not None:
            out = replace(out, host_ms_per_audio_second=host_ms)
        if host_ms_per_request is not None:
            out = replace(out, host_ms_per_request=host_ms_per_request)
        return out

    def with_engine_step(self, step: Linear, source: str) -> CostModel:
        """This model with its engine step replaced by a measured one (`engine_step_fit`), named after `source`."""
        from dataclasses import replace

        return replace(
            self,
            llm_step=step,
            name=f"{self.name}, engine step {step.fixed:g} ms + {step.per_unit:g} ms per row ({source})",
        )

    def scaled(
        self, *, llm_fixed: float = 1.0, llm_per_row: float = 1.0, decode: float = 1.0, sr: float = 1.0
    ) -> CostModel:
        """This model with a term's cost times a factor (a what-if: which term a load hinges on). `decode` and `sr`
        scale a call's fixed and per-unit cost alike, graph and eager; the prenet's share is a ratio and stays."""
        from dataclasses import replace

        def times(line: Linear | None, factor: float) -> Linear | None:
            return None if line is None else Linear(line.fixed * factor, line.per_unit * factor)

        factors = {"llm_fixed": llm_fixed, "llm_per_row": llm_per_row, "decode": decode, "sr": sr}
        if any(not factor > 0 for factor in factors.values()):
            raise ValueError(f"scale factors must be positive, got {factors}")
        changed = ", ".join(f"{term} x{factor:g}" for term, factor in factors.items() if factor != 1.0)
        return replace(
            self,
            name=f"{self.name} ({changed})" if changed else self.name,
            llm_step=Linear(self.llm_step.fixed * llm_fixed, self.llm_step.per_unit * llm_per_row),
            decode=Linear(self.decode.fixed * decode, self.decode.per_unit * decode),
            sr=Linear(self.sr.fixed * sr, self.sr.per_unit * sr),
            decode_eager=times(self.decode_eager, decode),
            sr_eager=times(self.sr_eager, sr),
        )

    # ---- what one device call costs
    def step_seconds(self, rows: int, prefill_tokens: int = 0, prefills: int = 0) -> float:
        """One engine step over `rows` rows, with the prompts of `prefills` newcomers (`prefill_tokens` in all)
        processed in the same step (chunked prefill)."""
        cost = self.llm_step.seconds(rows) if rows else 0.0
        if prefills:
            cost += self.llm_prefill.seconds(prefill_tokens)
        return cost

    def call_seconds(self, call: Call) -> float:
        eager = call.length is None
        if call.kind != "decode":
            return (self.sr_eager if eager and self.sr_eager is not None else self.sr).seconds(call.work)
        # whole windows (no margin, spans = windows) at share 0 or 1 alike: `decode.seconds(call.work)`
        share = self.prenet_share(call.row_length + 2 * call.margin)
        cost = self.decode_eager if eager and self.decode_eager is not None else self.decode
        return cost.seconds(share * call.prenet_work + (1.0 - share) * call.work)

    def prenet_share(self, length: int) -> float:
        """The prenet's share of a decoded token's cost in a call whose prenet reads `length` tokens per row."""
        points = self.decode_prenet_shares
        if not points:
            return self.decode_prenet_share
        lengths = [n for n, _ in points]
        return float(np.interp(length, lengths, [v for _, v in points]))

    def host_seconds_per_token(self) -> float:
        """The API path's CPU per semantic token (50 tokens per second of audio)."""
        return self.host_ms_per_audio_second / 1000.0 / 50.0


def _prenet_shares(data: dict[str, Any]) -> tuple[tuple[int, float], ...]:
    """`decode_ms.prenet_share`: one number (as ((0, share),)), or {prenet length: share}; each share in [0, 1]."""
    key = "cost model: 'decode_ms.prenet_share'"
    try:
        raw = data["decode_ms"].get("prenet_share", DEFAULT_PRENET_SHARE)
        by_length = isinstance(raw, dict)
        points = (
            tuple(sorted((int(n), float(v)) for n, v in raw.items())) if by_length else ((0, float(raw)),)
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{key} must be a number or {{length: number}} ({exc})") from exc
    if by_length and (not points or points[0][0] < 1):
        raise ValueError(f"{key}: lengths must be positive integers, at least one")
    for _, v in points:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{key} must lie in [0, 1], got {v}")
    return points


class Device(Protocol):
    """What the codec's runner and the engine's steps queue their calls on: `DeviceTimeline` (one call at a time),
    bench/sim/sliced_device.py's `SlicedDeviceTimeline` (the engine and the codec by time slices) or
    bench/sim/overlapped_device.py's `OverlappedDeviceTimeline` (one context, two streams)."""

    busy_seconds: dict[str, float]
    observer: Callable[[str, float, float, Any], None] | None

    async def use(
        self, kind: str, seconds: float, *, arrived: float | None = None, detail: Any = None
    ) -> float: ...

    def run_seconds(self, seconds: float, arrived: float, end: float) -> float: ...


class DeviceTimeline:
    """One device: calls run one at a time, first come first served (`asyncio.Lock` is FIFO). Keeps the busy
    seconds of each kind of work for the reports.

    The device keeps its own schedule: a call starts when it arrived or when the call before it ends on that
    schedule, whichever is later, and the caller sleeps until its scheduled end. On a real clock a sleep wakes late
    (timer granularity, a busy event loop); counting from the late wake-up instead made every queued call start
    late, so the stand-in's device fell behind its model. A lateness now delays one wake-up, not the calls after it."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._free_at = -math.inf  # the scheduled end of the last call (the event loop's clock)
        self.busy_seconds: dict[str, float] = {"llm": 0.0, "decode": 0.0, "sr": 0.0}
        # Told of every use on the device's schedule: (kind, start, end, detail); bench/sim/breakdown.py's ledger.
        self.observer: Callable[[str, float, float, Any], None] | None = None

    async def use(
        self, kind: str, seconds: float, *, arrived: float | None = None, detail: Any = None
    ) -> float:
        """Run a call of `seconds` that arrived at `arrived` (default: now; a caller with work waiting since its
        previous call's scheduled end passes that end). Returns the call's scheduled end. `detail` goes to the
        observer (the call, or an engine step's parts)."""
        loop = asyncio.get_running_loop()
        arrived = loop.time() if arrived is None else arrived
        seconds = max(0.0, seconds)
        async with self._lock:
            end = max(arrived, self._free_at) + seconds
            self._free_at = end
            if self.observer is not None:
                self.observer(kind, end - seconds, end, detail)
            delay = end - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.busy_seconds[kind] = self.busy_seconds.get(kind, 0.0) + seconds
        return end

    @property
    def total_busy(self) -> float:
        return sum(self.busy_seconds.values())

    def run_seconds(self, seconds: float, arrived: float, end: float) -> float:
        """What CUDA events around a call read, its start to its end on the device: here its own seconds, since a call
        runs alone once it starts (the wait before it is the engine's step)."""
        return seconds


class CostModelRunner:
    """A stand-in `DeviceRunner`: waits the modelled time on the shared device, then returns rows of the right
    length (low noise, so encoders and guards see audio rather than digital silence). Not a codec."""

    def __init__(
        self,
        model: CostModel,
        device: Device | None = None,
        *,
        hop: int = HOP,
        noise: bool = True,
        call_seconds_read: CallSecondsRead = "dispatch_to_end",
    ) -> None:
        self.model = model
        self.device: Device = device or DeviceTimeline()
        self.hop = hop
        self.noise = noise
        self.call_seconds_read = call_seconds_read
        self._rng = np.random.default_rng(0)

    async def run(self, call: Call) -> list[np.ndarray]:
        return (await self.run_timed(call))[0]

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        """The rows and the call's seconds as `call_seconds_read` says: from its arrival (waiting behind the step in
        progress included) to its scheduled end, what a device thread measures (`DeviceRunner`); `own`, the call's
        modelled cost alone, a graph's replay timed at capture; or `run`, from its start on the device to its end, what
        CUDA events around its kernels read (the device's `run_seconds`: stretched where the engine shares it)."""
        arrived = asyncio.get_running_loop().time()
        own = self.model.call_seconds(call)
        end = await self.device.use(call.kind, own, detail=call)
        out = []
        for w in call.windows:
            n = (w.keep_end - w.keep_start) * (self.hop if call.kind == "decode" else 1)
            out.append(self._audio(n))
        if self.call_seconds_read == "run":
            return out, self.device.run_seconds(own, arrived, end)
        return out, own if self.call_seconds_read == "own" else end - arrived

    async def run_model_call(self, fn: Callable[[], _T]) -> tuple[_T, float]:
        """A model call the cost model does not model (the demo models' speaker vectors): run as it is, in a worker
        thread, its wall seconds its cost (`DeviceRunner`)."""
        started = time.perf_counter()
        result = await asyncio.to_thread(fn)
        return result, time.perf_counter() - started

    def _audio(self, n: int) -> np.ndarray:
        if not self.noise:
            return np.zeros(n, np.float32)
        return (self._rng.standard_normal(n) * 0.01).astype(np.float32)

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class EngineStep:
    """What one engine step held the device for (a `DeviceTimeline` observer's detail): its rows, the newcomers
    among them, and the seconds of their prefill within the step's cost."""

    rows: int
    newcomers: int
    prefill_seconds: float


class EngineRow(Protocol):
    """One generating request as the step loop sees it."""

    prompt_tokens: int

    def step(self) -> bool:
        """One id generated for this row; True when the row has finished (its stop id was the last)."""
        ...


class StepLoop:
    """The LLM engine's schedule on the device: each step runs every running row once (one id each) and costs
    `llm_step(rows)`, plus the prefill of the rows that joined since the last step (their first id comes out of
    that step, as with chunked prefill). A row added while a step runs joins the next one. At most `max_running`
    rows run at once (vLLM's `max_num_seqs`); rows added past it wait, first come first served, for one to finish.
    `on_step(rows)` is told after each step, with the rows that stepped."""

    def __init__(
        self,
        model: CostModel,
        device: Device,
        on_step: Callable[[Sequence[EngineRow]], None] | None = None,
        *,
        max_running: int = DEFAULT_MAX_RUNNING,
    ) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        self.model = model
        self.device = device
        self.on_step = on_step
        self.max_running = max_running
        self._rows: list[EngineRow] = []
        self._new: list[EngineRow] = []
        # The dropped rows themselves (compared by identity), never their id(): a row dropped after its last step is
        # freed, and CPython gives the next request its address; an id remembered here then dropped that request
        # before its first step (the stall in tests/unit/bench/standin/test_cost_model_standin.py). Held here, a row cannot be freed
        # until the loop has forgotten it.
        self._dropped: list[EngineRow] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        self.row_steps = 0
        self._last_end: float | None = None  # the last step's scheduled end on the device

    @property
    def active(self) -> int:
        return len(self._rows) + len(self._new)

    def add(self, row: EngineRow) -> None:
        self._new.append(row)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cost-model-steps")
        assert self._wake is not None
        self._wake.set()

    def drop(self, row: EngineRow) -> None:
        """Stop generating for `row` (abort): it leaves before the next step."""
        self._dropped.append(row)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if self._dropped:
                self._rows = [r for r in self._rows if not _held(r, self._dropped)]
                self._new = [r for r in self._new if not _held(r, self._dropped)]
                self._dropped.clear()
            if not self._rows and not self._new:
                self._wake.clear()
                await self._wake.wait()
                continue
            room = max(0, self.max_running - len(self._rows))
            new, self._new = self._new[:room], self._new[room:]
            rows = self._rows + new
            run, resume_at = self._choose(rows, asyncio.get_running_loop().time())
            if not run:  # every row held back (`_choose`): the device is the codec's until one may run again
                self._rows, self._last_end = rows, None
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), resume_at - asyncio.get_running_loop().time())
                continue
            # ids of rows alive in `rows` during this step (never kept past it: see `_dropped`)
            chosen = None if run is rows else {id(r) for r in run}
            fresh = new if chosen is None else [r for r in new if id(r) in chosen]
            cost = self.model.step_seconds(len(run), sum(r.prompt_tokens for r in fresh), len(fresh))
            step = EngineStep(len(run), len(fresh), cost - self.model.step_seconds(len(run)))
            # Rows that stepped last time were ready for this step at that step's scheduled end (the engine runs in
            # its own process on a GPU: the event loop's lateness in waking this task must not slow it down).
            self._last_end = await self.device.use(
                "llm", cost, arrived=self._last_end if self._rows else None, detail=step
            )
            self.steps += 1
            self.row_steps += len(run)
            held_back = (
                []
                if chosen is None
                else [r for r in rows if id(r) not in chosen and not _held(r, self._dropped)]
            )
            self._rows = held_back + [r for r in run if not _held(r, self._dropped) and not self._stepped(r)]
            if self.on_step is not None:
                self.on_step(run)

    def _choose(self, rows: list[EngineRow], now: float) -> tuple[list[EngineRow], float]:
        """The rows this step runs (here every one, as vLLM steps every running request), and, when that is none,
        when one may run again."""
        return rows, now

    def _stepped(self, row: EngineRow) -> bool:
        """One id generated for `row`; True when it has finished."""
        return row.step()


def delta_due(made: int, handed: int, total: int, interval: int) -> bool:
    """Whether an engine hands a request its ids after this step, as vLLM's `stream_interval` does: the first id at
    once, then whenever `interval` ids were made since the last delta, and whatever is left at the end."""
    return made > handed and (handed == 0 or made >= total or made - handed >= interval)


def _held(row: EngineRow, rows: list[EngineRow]) -> bool:
    """Whether this very row is in `rows` (identity: rows define no equality, and a few are dropped at a time)."""
    return any(r is row for r in rows)
