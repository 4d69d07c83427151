"""Each key's share of a short device. When one of admission's rules refuses (admission.py), the device is short,
and who is refused follows each key's share: a key's load is its streams open in the codec scheduler now (`streams_by_owner`: from its job's first window to its
end) plus the streams admission refused it within the last `pace_window_s`; the fair share is the keys' total load
over the keys holding any (the asking key counted). A key over its share is refused by the rule (key class
`over_share` in `admission_refusals_total`); a key within its share is admitted past the rule while another key is
over its own, so the key that makes the device short is the one refused, for as long as it keeps asking. With no key
over its share (one key alone, or keys alike), the rule refuses as it always does (`within_share`). Why this load:
open streams are what holds the device (admission's rule 3 prices the device by them), exact at once and released when a job
ends on every transport; the refusals of the last second are the demand the device did not take, which a flood of
short streams keeps up while few of them are open (a one-character + flush loop on four sockets asks again the
moment it is refused). An admitted ask is already an open stream, so a client asking one request at a time, however
often, holds one. On the device stand-in, open streams alone let a victim be refused 16 times in 316 while the flood
held no stream between its refused asks, and counting 10 s of admissions held a key's steady use against it
(docs/benchmarks.md, `flood_fairness`). On a GPU device seconds have no owner: the scheduler's calls batch many
streams' windows.

**Turns on a CPU** (`CpuTurns`). On a CPU the codec's calls, the engine's steps and the event loop share the same few
cores, so a key's decodes slow another key's steps however fair each queue is (a one-character + flush loop on four
sockets decodes for half the time). There the scheduler charges each live call's seconds to its rows' keys (by their
work) in the engine's usage account (core/llm/step_gate.py `OwnerUsage`: decayed seconds, engine steps, decodes
and a fixed cost per request added up), and a key's windows wait in the queue, before any device thread takes them, while a key that used less
is busy: stepping in the engine, or with windows queued or running. The lighter key's request runs as if alone; the
heavier key goes on the moment it is idle or has used less. A lone key, or one key's many streams, never waits.

**Text steps** (`TextTurns`). Planning a request's text (Markdown, normalisation, chunking) runs in a worker thread
and holds the interpreter lock for most of its run. Another key's engine step needs the lock back after each of its
many operations, and beside a thread that holds it waits up to a switch interval (5 ms) each time: a free
`POST /v1/tts/normalize` of 40,000 characters after another multiplied another key's first audio many times over,
though the cores were not full. Turns by usage alone cannot fix that (run side by side, both keys are slowed, and
the stepping key is charged the time it waited). So a text step runs in pieces (the normalisation pieces of
services/pipeline/text_plan.py), and each piece takes a turn in the engine's step gate as its key, as a step does:
a piece never runs beside a step, each piece's seconds are charged to its key, and the gate gives the next turn to
the key that used less. Without an engine gate (a GPU engine) the pieces take turns in a gate of their own, between
keys' text steps. A key's own text steps run one at a time, after each other, so one key holds at most one worker
thread with text; a step whose request is gone stops at its next piece.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from core.llm.step_gate import FairStepGate, OwnerUsage

T = TypeVar("T")


class KeyShares:
    """Each key's load (open streams plus recent refusals) against the fair share of the keys holding any."""

    def __init__(self, clock: Callable[[], float], window_s: float) -> None:
        self.clock = clock
        self.window_s = window_s
        self._refused_at: dict[str, deque[float]] = {}  # key id ("" keyless) -> its refusals within window_s

    def judge(self, key: str | None, open_by_owner: Mapping[str, int]) -> tuple[bool, bool]:
        """(whether `key` is over its share, whether another key is over its own), the asking key counted."""
        asking = key or ""
        self._forget_old()
        counts = Counter(open_by_owner)
        counts.update({name: len(times) for name, times in self._refused_at.items()})
        counts = +counts  # the keys holding any
        fair = sum(counts.values()) / len(counts.keys() | {asking})
        return counts.get(asking, 0) > fair, any(n > fair for name, n in counts.items() if name != asking)

    def note_refusal(self, key: str | None) -> None:
        self._forget_old()
        self._refused_at.setdefault(key or "", deque()).append(self.clock())

    def keys_refused_recently(self) -> int:
        return len(self._refused_at)

    def _forget_old(self) -> None:
        """Drop refusals older than window_s: O(keys refused within it)."""
        horizon = self.clock() - self.window_s
        for name in list(self._refused_at):
            times = self._refused_at[name]
            while times and times[0] < horizon:
                times.popleft()
            if not times:
                del self._refused_at[name]


