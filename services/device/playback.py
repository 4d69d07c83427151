"""One stream's playback clock as its listener hears it, and the pacing that keeps the stream near it.

Delivery owns this: the synthesis job tells the clock each time audio leaves for the client (`note_audio`); the first
one starts it. The codec scheduler reads only what orders and judges its windows (`deadline()`, `started`, `heard`:
the `StreamDeadline` protocol in scheduler.py), and never paces a stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class PlaybackClock:
    """When a stream's client runs dry at real-time playback, counted from its first audio.

    `deadline()` is that moment; before the first audio it is the stream's arrival, so a newcomer's first window is
    the most urgent. `clock` must be the codec scheduler's (deadlines are compared with its clock); `sleep` is
    pacing's wait (a virtual one in tests)."""

    def __init__(
        self,
        arrival: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.arrival = arrival
        self.clock = clock
        self.sleep = sleep
        self.first_audio_at: float | None = None
        self.audio_seconds = 0.0
        # A listener plays this stream as it comes: a missed deadline is an underrun, which admission must see. A
        # non-streaming job (start_playback) has deadlines only for ordering: nobody hears it miss one.
        self.realtime = True

    def note_audio(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.first_audio_at is None:
            self.first_audio_at = self.clock()
        self.audio_seconds += seconds

    def start_playback(self, at: float) -> None:
        """Start the clock at `at` if no audio has started it yet: a non-streaming job plays "from its arrival", so
        its windows get deadlines as a stream's would, neither starved nor starving."""
        self.realtime = False
        if self.first_audio_at is None:
            self.first_audio_at = at

    @property
    def started(self) -> bool:
        """The clock runs: deadlines count from the first audio, not from the arrival."""
        return self.first_audio_at is not None

    @property
    def heard(self) -> bool:
        """A listener is playing the stream as it comes: a window finished after its deadline is an underrun."""
        return self.first_audio_at is not None and self.realtime

    def deadline(self) -> float:
        if self.first_audio_at is None:
            return self.arrival
        return self.first_audio_at + self.audio_seconds

    def buffered_seconds(self) -> float:
        """Audio the client holds that it has not played yet (real-time playback from the first audio)."""
        if self.first_audio_at is None:
            return 0.0
        return max(0.0, self.first_audio_at + self.audio_seconds - self.clock())

    async def pace(self, max_ahead_s: float) -> None:
        """Wait while the stream is more than `max_ahead_s` of audio ahead of its client's playback."""
        while True:
            ahead = self.buffered_seconds() - max_ahead_s
            if ahead <= 0:
                return
            await self.sleep(ahead)
