"""Load shedding by first-audio wait: refuse new work (503 `SERVER_OVERLOADED` with Retry-After) while the
oldest admitted request of this process has waited longer than `TTS_SHED_FIRST_AUDIO_S` for its first audio.

Why that signal: a request admitted now waits behind every one still waiting, so once the oldest has waited past
the bound, a new one would too; refusing it early lets the client (or the load balancer) go to another container
instead of queueing for 14-17 s. It needs no model of throughput, and it clears itself as soon as the backlog
starts speaking. One backlog per process, filled by the request accounting (started -> first audio or end).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from services.errors import SynthesisError


class FirstAudioBacklog:
    """Admitted requests still waiting for their first audio, by token, with the time each was admitted."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._waiting: dict[object, float] = {}
        self._lock = threading.Lock()  # accounting runs on the event loop; tests and threads may look too

    def enter(self, token: object) -> None:
        with self._lock:
            self._waiting[token] = self.clock()

    def leave(self, token: object) -> None:
        with self._lock:
            self._waiting.pop(token, None)

    def __len__(self) -> int:
        return len(self._waiting)

    def oldest_wait_s(self) -> float:
        with self._lock:
            oldest = min(self._waiting.values(), default=None)
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    def check(self, bound_s: float) -> None:
        """SynthesisError SERVER_OVERLOADED when the oldest waiter is past `bound_s` (0: never)."""
        if bound_s <= 0:
            return
        waited = self.oldest_wait_s()
        if waited > bound_s:
            raise SynthesisError(
                "SERVER_OVERLOADED",
                f"This server is overloaded: admitted requests have waited {waited:.0f} s for "
                f"their first audio (the bound is {bound_s:g} s); retry shortly or on another server.",
                retry_after=max(1, math.ceil(bound_s / 2)),
            )


BACKLOG = FirstAudioBacklog()
