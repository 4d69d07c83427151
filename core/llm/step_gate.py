"""Whose forward step runs next on an engine that runs one step at a time (the transformers engine on CPU).

A plain lock hands the model to whichever thread wins the race, so a key with four requests gets four steps for
every one of another key's: the other key's first audio waits behind the flood. `FairStepGate` hands the next step
to the waiting request whose owner (the API key) has used the least engine time lately (each owner's step seconds,
decayed with a half-life of a few seconds), first come first served between equals. A newcomer therefore steps
at once until it has used as much as the busiest owner, and steady owners share the engine evenly, whatever their
request counts. A live request also costs its owner a fixed `REQUEST_COST_S` when it starts (its work outside the
steps), so many tiny requests rank as the work they make. Background work (long-form jobs) steps only when no live
request waits.

The usage account (`OwnerUsage`) can be shared: on a CPU the codec scheduler charges each key's decode seconds to
the same account and reads the gate's `busy_owners` (services/device/key_share.py `CpuTurns`), so a key's engine and
decode seconds add up, and a heavier key's codec work waits while a lighter key is stepping.

Uncontended, a step costs one condition acquire and a dictionary update.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# How fast past use is forgiven: long enough that a flood's history outweighs a newcomer's first steps, short
# enough that an owner who stopped is an equal again within seconds.
USAGE_HALF_LIFE_S = 4.0
_MAX_OWNERS = 4096  # usage entries kept; the smallest are dropped past this
# How long the gate waits for the owner that just stepped to ask again (its thread samples the next id and hands
# it on between steps): past this it goes to the next waiter (the request ended, or its client is not reading).
RETURN_GRACE_S = 0.005
# What a live request costs its owner in the account when it starts, beside its steps and decodes: the process's
# work for a request outside them (the socket's messages, the key check, credits and the request's row, the
# pipeline's set-up and end) holds the event loop and the GIL and is charged nowhere else, so without it a key's
# stream of one-character requests ranks as light as one long request. Set with bench/bench_flood_fairness.py on
# the CPU demo: 5 ms (the event loop's CPU per request under the synthesis flood) left the other key's first audio
# at ~1.7x its baseline, 20 ms at ~1.4x.
REQUEST_COST_S = 0.02
# How long after its last step an owner still counts as stepping (`busy_owners`): its thread draws, hands the id on
# and asks again within a few milliseconds, and a codec call let in meanwhile would run beside its next steps.
BUSY_AFTER_STEP_S = 0.05


class OwnerUsage:
    """Each owner's used seconds, decayed with a half-life (thread-safe): what the step gate ranks by, and on a CPU
    what the codec scheduler charges a key's decode seconds to."""

    def __init__(
        self, half_life_s: float = USAGE_HALF_LIFE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._decay = math.log(2) / half_life_s
        self.clock = clock
        self._lock = threading.Lock()
        self._used: dict[str | None, tuple[float, float]] = {}  # owner -> (seconds used, as of)

    def usage(self, owner: str | None, now: float | None = None) -> float:
        """The owner's decayed seconds at `now` (default: the clock's now)."""
        with self._lock:
            return self._at(owner, self.clock() if now is None else now)

    def charge(self, owner: str | None, seconds: float, now: float | None = None) -> float:
        """Add `seconds` to the owner's use; its decayed use after."""
        with self._lock:
            now = self.clock() if now is None else now
            used = self._at(owner, now) + seconds
            self._used[owner] = (used, now)
            if len(self._used) > _MAX_OWNERS:
                ranked = sorted(self._used, key=lambda o: self._at(o, now))
                for o in ranked[: len(ranked) // 2]:
                    del self._used[o]
            return used

    def _at(self, owner: str | None, now: float) -> float:
        used, at = self._used.get(owner, (0.0, now))
        return used * math.exp(-self._decay * max(0.0, now - at))


@dataclass
class _Turn:
    owner: str | None
    background: bool
    seq: int
    granted: bool = False


class FairStepGate:
    """A lock for one forward step at a time, granted by owner usage (see the module docstring).

    A request's thread releases the gate between steps (it hands the id on), so the owner that should step next
    is often the one that just stepped and has not asked again yet: the gate then keeps the turn for that owner
    for `return_grace_s` before handing it to the next waiter. Without this, a newcomer could never step twice
    in a row while a flood waits, and would get one step in two instead of all of them.
    """

    def __init__(
        self,
        half_life_s: float = USAGE_HALF_LIFE_S,
        clock: Callable[[], float] = time.monotonic,
        return_grace_s: float = RETURN_GRACE_S,
        usage: OwnerUsage | None = None,
    ) -> None:
        self._clock = clock
        self._grace_s = return_grace_s
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: list[_Turn] = []
        self.account = usage or OwnerUsage(half_life_s, clock)  # owner -> decayed step (and decode) seconds
        self._stepping: tuple[str | None, bool] | None = None  # the owner (and class) holding the gate
        self._stepped_at: dict[str | None, float] = {}  # live owners -> when their last step ended
        self._held_for: tuple[str | None, bool] | None = None  # the owner (and class) the free gate waits for
        self._held_until = 0.0  # time.monotonic(): real time, whatever `clock` is
        self._seq = itertools.count()

    def usage(self, owner: str | None) -> float:
        """The owner's decayed step seconds now (and decode seconds, where the account is shared)."""
        return self.account.usage(owner, self._clock())

    def _usage_at(self, owner: str | None, now: float) -> float:
        return self.account.usage(owner, now)

    def note_request(self, owner: str | None) -> None:
        """A live request of `owner` starts: `REQUEST_COST_S` to its account."""
        self.account.charge(owner, REQUEST_COST_S)

    def busy_owners(self) -> set[str | None]:
        """The live owners stepping now: holding the gate, waiting for it, or done with a step within
        `BUSY_AFTER_STEP_S` (between two steps of one request)."""
        with self._cond:
            now = self._clock()
            for owner in [o for o, t in self._stepped_at.items() if now - t > BUSY_AFTER_STEP_S]:
                del self._stepped_at[owner]
            busy = set(self._stepped_at)
            busy.update(t.owner for t in self._waiting if not t.background)
            if self._stepping is not None and not self._stepping[1]:
                busy.add(self._stepping[0])
            return busy

    @contextmanager
    def turn(self, owner: str | None, *, background: bool = False) -> Iterator[None]:
        """Hold the engine for one step as `owner`."""
        with self._cond:
            turn = _Turn(owner, background, next(self._seq))
            self._waiting.append(turn)
            self._dispatch()
            while not turn.granted:
                self._cond.wait(self._hold_left())
                self._dispatch()
        started = self._clock()
        try:
            yield
        finally:
            with self._cond:
                now = self._clock()
                used = self.account.charge(owner, now - started, now)
                if not background:
                    self._stepped_at[owner] = now
                    if len(self._stepped_at) > _MAX_OWNERS:  # nobody reads busy_owners: keep it bounded
                        self._stepped_at = {
                            o: t for o, t in self._stepped_at.items() if now - t <= BUSY_AFTER_STEP_S
                        }
                self._stepping = None
                self._busy = False
                if self._waiting and (background, used) < self._rank(self._best(now), now)[:2]:
                    self._held_for = (owner, background)
                    self._held_until = time.monotonic() + self._grace_s
                    self._cond.notify_all()  # the waiters' next look is at the hold's end
                self._dispatch()

    def _rank(self, turn: _Turn, now: float) -> tuple[bool, float, int]:
        return (turn.background, self._usage_at(turn.owner, now), turn.seq)

    def _best(self, now: float) -> _Turn:
        return min(self._waiting, key=lambda t: self._rank(t, now))

    def _hold_left(self) -> float | None:
        return None if self._held_for is None else max(0.0, self._held_until - time.monotonic()) + 1e-4

    def _dispatch(self) -> None:
        """Grant the free gate: to the owner it is held for when that owner asks in time, else the best waiter."""
        if self._busy or not self._waiting:
            return
        if self._held_for is not None:
            mine = [t for t in self._waiting if (t.owner, t.background) == self._held_for]
            if mine:
                self._grant(mine[0])
                return
            if time.monotonic() < self._held_until:
                return
        self._grant(self._best(self._clock()))

    def _grant(self, turn: _Turn) -> None:
        self._held_for = None
        self._waiting.remove(turn)
        turn.granted = True
        self._busy = True
        self._stepping = (turn.owner, turn.background)
        self._cond.notify_all()
