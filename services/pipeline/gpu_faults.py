"""Spot GPU faults in request failures and take a broken container out of rotation.

A CUDA fault (device-side assert, illegal memory access, cuBLAS/cuDNN/NCCL failure, a dead vLLM engine core)
leaves the CUDA context unusable: every later request on this container would fail too. An out-of-memory
error is different: it is often transient (a burst of long requests) and only counts as a fault when it does
not clear: freeing the allocator cache and allocating a small probe block still fails, or OOMs keep coming
(N within a window). For a fault the detector marks the runtime unhealthy (health answers 503), counts
`GPU_FAULTS{kind}` and calls a stop hook once (on Modal: `stop_fetching_inputs()`, so Modal drains this
container and starts a fresh one). Every GPU error, transient or not, maps to a public code (GPU_FAULT or
GPU_OOM, both 503) that the API answers with.

Framework-agnostic: the API layer calls `detector.handle(exc)` and gets a code or None. Nothing here imports
torch or modal at module level.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared import metrics

logger = logging.getLogger("services.pipeline.gpu_faults")

GPU_FAULT = "GPU_FAULT"
GPU_OOM = "GPU_OOM"

# What the API says for each code (the status is 503 for both; see api/errors.py).
GPU_ERROR_MESSAGES: dict[str, str] = {
    GPU_FAULT: "A GPU fault interrupted generation; this server is being replaced. Retry the request.",
    GPU_OOM: "The GPU ran out of memory while generating. Retry the request, or send shorter text.",
}


class FaultKind(StrEnum):
    FAULT = "fault"
    OOM = "oom"


# Lower-case substrings. OOM markers are checked first: "CUDA error: out of memory" is an OOM, not a fault.
_OOM_MARKERS = (
    "cuda out of memory",
    "cuda error: out of memory",
    "cudaerrormemoryallocation",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
)
_FAULT_MARKERS = (
    "cuda error",
    "cuda driver error",
    "cudaerror",
    "device-side assert",
    "illegal memory access",
    "illegal instruction",
    "unspecified launch failure",
    "misaligned address",
    "uncorrectable ecc",
    "ecc error",
    "cublas_status",
    "cublas error",
    "cudnn_status",
    "cudnn error",
    "nccl error",
    "ncclunhandledcudaerror",
    "ncclsystemerror",
    "ncclinternalerror",
    "gpu has fallen off the bus",
)
# Exception class names (no import of torch / vLLM needed to recognise them).
_OOM_TYPES = frozenset({"OutOfMemoryError"})
_FAULT_TYPES = frozenset({"AcceleratorError", "CudaError", "EngineDeadError"})
_MAX_CHAIN = 16


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """exc, then its causes/contexts and (for groups) members, each once, at most _MAX_CHAIN of them."""
    seen: set[int] = set()
    stack = [exc]
    while stack and len(seen) < _MAX_CHAIN:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        members = getattr(current, "exceptions", None)
        if isinstance(members, (list, tuple)):
            stack.extend(m for m in members if isinstance(m, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _classify_one(exc: BaseException) -> FaultKind | None:
    name = exc.__class__.__name__
    text = str(exc).lower()
    if name in _OOM_TYPES or any(marker in text for marker in _OOM_MARKERS):
        return FaultKind.OOM
    if name in _FAULT_TYPES or any(marker in text for marker in _FAULT_MARKERS):
        return FaultKind.FAULT
    return None


def classify_gpu_error(exc: BaseException) -> FaultKind | None:
    """FAULT, OOM or None (not a GPU problem), looking through `raise ... from ...` chains."""
    return _diagnose(exc)[0]


def _diagnose(exc: BaseException) -> tuple[FaultKind | None, BaseException]:
    """The kind and the exception that shows it (the original CUDA error when the chain kept it).

    An error that already carries a public code (`exc.code` GPU_FAULT / GPU_OOM, e.g. a SynthesisError) is
    trusted only when its original exception was not kept: when the original is in the chain, it is the
    better witness (a device-mismatch bug says "cuda" but is no GPU fault, and must not drain containers).
    """
    coded: FaultKind | None = None
    witnessed = False
    for item in _exception_chain(exc):
        kind = _classify_one(item)
        if kind is not None:
            return kind, item
        code = getattr(item, "code", None)
        if code == GPU_OOM:
            coded = coded or FaultKind.OOM
        elif code == GPU_FAULT:
            coded = coded or FaultKind.FAULT
        else:
            witnessed = True
    return (None if witnessed else coded), exc


class UnhealthyMarker(Protocol):
    def mark_unhealthy(self, reason: str) -> None: ...


def cuda_memory_probe(nbytes: int) -> bool | None:
    """Free the caching allocator and try to allocate `nbytes` on the GPU.

    True: memory is available again (the OOM was transient). False: it still fails (or CUDA itself errors).
    None: no CUDA here, nothing to probe. A tiny allocation, cheap enough for the error path.
    """
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    try:
        torch.cuda.empty_cache()
        block = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        del block
        return True
    except Exception as exc:  # noqa: BLE001 - any failure here means the GPU is not usable
        logger.warning("GPU memory probe failed", extra={"error_class": exc.__class__.__name__})
        return False


def modal_stop_fetching_inputs() -> None:
    """Tell Modal to send this container no more inputs; it exits after the current ones.

    modal is imported lazily. The call is a short blocking RPC, so it runs in a daemon thread: the caller may be
    on the event loop that is still streaming other requests. Outside a Modal container Modal raises; that is
    logged, not propagated.
    """

    def _call() -> None:
        try:
            import modal.experimental

            modal.experimental.stop_fetching_inputs()
            logger.error("asked Modal to stop sending inputs to this container")
        except Exception as exc:  # noqa: BLE001 - best effort: the container is unhealthy either way
            logger.warning("stop_fetching_inputs failed", extra={"error": f"{exc.__class__.__name__}: {exc}"})

    threading.Thread(target=_call, name="modal-stop-fetching-inputs", daemon=True).start()


def default_stop_hook() -> Callable[[], None]:
    """Modal's stop when running inside a Modal container (MODAL_IS_REMOTE=1), else a no-op."""
    if os.environ.get("MODAL_IS_REMOTE") == "1":
        return modal_stop_fetching_inputs
    return lambda: None


