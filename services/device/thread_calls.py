"""A worker thread's way to run a model call as the codec scheduler's device work.

Reference encodes and CTC alignment run in worker threads (they are long and blocking, and their callers manage
their own limits); their model calls still reach the device only through the scheduler, which runs them between
codec calls in deadline order and counts their time for admission (`CodecScheduler.run_model_call`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from services.device.calls import ModelCallKind

if TYPE_CHECKING:
    from services.device.scheduler import CodecScheduler

T = TypeVar("T")
POLL_S = 0.05  # how often a waiting thread looks at its stop event


class ModelCallAbandoned(Exception):
    """The caller's stop event was set while its model call waited for the device: the call never ran."""


def run_from_thread(
    scheduler: CodecScheduler,
    kind: ModelCallKind,
    fn: Callable[[], T],
    *,
    stop: threading.Event | None = None,
) -> T:
    """Blocking: `fn` run by `scheduler` on its device, from a worker thread. Without a serving loop (offline tools,
    a runtime whose loop has ended) there is no live work to share the device with, and `fn` runs here."""
    loop = scheduler.serving_loop
    if loop is None:
        return fn()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("run_from_thread is for worker threads; on the event loop await run_model_call")
    future = asyncio.run_coroutine_threadsafe(scheduler.run_model_call(kind, fn), loop)
    while True:
        try:
            return future.result(timeout=POLL_S)
        except concurrent.futures.TimeoutError:
            if stop is not None and stop.is_set():
                future.cancel()  # before a device thread takes it, the call never runs
                raise ModelCallAbandoned(f"the {kind} call was abandoned") from None
