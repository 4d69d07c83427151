"""The streams a device is known to carry: admitted without waiting for the measures (admission.py, rule 0).

Admission's measures lag: a stream's cost shows in the LLM's pace and the codec's seconds only once its windows run,
so in the first seconds of a burst no measure tells a burst the device carries from a flood it cannot. Below a count
the device is known to carry at once, arriving that fast, there is nothing to tell apart: such newcomers are admitted
on the count alone, and the measured rules decide above it. What the device is known to carry is stated per GPU and
engine layout (`KNOWN_CARRIED`) from the goal bursts that ran none dry with every stream admitted (the simulator at
that GPU's measured costs: docs/decisions/carried-streams.md); a GPU or layout not in the table has none, and every
newcomer goes through the measures. A 48 kHz stream (AP-BWE after the codec) weighs more than a 16 kHz one: the load
is the open streams of each kind over the count of that kind the device carries, summed.

What still refuses inside the floor: a missed deadline (rule 1): a device slower than its figure, or work beside the
streams that no figure counts (clones, alignment), shows there first, and nothing is admitted past a miss."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.device.device_layout import DeviceSharing
from shared.settings.model import parse_carried


@dataclass(frozen=True)
class CarriedStreams:
    """Live streams a device carries at once, every one admitted, none running dry: `plain` at the codec's 16 kHz,
    `super_resolved` through AP-BWE, each arriving all within `within_s` (the fastest such burst that ran)."""

    plain: int
    super_resolved: int
    within_s: float

    def __post_init__(self) -> None:
        if self.plain < 1 or self.super_resolved < 1 or not self.within_s > 0:
            raise ValueError(f"carried streams must be positive counts over a positive time, got {self}")

    def weight(self, super_resolved: bool) -> float:
        """One stream's share of what the device carries."""
        return 1.0 / (self.super_resolved if super_resolved else self.plain)

    def load(self, plain: int, super_resolved: int) -> float:
        """The share of what the device carries that these live streams hold (1.0: all of it)."""
        return plain / self.plain + super_resolved / self.super_resolved


# GPU (as CUDA names it, matched as a substring) and the device its engine layout gives -> what it carries. H200 on one
# CUDA context (the in-process engine core): 250 at 16 kHz and 200 at 48 kHz (AP-BWE TF32 or fp32), each within 5 s,
# at its measured codec costs, vLLM's published step and the estimated overlap 0.5.
KNOWN_CARRIED: dict[tuple[str, DeviceSharing], CarriedStreams] = {
    ("H200", "overlapped"): CarriedStreams(plain=250, super_resolved=200, within_s=5.0),
}


def known_carried(gpu_name: str, sharing: DeviceSharing) -> CarriedStreams | None:
    """What `KNOWN_CARRIED` states for this GPU on this device (None: nothing known)."""
    for (gpu, on), carried in KNOWN_CARRIED.items():
        if on == sharing and gpu.lower() in gpu_name.lower():
            return carried
    return None


# Rule 0 counts the load admitted within this many of the figure's `within_s`: the figure is one burst onto an idle
# device, so the count admits again only once its cohort is out of the window. A cohort admitted together ends
# together, and refilling the room it leaves at once is the measures' to judge: counted within one window, the
# count refilled a 48 kHz flood's first cohort as it ended and ran 10 newcomers dry (docs/decisions/carried-streams.md).
RECENT_WINDOWS = 2.0
# And to a burst onto a device this lightly loaded at most: the live streams admitted before that window hold at most
# this share of what it carries. Settled streams are what the measures read well.
SETTLED_SHARE = 0.5


class CarriedFloor:
    """Admission's rule 0: a newcomer fits while the live streams and it hold at most all the device carries, the
    load admitted within `RECENT_WINDOWS` of the figure's `within_s` with it at most all of it too (the figure ran
    that many arriving that fast onto an idle device, not more: streams shorter than the window could otherwise let a
    flood through on the live count), and the streams admitted before that window at most `SETTLED_SHARE` of it."""

    def __init__(self, carried: CarriedStreams, clock: Callable[[], float]) -> None:
        self.carried = carried
        self.clock = clock
        self._recent: deque[tuple[float, float]] = deque()  # (admitted at, weight) within the window
        self._suspended_until = -math.inf

    def _recent_load(self, now: float) -> float:
        while self._recent and self._recent[0][0] <= now - RECENT_WINDOWS * self.carried.within_s:
            self._recent.popleft()
        return sum(weight for _, weight in self._recent)

    def suspend(self, seconds: float) -> None:
        """A deadline was missed: the device is not carrying what its figure says (slower than measured, or work
        beside the streams no figure counts), so the measures decide alone for `seconds`."""
        self._suspended_until = max(self._suspended_until, self.clock() + seconds)

    def fits(self, plain: int, super_resolved: int, newcomer_super_resolved: bool) -> bool:
        """Whether a newcomer fits (class doc), unless suspended after a miss (`suspend`)."""
        if self.clock() < self._suspended_until:
            return False
        weight = self.carried.weight(newcomer_super_resolved)
        live, recent = self.carried.load(plain, super_resolved), self._recent_load(self.clock())
        if live + weight > 1.0 + 1e-9 or recent + weight > 1.0 + 1e-9:
            return False
        # the settled load; recent streams that already ended make it an underestimate (the rule errs to admitting)
        return live - recent <= SETTLED_SHARE + 1e-9

    def note_admitted(self, super_resolved: bool) -> None:
        """Any admission (on the floor or the measures) counts toward the recent load."""
        self._recent.append((self.clock(), self.carried.weight(super_resolved)))


def carried_for(setting: str, gpu_name: str | None, sharing: DeviceSharing) -> CarriedStreams | None:
    """TTS_ADMISSION_CARRIED read for this device: off, explicit ('PLAIN,SUPER_RESOLVED,WITHIN_S', checked where the
    settings are read), or auto: what `KNOWN_CARRIED` states for `gpu_name` (None: not a GPU) on `sharing`."""
    if setting == "off":
        return None
    if setting != "auto":
        return CarriedStreams(*parse_carried(setting))
    return None if gpu_name is None else known_carried(gpu_name, sharing)
