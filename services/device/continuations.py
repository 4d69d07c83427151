"""Continuation admission: a key's next sentence within a reply is admitted like the stream it continues.

Clients that open one HTTP stream per sentence (Pipecat's ElevenLabs HTTP, Cartesia HTTP and OpenAI services,
LiveKit's StreamAdapter) ask admission again for every sentence of a reply, so one refusal mid-reply cut the rest of
it: the listener heard half an answer. Each live stream of a key that closes leaves one continuation for that key,
usable until `window_s` after the later of its close and the moment its listener runs out of its audio (while it
still plays, and shortly after). The key's next new stream in that time takes it and is admitted without asking
admission's rules (nor counted by them: the load it brings is the load of the stream it replaces, already measured).

Bounded so it cannot be used to pass admission: one continuation per closed stream, taken by one new stream of the
same key within that window; a stream that had none never leaves more than one. A key therefore never holds more
streams through continuations than admission gave it: a flood of new streams still meets every rule. The other
refusals (a faulted GPU, a model not ready, a first-audio backlog, credits, rate limits) are not continuations'.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol


class ClosedStream(Protocol):
    """What a closing live stream tells (services/device/queueing.py:StreamHandle)."""

    owner: str | None

    @property
    def playback(self) -> _Playback: ...


class _Playback(Protocol):
    @property
    def started(self) -> bool: ...

    def deadline(self) -> float: ...


class Continuations:
    """Per key, the expiry times of the continuations its closed streams left (oldest first)."""

    def __init__(self, clock: Callable[[], float], window_s: float = 2.0) -> None:
        self.clock = clock
        self.window_s = window_s
        self._left: dict[str, deque[float]] = {}
        self._sweep_at = 64  # keys held before the expired ones are dropped (keys that never came back)
        self.taken = 0  # streams admitted as continuations

    def note_closed(self, stream: ClosedStream) -> None:
        """A live stream closed: its key may continue it until `window_s` after its close or its listener's end."""
        if self.window_s <= 0:
            return
        now = self.clock()
        playback = stream.playback
        plays_until = playback.deadline() if playback.started else now  # whole-body: from arrival
        self._left.setdefault(stream.owner or "", deque()).append(max(now, plays_until) + self.window_s)
        if len(self._left) > self._sweep_at:
            self._left = {k: d for k, d in self._left.items() if any(t >= now for t in d)}
            self._sweep_at = 2 * len(self._left) + 64

    def take(self, key: str | None) -> bool:
        """Whether a new stream of `key` continues one of its closed streams (the one whose window ends first is
        used up); False: it asks admission like any new stream."""
        left = self._left.get(key or "")
        if not left:
            return False
        now = self.clock()
        alive = sorted(t for t in left if t >= now)
        if not alive:
            del self._left[key or ""]
            return False
        alive.pop(0)
        self._left[key or ""] = deque(alive)
        self.taken += 1
        return True

    def waiting(self) -> int:
        """Continuations not yet taken or expired, every key together (operators' view)."""
        now = self.clock()
        return sum(1 for left in self._left.values() for t in left if t >= now)
