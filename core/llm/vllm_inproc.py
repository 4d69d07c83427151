"""vLLM's engine core in the serving process (`TTS_LLM_ENGINE_LAYOUT=inprocess`): one CUDA context for the engine and
the codec, whose calls then overlap the engine's steps on a stream of their own (services/device/device_layout.py).

`InprocessLLM` is the part of `AsyncLLM`'s interface `VLLMEngine` uses (generate, abort, sleep, wake_up, shutdown, the
counts), over vLLM's `LLMEngine` built with its engine core in this process: `VLLM_ENABLE_V1_MULTIPROCESSING=0` gives
vLLM's in-process client and, on one GPU, its one-process executor. Not `AsyncLLM` itself: it starts its engine core in
a process of its own whatever that variable says (it always builds the multiprocess client); only `LLMEngine` reads it.

One thread, `vllm-engine-core`, owns the `LLMEngine` (it is not thread-safe): every call into it (a request added or
aborted, sleep, wake-up) is queued to that thread and runs between two steps. The thread steps while requests are
unfinished and otherwise waits for a call; each step's outputs reach their requests' queues on the event loop in one
hop. A step that raises fails every request in flight and leaves the engine dead (`errored`), as `AsyncLLM` does when
its engine core dies. The engine's Python holds the process's GIL while it runs (the simulator charges it:
bench/sim/inprocess_engine.py); waiting on the GPU releases it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

log = logging.getLogger(__name__)

MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
JOIN_TIMEOUT_S = 30.0  # shutdown's wait for a step in progress to end


def apply_layout(layout: str) -> None:
    """Set vLLM's process layout for this process: before vLLM is imported or an engine built, since vLLM caches its
    environment once an engine core has started in the process."""
    os.environ[MULTIPROCESSING_ENV] = "0" if layout == "inprocess" else "1"


class EngineDead(RuntimeError):
    """The in-process engine core stopped (a step raised, or it was shut down): no request can run on it."""


class InprocessLLM:
    """`AsyncLLM`'s interface as `VLLMEngine` uses it, over an `LLMEngine` stepped on a thread of its own (module doc)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.model_config = engine.model_config
        self.renderer = getattr(engine, "renderer", None)
        self.output_processor = engine.output_processor
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _streams between the loop and the engine thread
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = {}
        self.dead_error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="vllm-engine-core", daemon=True)
        self._thread.start()

    @classmethod
    def from_engine_args(cls, args: Any, stat_loggers: list[Any] | None = None) -> InprocessLLM:
        """Build the engine in this process; refuses if vLLM put its core in a process of its own anyway (the
        variable was set after vLLM cached its environment)."""
        if os.environ.get(MULTIPROCESSING_ENV) != "0":
            raise RuntimeError(
                f"the in-process layout needs {MULTIPROCESSING_ENV}=0 before vLLM starts (apply_layout)"
            )
        from vllm.v1.engine.llm_engine import LLMEngine

        engine = LLMEngine.from_engine_args(args, stat_loggers=stat_loggers, enable_multiprocessing=False)
        if type(engine.engine_core).__name__ != "InprocClient":
            engine.engine_core.shutdown()
            raise RuntimeError(
                f"vLLM started its engine core in a process of its own ({type(engine.engine_core).__name__}): "
                f"{MULTIPROCESSING_ENV} was read before it was set to 0"
            )
        return cls(engine)

    # ---- AsyncLLM's interface, on the event loop
    @property
    def errored(self) -> bool:
        return self.dead_error is not None

    def get_num_unfinished_requests(self) -> int:
        return int(self._engine.get_num_unfinished_requests())

    async def generate(
        self, prompt: Any, params: Any, request_id: str, *, priority: int = 0
    ) -> AsyncGenerator[Any, None]:
        """The request's outputs as the engine's steps make them; closing the generator early aborts it."""
        self._check_alive()
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        with self._lock:
            if request_id in self._streams:
                raise ValueError(f"request id {request_id!r} is already generating")
            self._streams[request_id] = (asyncio.get_running_loop(), outputs)
        finished = False
        try:
            await self._call(lambda: self._engine.add_request(request_id, prompt, params, priority=priority))
            while not finished:
                out = await outputs.get()
                if isinstance(out, BaseException):
                    raise EngineDead(f"the in-process engine core stopped: {out!r}") from out
                finished = bool(out.finished)
                yield out
        finally:
            with self._lock:
                self._streams.pop(request_id, None)
            if not finished and not self.errored and not self._closed:
                self._submit(lambda: self._engine.abort_request([request_id]))

    async def abort(self, request_id: str) -> None:
        if not self.errored and not self._closed:
            await self._call(lambda: self._engine.abort_request([request_id]))

    async def sleep(self, level: int = 1) -> None:
        await self._call(lambda: self._engine.sleep(level))

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return bool(await self._call(lambda: self._engine.wake_up(tags)))

    async def is_sleeping(self) -> bool:
        return bool(await self._call(self._engine.is_sleeping))

    def shutdown(self) -> None:
        """Stop stepping (a step in progress ends first), fail what is in flight, release the engine core."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)
        self._fail(EngineDead("the in-process engine core was shut down"))
        self._engine.engine_core.shutdown()

    # ---- calls into the engine, run on its thread
    def _check_alive(self) -> None:
        if self._closed or self.dead_error is not None:
            raise EngineDead(f"the in-process engine core is not running ({self.dead_error or 'shut down'})")

    def _submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((fn, future))
        self._wake.set()
        return future

    async def _call(self, fn: Callable[[], Any]) -> Any:
        self._check_alive()
        return await asyncio.wrap_future(self._submit(fn))

    def _run_calls(self) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - the caller gets it (a bad request fails alone)
                    future.set_exception(exc)

    def _run(self) -> None:
        while True:
            self._run_calls()
            if self._closed:
                return
            try:
                if not self._engine.has_unfinished_requests():
                    self._wake.wait()
                    self._wake.clear()
                    continue
                outputs = self._engine.step()
            except BaseException as exc:  # noqa: BLE001 - every request in flight hears of it
                log.exception("the in-process vLLM engine core failed a step")
                self._fail(exc)
                return
            if outputs:
                self._deliver(outputs)

    def _deliver(self, outputs: list[Any]) -> None:
        """Each output to its request's queue, one hop per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], Any]]] = {}
        with self._lock:
            for out in outputs:
                entry = self._streams.get(out.request_id)
                if entry is not None:
                    by_loop.setdefault(entry[0], []).append((entry[1], out))
        for loop, items in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_put_all, items)

    def _fail(self, exc: BaseException) -> None:
        if self.dead_error is None:
            self.dead_error = exc
        with self._lock:
            streams = list(self._streams.values())
        for loop, outputs in streams:
            if not loop.is_closed():
                loop.call_soon_threadsafe(outputs.put_nowait, exc)
        while True:
            try:
                _, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(EngineDead(f"the in-process engine core stopped: {exc!r}"))


def _put_all(items: list[tuple[asyncio.Queue[Any], Any]]) -> None:
    for outputs, out in items:
        outputs.put_nowait(out)
