"""The scheduler's queues: a stream's handle, through which its windows go in, and the entries that wait in the
pending lists (a window, or a model call) in deadline order (`urgency`). The scheduler (`scheduler.py`) owns the lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from services.device.calls import ModelCallKind, SchedulerPolicy
from services.device.windows import DecodeWindow, SRWindow, StreamDeadline, WaitReason, WindowKind
from services.device.work_class import WorkClass


class WindowQueue(Protocol):
    """What a stream's handle submits to: the scheduler (`CodecScheduler`), named here without importing it."""

    @property
    def policy(self) -> SchedulerPolicy: ...

    async def submit(
        self, stream: StreamHandle, kind: WindowKind, window: DecodeWindow | SRWindow
    ) -> np.ndarray: ...

    async def submit_many(
        self, stream: StreamHandle, kind: WindowKind, windows: Sequence[DecodeWindow | SRWindow]
    ) -> list[np.ndarray]: ...

    def close_stream(self, handle: StreamHandle) -> None: ...


@dataclass(eq=False)
class PendingWindow:
    """One submitted window waiting in a pending list."""

    kind: WindowKind
    window: DecodeWindow | SRWindow
    stream: StreamHandle
    deadline: float
    seq: int
    submitted: float
    future: asyncio.Future[np.ndarray]
    # Fixed at submission and read on every plan (a plan scans ~40 pending windows at 48 kHz under load):
    units: int  # device work units: wave-span tokens (decode) or samples (SR): what buckets and bounds count
    span: tuple[int, int] | None  # decode: the window's wave span (SchedulerPolicy.units)
    bucket: (
        int | None
    )  # the smallest length bucket holding `units`; None: longer than every bucket, or a true end
    # of a length no bucket has
    true_end: (
        bool  # an SR window at its stream's true end: never padded (in a bucket only when exactly its length)
    )
    first: bool  # submitted before its stream's first audio left: part of what a newcomer's first audio waits
    # Why it was left out of the last plan that looked at it (`decided`: that plan's number)
    waiting: WaitReason = "queued"
    decided: int = 0


@dataclass(eq=False)
class PendingModelCall:
    """One model call (`CodecScheduler.run_model_call`) waiting for the device."""

    kind: ModelCallKind
    fn: Callable[[], Any]
    deadline: float
    seq: int
    submitted: float
    future: asyncio.Future[Any]


def urgency(p: PendingWindow | PendingModelCall) -> tuple[float, int]:
    """The pending lists' order: deadline, then submission."""
    return p.deadline, p.seq


# A stream past its first second of audio (50 kept tokens) is settled: its first-second windows, which decode ~3.5
# tokens per kept one, are behind it (admission may read the codec's cost of settled streams alone: codec_cost.py).
SETTLED_TOKENS = 50


class StreamHandle:
    """One stream's place in the scheduler: its windows go in through here, ordered by its `playback` deadline."""

    def __init__(
        self,
        scheduler: WindowQueue,
        stream_id: int,
        playback: StreamDeadline,
        owner: str | None = None,
        work_class: WorkClass = "live",
        super_resolved: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.id = stream_id
        self.playback = playback
        self.owner = owner  # the API key whose stream this is (admission's share per key), None: keyless
        self.work_class: WorkClass = work_class
        self.super_resolved = super_resolved  # AP-BWE after the codec (admission's carried streams weigh it)
        self.closed = False
        # kept tokens of its decode windows done so far (the device's accounting counts them)
        self.decoded_tokens = 0

    @property
    def settled(self) -> bool:
        return self.decoded_tokens >= SETTLED_TOKENS

    async def decode(self, window: DecodeWindow) -> np.ndarray:
        return await self.scheduler.submit(self, "decode", window)

    async def decode_all(self, windows: Sequence[DecodeWindow]) -> list[np.ndarray]:
        """Several decode windows of this stream at once, their kept audio in order (`asyncio.gather` over `decode`
        made a task per window, and a wake-up of each, for every decoded chunk)."""
        return await self.scheduler.submit_many(self, "decode", windows)

    async def super_resolve(self, window: SRWindow) -> np.ndarray:
        return await self.scheduler.submit(self, "sr", window)

    async def super_resolve_all(self, windows: Sequence[SRWindow]) -> list[np.ndarray]:
        """Several windows of this stream at once (a decoded chunk is ~3 AP-BWE windows), their kept audio in order."""
        return await self.scheduler.submit_many(self, "sr", windows)

    def close(self) -> None:
        self.scheduler.close_stream(self)
