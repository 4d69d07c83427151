"""Device runners: what executes one scheduler `Call`, and the model calls the scheduler runs beside them.

`ModelRunner` runs the real BiCodec and AP-BWE in one dedicated device thread: one thread hop per call (never per
chunk or per row), one packed host buffer copied in and one copied out per call (pinned and non-blocking on CUDA),
one host sync per call (the output must reach the host), no range checks (the ids were checked where they entered).
Rows go through the models' padded batch entry points (`BiCodecDecoder.decode_padded`, `SuperResolution.enhance_batch`):
rows right-padded to the call's length bucket, each convolution's input masked beyond a row's valid length. On CUDA a
call whose shape was captured replays its graph (services/device/graphs.py); any other shape runs eager.

Per call shape (kind, length bucket, rows padded, graph or eager) the runner also keeps a count and the seconds its
device thread spent on the calls (packing, copy in, run, copy out, the sync), and on CUDA the device's own time of the
run between two events: `device_time()` reads it (the GPU kit sets each shape beside its isolated replay cost). One
dict update per call in a table of the calling device thread's own, so no lock and no effect on the audio.

`run_model_call` runs a blocking model call (a speaker vector, a reference encode, an alignment) in the same device
threads, between codec calls, ending in a sync on CUDA.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from services.device.calls import Call, CallSecondsRead
from services.device.graphs import CodecGraphs, run_decode
from services.device.windows import DecodeWindow, SRWindow

T = TypeVar("T")


class _Staging:
    """Host buffers of one device thread, grown to the largest call seen and reused (pinned on CUDA: pinning per call
    costs more than the copy). Reuse is safe because every call ends in a sync after its copy out."""

    def __init__(self, pinned: bool) -> None:
        self.pinned = pinned
        self._buffers: dict[tuple[str, torch.dtype], Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        size = int(np.prod(shape))
        buf = self._buffers.get((name, dtype))
        if buf is None or buf.numel() < size:
            buf = torch.empty(max(size, 1), dtype=dtype, pin_memory=self.pinned)
            self._buffers[(name, dtype)] = buf
        return buf[:size].view(shape)


class ModelRunner:
    """The real models behind the scheduler's `DeviceRunner` protocol.

    `graphs`: captured CUDA graphs (capture them before serving); None runs every call eager (the CPU, or a GPU
    without graphs). `threads`: device threads (1 on a GPU: kernels serialise anyway; a CPU may use more)."""

    def __init__(
        self,
        decoder: Any,
        sr: Any | None = None,
        *,
        graphs: CodecGraphs | None = None,
        threads: int = 1,
        call_seconds_read: CallSecondsRead = "dispatch_to_end",
    ) -> None:
        self.decoder = decoder
        self.call_seconds_read = call_seconds_read
        self.sr = sr
        self.graphs = graphs
        self.hop = int(decoder.hop_length)
        self.device = torch.device(decoder.device)
        self.cuda = self.device.type == "cuda"
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="codec-device", initializer=self._own_stream
        )
        self._local = threading.local()
        self.graph_calls = 0
        self.eager_calls = 0
        self._time_tables: list[
            dict[tuple[Any, ...], list[float]]
        ] = []  # one per device thread (each writes only its own)

    def _own_stream(self) -> None:
        """On CUDA each device thread issues its calls on a CUDA stream of its own (the current stream is per thread),
        never the default one: with vLLM's engine core in this process (TTS_LLM_ENGINE_LAYOUT=inprocess) the engine's
        steps and the codec's calls are then two streams of one context, whose kernels the GPU runs side by side
        (services/device/device_layout.py). Every call still ends in a sync of this stream alone. The stream first waits
        for what the default stream holds (the models' weights, copied there at load), once: never per call, which
        would order every codec call behind the engine's kernels."""
        if self.cuda:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.default_stream(self.device))
            torch.cuda.set_stream(stream)

    def device_time(self) -> list[dict[str, Any]]:
        """Cumulative calls and seconds per call shape since start: `seconds` in the device thread per call, and on
        CUDA `device_seconds` of the run itself (CUDA events around the replay or eager model call; else None).
        `length` None: exact-length calls (one row at its own length, or an SR stream's true end)."""
        merged: dict[tuple[Any, ...], list[float]] = {}
        for table in list(self._time_tables):
            for key, (calls, seconds, device) in list(table.items()):
                entry = merged.setdefault(key, [0, 0.0, 0.0])
                entry[0] += calls
                entry[1] += seconds
                entry[2] += device
        return [
            {
                "kind": kind,
                "length": length,
                "rows": rows,
                "graph": graph,
                "calls": int(calls),
                "seconds": seconds,
                "device_seconds": device if self.cuda else None,
            }
            for (kind, length, rows, graph), (calls, seconds, device) in sorted(
                merged.items(), key=lambda item: (item[0][0], item[0][1] or 0, item[0][2], item[0][3])
            )
        ]

    async def run(self, call: Call) -> list[np.ndarray]:
        """The rows alone (tools and tests; the scheduler calls `run_timed`)."""
        return (await self.run_timed(call))[0]

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        """The rows and the call's seconds as `call_seconds_read` says (`DeviceRunner`, `CallSecondsRead`): the
        seconds the device thread spent on it, or its own device seconds where they are known."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_timed_sync, call)

    def _run_timed_sync(self, call: Call) -> tuple[list[np.ndarray], float]:
        started = time.perf_counter()
        rows, replay_s, event_s = self._run(call)
        thread_seconds = time.perf_counter() - started
        if self.call_seconds_read == "own":
            own = replay_s if replay_s is not None else event_s
            return rows, own if own is not None else thread_seconds
        if self.call_seconds_read == "run":
            return rows, event_s if event_s is not None else thread_seconds
        return rows, thread_seconds

    async def run_model_call(self, fn: Callable[[], T]) -> tuple[T, float]:
        """`fn`'s result and the seconds it held a device thread (`DeviceRunner`): a model call beside the codec calls,
        in the same threads, so on a GPU it never overlaps one."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._model_call_sync, fn)

    def _model_call_sync(self, fn: Callable[[], T]) -> tuple[T, float]:
        started = time.perf_counter()
        result = fn()
        if (
            self.cuda
        ):  # its kernels end here: its seconds are its own, and the next codec call does not wait on them
            torch.cuda.current_stream(self.device).synchronize()
        return result, time.perf_counter() - started

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- in the device thread
    def run_sync(self, call: Call) -> list[np.ndarray]:
        """Run one call on the calling thread and return each row's kept samples (float32 copies)."""
        return self._run(call)[0]

    @torch.inference_mode()
    def _run(self, call: Call) -> tuple[list[np.ndarray], float | None, float | None]:
        """The kept rows, its graph's replay timed alone at capture (None: eager), and CUDA events' seconds around
        this run (None on a CPU)."""
        if call.kind == "sr" and self.sr is None:
            raise RuntimeError("an SR call without a super-resolution model")
        started = time.perf_counter()
        graph = self.graphs.get(call) if self.graphs is not None else None
        events = self._events()
        if call.kind == "decode":
            out, offsets = self._decode(call, graph, events)
            scale = self.hop
        else:
            out, offsets = self._super_resolve(call, graph, events), [0] * len(call.windows)
            scale = 1
        self.graph_calls += graph is not None
        self.eager_calls += graph is None
        kept = [
            out[i, (w.keep_start - at) * scale : (w.keep_end - at) * scale].copy()
            for i, (w, at) in enumerate(zip(call.windows, offsets, strict=True))
        ]
        event_seconds = self._count(call, graph is not None, time.perf_counter() - started, events)
        return kept, graph.replay_s if graph is not None else None, event_seconds

    def _count(self, call: Call, graph: bool, seconds: float, events: tuple[Any, Any] | None) -> float | None:
        """One dict update in this device thread's own table (events: both done, the call synced after them).
        Returns the events' seconds (None without events)."""
        table = getattr(self._local, "times", None)
        if table is None:
            table = self._local.times = {}
            self._time_tables.append(table)
        rows = call.rows_padded if call.length is not None else len(call.windows)
        entry = table.get(key := (call.kind, call.length, rows, graph))
        if entry is None:
            entry = table[key] = [0, 0.0, 0.0]
        entry[0] += 1
        entry[1] += seconds
        if events is None:
            return None
        event_seconds = events[0].elapsed_time(events[1]) / 1000.0
        entry[2] += event_seconds
        return float(event_seconds)

    def _events(self) -> tuple[Any, Any] | None:
        """This device thread's two timing events (CUDA only), reused call after call."""
        if not self.cuda:
            return None
        events = getattr(self._local, "events", None)
        if events is None:
            events = self._local.events = (
                torch.cuda.Event(enable_timing=True),
                torch.cuda.Event(enable_timing=True),
            )
        return events

    def _staging(self) -> _Staging:
        staging = getattr(self._local, "staging", None)
        if staging is None:
            staging = self._local.staging = _Staging(pinned=self.cuda)
        return staging

    def _to_device(self, host: Tensor, static: Tensor | None) -> Tensor:
        """The one copy in: into a graph's static buffer, or a fresh device tensor (eager)."""
        if not self.cuda:
            return host if static is None else static.copy_(host)
        if static is None:
            return host.to(self.device, non_blocking=True)
        return static.copy_(host, non_blocking=True)

    def _to_host(self, result: Tensor, name: str) -> np.ndarray:
        """The one copy out (and the call's one sync on CUDA)."""
        if not self.cuda:
            return result.float().numpy()
        host = self._staging().get(name, tuple(result.shape), torch.float32)
        host.copy_(result, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return host.numpy()

    def _decode(
        self, call: Call, graph: Any, events: tuple[Any, Any] | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """The call's audio [rows, wave length * hop] and, per row, the token its output starts at (its wave span's
        start within the window)."""
        windows: list[DecodeWindow] = list(call.windows)  # type: ignore[arg-type]
        n = len(windows)
        spans = [call.span(i) for i in range(n)]
        margin = call.margin
        rows = call.rows_padded if call.length is not None else n
        # One packed buffer (services/device/graphs.py:run_decode): each window's ids placed so that its wave span
        # starts at column `margin`, then its start column, length and wave-span length. Padding rows decode one token
        # of id 0 (their output is dropped); padding positions hold id 0 (a valid index).
        packed = self._staging().get("decode_in", (rows, call.row_length + 2 * margin + 3), torch.long)
        view = packed.numpy()
        view.fill(0)
        for i, (w, (start, end)) in enumerate(zip(windows, spans, strict=True)):
            column = margin - start
            view[i, column : column + w.length] = w.ids
            view[i, -3:] = (column, w.length, end - start)
        view[n:, -3:] = (margin, 1, 1)
        d = torch.stack([torch.as_tensor(w.d_vector, dtype=torch.float32).reshape(-1) for w in windows])
        d = d.to(self.device, non_blocking=True)
        if rows > n:
            d = torch.cat([d, d[:1].expand(rows - n, -1)])
        if graph is not None:
            static_packed, static_d = graph.inputs
            self._to_device(packed, static_packed)
            static_d.copy_(d)
            _record(events, 0)
            result = graph.replay()
        else:
            packed_device = self._to_device(packed, None)
            _record(events, 0)
            result = run_decode(self.decoder, packed_device, d, margin)
        _record(events, 1)
        return self._to_host(result[:n], "decode_out"), [start for start, _ in spans]

    def _super_resolve(self, call: Call, graph: Any, events: tuple[Any, Any] | None = None) -> np.ndarray:
        windows: list[SRWindow] = list(call.windows)  # type: ignore[arg-type]
        n = len(windows)
        if call.length is None and len({w.length for w in windows}) != 1:
            raise ValueError(
                "an exact-length SR call needs rows of one length (a true end must not be padded)"
            )
        length = call.length if call.length is not None else windows[0].length
        rows = call.rows_padded if call.length is not None else n
        x = self._staging().get("sr_in", (rows, length), torch.float32)
        view = x.numpy()
        view.fill(0.0)  # right zero-padding: the kept output is bit-identical (core/apbwe.enhance_batch)
        for i, w in enumerate(windows):
            view[i, : w.length] = w.samples
        if graph is not None:
            self._to_device(x, graph.inputs[0])
            _record(events, 0)
            result = graph.replay()
        else:
            x_device = self._to_device(x, None)
            _record(events, 0)
            assert self.sr is not None  # run_sync refuses an SR call without the model
            result = self.sr.enhance_batch(x_device)
        _record(events, 1)
        return self._to_host(result[:n], "sr_out")


def _record(events: tuple[Any, Any] | None, which: int) -> None:
    if events is not None:
        events[which].record()