class CpuTurns:
    """Which keys' codec windows wait on a CPU while a lighter key is busy (the module docstring, "Turns on a CPU").

    `gate`: the engine's step gate, looked up when asked (the engine is built after the codec): its usage account is
    the one charged (decode and step seconds add up) and its `busy_owners` are the keys stepping. None (an engine
    with no gate, or none yet): an account of the codec's own, and no key stepping."""

    def __init__(self, gate: Callable[[], FairStepGate | None]) -> None:
        self._gate = gate
        self._own = OwnerUsage()

    @property
    def usage(self) -> OwnerUsage:
        gate = self._gate()
        return self._own if gate is None else gate.account

    def held(self, queued: Collection[str | None], running: Collection[str | None]) -> set[str | None]:
        """The keys among `queued` (keys with windows waiting) whose windows wait: another key that used less is
        busy (stepping, queued, or in `running`: keys of calls on the device)."""
        gate = self._gate()
        busy = set(queued) | set(running)
        if gate is not None:
            busy |= gate.busy_owners()
        if len(busy) < 2:
            return set()
        usage = self.usage
        now = usage.clock()
        used = {key: usage.usage(key, now) for key in busy}
        return {key for key in queued if any(used[other] < used[key] for other in busy if other != key)}

    def charge(self, rows: Collection[tuple[str | None, int]], seconds: float) -> None:
        """A call's seconds, to its rows' keys by their work (owner, units)."""
        usage = self.usage
        total = sum(units for _, units in rows) or 1
        for key, units in rows:
            usage.charge(key, seconds * units / total)


class TextStepStopped(Exception):
    """A text step's request is gone: its thread ends at its next piece."""


def engine_step_gate(engine: object) -> FairStepGate | None:
    """An engine's step gate (the transformers engine on a CPU); None for other engines."""
    gate = getattr(engine, "step_gate", None)
    return gate if isinstance(gate, FairStepGate) else None


class TextTurns:
    """Turns for text steps between keys, piece by piece in a step gate (the module docstring, "Text steps").

    `gate`: the engine's step gate, looked up at each step's start, as `CpuTurns` does; None (no engine gate: a GPU
    engine, or none loaded yet): a gate of the text steps' own."""

    def __init__(self, gate: Callable[[], FairStepGate | None]) -> None:
        self._gate = gate
        self._own = FairStepGate()
        self._serial: dict[
            str | None, asyncio.Lock
        ] = {}  # a key's steps one at a time (keys waiting or stepping)
        self._asking: Counter[str | None] = Counter()

    async def run(self, key: str | None, plan: Callable[[Callable[[], None]], T]) -> T:
        """`plan(pause)` in a worker thread as a text step of `key`, after the key's earlier steps: each stretch of
        it between two calls of `pause()` is one turn in the gate. Cancelled, the step stops at its next `pause()`,
        and the key's next step starts once this one's thread has ended."""
        serial = self._serial.setdefault(key, asyncio.Lock())
        self._asking[key] += 1
        try:
            async with serial:
                pause = _Pause(self._gate() or self._own, key)
                work = asyncio.ensure_future(asyncio.to_thread(_step, pause, plan))
                try:
                    return await asyncio.shield(work)
                except asyncio.CancelledError:
                    pause.stopped = True
                    with contextlib.suppress(Exception):
                        await work
                    raise
        finally:
            self._asking[key] -= 1
            if not self._asking[key]:
                del self._asking[key], self._serial[key]


def _step(pause: _Pause, plan: Callable[[Callable[[], None]], T]) -> T:
    pause()  # the first piece's turn
    try:
        return plan(pause)
    finally:
        pause.end()


class _Pause:
    """Called by a text step between its pieces, in its worker thread: hands its turn in the gate back (the piece's
    seconds charged to the key) and waits for the next."""

    def __init__(self, gate: FairStepGate, key: str | None) -> None:
        self.gate, self.key = gate, key
        self.stopped = False
        self._turn: contextlib.AbstractContextManager[None] | None = None

    def __call__(self) -> None:
        self.end()
        if self.stopped:
            raise TextStepStopped
        turn = self.gate.turn(self.key)
        turn.__enter__()
        self._turn = turn

    def end(self) -> None:
        """Hand the turn back, if held."""
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.__exit__(None, None, None)
