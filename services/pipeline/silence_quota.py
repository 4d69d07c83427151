"""The break silence each API key may still add, for the whole process: one `SilenceWindow` (processing/ssml.py) per
key, shared by every request and socket utterance of that key (SSML breaks cost device time and nothing is spoken)."""

from __future__ import annotations

from collections import OrderedDict

from processing.ssml import MAX_BREAK_S_PER_MINUTE, SilenceWindow


class SilenceWindows:
    """One `SilenceWindow` per API key, the least recently used forgotten past `capacity` (a forgotten key starts
    full again: at most one extra minute's silence for a key idle that long)."""

    def __init__(self, capacity: int = 10_000, per_minute: float = MAX_BREAK_S_PER_MINUTE) -> None:
        self.capacity = capacity
        self.per_minute = per_minute
        self._windows: OrderedDict[str, SilenceWindow] = OrderedDict()

    def of(self, key_id: str) -> SilenceWindow:
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = SilenceWindow(self.per_minute)
            while len(self._windows) > self.capacity:
                self._windows.popitem(last=False)
        self._windows.move_to_end(key_id)
        return window


BREAK_SILENCE = SilenceWindows()  # the process's windows (its event loop touches them; no lock)
