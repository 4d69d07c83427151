"""Each voice's speaking rate as measured on its earlier output, per language: where a stream starts from it, the
incremental aligner places the words it must send before their pause is heard at the voice's rate rather than the
language-blind prior (`core.align.incremental.PRIOR_RATE`); a voice can speak at half or twice the prior's rate.

Rates are expected units (`core.align.units.expected_units`) per voiced second, so they are only comparable within
one language: the key is (owner, voice, language), where the voice names what sets its pace (`Voice.rate_key`: its id
and speed label). Each rate comes with the speech it was measured on, which a stream weighs it by. Scoped by the API
key that made the speech, like every cache shared between keys: a per-request reference voice's id comes from its
recording's hash, and one key's timestamps must not show whether another key used that recording. Process-local and
bounded; losing it costs only the first stream's accuracy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

MEMORY_S = 30.0  # a new measurement of this much speech weighs as much as everything remembered
CAPACITY = 4096  # (owner, voice, language) entries kept, least recently used dropped


@dataclass(frozen=True)
class MeasuredRate:
    """A voice's speaking rate (expected units per voiced second) and the seconds of its speech it was measured on."""

    rate: float
    seconds: float


class SpeakingRates:
    """Thread-safe map (owner, voice, language) -> measured rate (units per voiced second); owner None: keyless."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._rates: OrderedDict[tuple[str | None, str, str], tuple[float, float]] = (
            OrderedDict()
        )  # -> (rate, seconds)
        self._lock = threading.Lock()

    def get(self, owner: str | None, voice: str, language: str) -> MeasuredRate | None:
        """The voice's rate in `language` as `owner` heard it (measured on at most MEMORY_S), None when it has not
        been measured."""
        key = (owner, voice, language)
        with self._lock:
            found = self._rates.get(key)
            if found is None:
                return None
            self._rates.move_to_end(key)
            return MeasuredRate(found[0], min(found[1], MEMORY_S))

    def observe(self, owner: str | None, voice: str, language: str, rate: float, seconds: float) -> None:
        """`rate` measured on `seconds` of the voice's speech: blended with what is remembered, by speech measured
        (at most MEMORY_S remembered), so the rate follows a voice that changes without one odd text ruling it."""
        if not (rate > 0 and seconds > 0 and rate < float("inf")):
            return
        key = (owner, voice, language)
        with self._lock:
            old_rate, old_s = self._rates.pop(key, (rate, 0.0))
            kept = min(old_s, MEMORY_S)
            blended = (old_rate * kept + rate * seconds) / (kept + seconds)
            self._rates[key] = (blended, kept + seconds)
            while len(self._rates) > self.capacity:
                self._rates.popitem(last=False)
