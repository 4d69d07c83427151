"""Fakes for the codec scheduler's tests: a clock the test sets, and a runner whose calls cost time on it."""

from __future__ import annotations

import asyncio

import numpy as np

from services.codec import DecodeWindow
from services.codec.calls import Call


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class RecordingRunner:
    """Records every call; each one advances the fake clock by `cost`. Decode rows come back filled with their first
    id (a window's tag), SR rows with zeros, each of its kept length."""

    def __init__(self, clock: FakeClock, cost: float = 0.01, hop: int = 320) -> None:
        self.clock, self.cost, self.hop = clock, cost, hop
        self.calls: list[Call] = []

    async def run(self, call: Call) -> list[np.ndarray]:
        self.calls.append(call)
        await asyncio.sleep(0)
        self.clock.now += self.cost
        out = []
        for w in call.windows:
            n = (w.keep_end - w.keep_start) * (self.hop if call.kind == "decode" else 1)
            out.append(np.full(n, float(w.ids[0]) if call.kind == "decode" else 0.0, np.float32))
        return out


def window(n: int, tag: int = 0) -> DecodeWindow:
    """A decode window of `n` ids, all `tag`, every token kept."""
    return DecodeWindow(ids=np.full(n, tag, np.int32), d_vector=None, keep_start=0, keep_end=n)
