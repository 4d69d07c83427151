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
(docs/benchmarks.md, `flood_fairness`). Device seconds have no owner: the scheduler's calls batch many streams'
windows.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping


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
