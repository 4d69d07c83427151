"""When the codec scheduler may run background work (long-form jobs, `work_class.py`): only in device time live
streams do not need.

A background stream has no listener, so its windows have no deadline that matters; they wait in their own queue,
behind every live window, and a background call starts only when the scheduler has no live window or model call to
run and this gate lets it:

- **Paused first when live work is behind.** A live window that ended past its deadline within the last
  `busy_window_s`, a live stream holding less than `min_slack_s` of audio (its next window is due soon), or a live
  newcomer still waiting for its first audio: no background call starts. A live window that arrives while a background call runs waits for that one
  call only (at most one background call is on the device at a time).
- **A bounded share under live load.** While any live stream is open, background calls hold the device at most
  `background_share` of the last `busy_window_s`. With no live stream open, background work takes the whole device.
- **Never in admission's measures.** Its device seconds go to their own account (`SchedulerStats.background_seconds`,
  `device_seconds_total{work_class="background"}`), not the busy ratio, the codec cost per stream, the stream
  counts or the misses admission reads: a job never makes a live stream look unaffordable.

With no background stream open nothing here is read: the live path's decisions and cost are unchanged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class BackgroundPolicy:
    """How much of the device background work may take (TTS_BACKGROUND_SHARE, TTS_BACKGROUND_MIN_SLACK_MS)."""

    share: float = 0.25  # most of the device background calls hold while live streams are open (0: none then)
    min_slack_s: float = (
        0.5  # every playing live stream must hold this much audio for a background call to start
    )
    retry_s: float = (
        0.02  # how soon a paused background queue looks again when nothing else wakes the scheduler
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"background share must be within [0, 1], got {self.share}")
        if self.min_slack_s < 0 or self.retry_s <= 0:
            raise ValueError("background min_slack_s must be >= 0 and retry_s > 0")


class BackgroundGate:
    """Background calls' recent device seconds, and whether one more may start now."""

    def __init__(self, policy: BackgroundPolicy, window_s: float) -> None:
        self.policy = policy
        self.window_s = window_s
        self._recent: deque[tuple[float, float]] = deque()  # (end time, device seconds) within window_s
        self.pauses = 0  # times a waiting background call was held back (tests, the bench)

    def note_call(self, ended: float, seconds: float) -> None:
        self._recent.append((ended, seconds))
        self._trim(ended)

    def share(self, now: float) -> float:
        """Background device seconds over the last `window_s`, as a share of it."""
        self._trim(now)
        return sum(seconds for _, seconds in self._recent) / self.window_s

    def may_start(self, now: float, *, live_streams: int, live_misses: int, live_min_slack: float) -> bool:
        """Whether a background call may start now (the scheduler has no live work to run)."""
        if live_streams:
            policy = self.policy
            if live_misses or live_min_slack < policy.min_slack_s or self.share(now) >= policy.share:
                self.pauses += 1
                return False
        return True

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