@dataclass(frozen=True)
class OomPolicy:
    """When an OOM stops being transient."""

    window_s: float = 60.0
    max_in_window: int = 3  # this many OOMs within window_s marks the container unhealthy
    probe_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.max_in_window < 1 or self.probe_bytes < 1:
            raise ValueError("OomPolicy needs window_s > 0, max_in_window >= 1 and probe_bytes >= 1")


class GpuFaultDetector:
    """Classify request failures; on a real fault mark the runtime unhealthy and stop taking inputs, once."""

    def __init__(
        self,
        runtime: UnhealthyMarker,
        *,
        stop_hook: Callable[[], object] | None = None,
        oom_policy: OomPolicy | None = None,
        probe: Callable[[int], bool | None] = cuda_memory_probe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._stop_hook = stop_hook if stop_hook is not None else default_stop_hook()
        self._oom = oom_policy or OomPolicy()
        self._probe = probe
        self._clock = clock
        self._oom_times: deque[float] = deque()
        self._lock = threading.Lock()  # handle() may be called from worker threads too
        self.tripped_kind: FaultKind | None = None
        self.reason: str | None = None

    @property
    def tripped(self) -> bool:
        """True once this container was marked unhealthy by a GPU fault."""
        return self.tripped_kind is not None

    def handle(self, exc: BaseException) -> str | None:
        """The public error code for `exc` (GPU_FAULT / GPU_OOM), or None when it is not a GPU problem."""
        kind, witness = _diagnose(exc)
        if kind is None:
            return None
        detail = f"{witness.__class__.__name__}: {witness}"[:300]
        if kind is FaultKind.FAULT:
            self._trip(kind, f"GPU fault: {detail}")
            return GPU_FAULT
        reason = self._persistent_oom_reason()
        if reason is not None:
            self._trip(kind, f"{reason}: {detail}")
        else:
            logger.warning("transient CUDA OOM; container stays in rotation", extra={"error": detail})
        return GPU_OOM

    async def handle_async(self, exc: BaseException) -> str | None:
        """`handle` run in a worker thread (the OOM probe touches the GPU) for callers on the event loop."""
        return await asyncio.to_thread(self.handle, exc)

    def _persistent_oom_reason(self) -> str | None:
        now = self._clock()
        with self._lock:
            self._oom_times.append(now)
            while self._oom_times and now - self._oom_times[0] > self._oom.window_s:
                self._oom_times.popleft()
            count = len(self._oom_times)
        if count >= self._oom.max_in_window:
            return f"{count} CUDA out-of-memory errors within {self._oom.window_s:g} s"
        if self._probe(self._oom.probe_bytes) is False:
            return "CUDA out of memory persists after freeing cached memory"
        return None

    def _trip(self, kind: FaultKind, reason: str) -> None:
        with self._lock:
            if self.tripped_kind is not None:
                return
            self.tripped_kind = kind
            self.reason = reason
        metrics.GPU_FAULTS.labels(kind=kind.value).inc()
        logger.error("GPU %s: taking this container out of rotation", kind.value, extra={"reason": reason})
        self._runtime.mark_unhealthy(reason)
        try:
            self._stop_hook()
        except Exception:  # noqa: BLE001 - the runtime is already unhealthy; a failing hook must not mask that
            logger.exception("GPU fault stop hook failed")
