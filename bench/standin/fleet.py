"""One replica of a local fleet (the two-replica test and `bench.bench_fleet`): a device that holds a fixed number of
streams, and the input gate's slot count handed to the local router (`bench.standin.router`) through a file.

- `hold_streams(runtime, n, requests)`: admission's device rules become one, "n admitted requests are under way:
  the device is full" (a capacity refusal, as a full GPU's rules give), so a test fills a replica with one stream
  instead of hundreds; `OpenRequests` counts them.
  Keys' shares still apply as in the service (a key within its share is admitted past a full device).
- `SlotsFile`: what `modal.experimental.set_local_input_concurrency` is in a Modal container, here a number in a
  file the router reads before it hands the replica a request.
- `with_input_gate(app, runtime, slots)`: the app, with the service's `InputGate` started on its serving loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from services.deployment.input_gate import InputGate
from services.device.admission import AdmissionDecision


class OpenRequests:
    """Streams the held device holds: POST requests it admitted, each until its response's last byte (a codec stream
    ends when its audio is decoded, which on the device stand-in comes long before its listener has it)."""

    def __init__(self) -> None:
        self.admitted = 0
        self._request: ContextVar[dict[str, bool] | None] = ContextVar("held_request", default=None)

    def admit_this(self) -> None:
        """Count the request asking now (none is asking outside a request: the input gate's look)."""
        request = self._request.get()
        if request is not None and not request["admitted"]:
            request["admitted"] = True
            self.admitted += 1

    def wrap(self, app: Any) -> Any:
        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope.get("method") != "POST":
                await app(scope, receive, send)
                return
            request = {"admitted": False}
            token = self._request.set(request)
            try:
                await app(scope, receive, send)
            finally:
                self._request.reset(token)
                self.admitted -= request["admitted"]

        return counted


def hold_streams(runtime: Any, streams: int, requests: OpenRequests) -> None:
    """Make the runtime's admission refuse while `streams` admitted requests are under way, whenever it builds
    one."""
    build = runtime.build_codec_scheduler

    def build_held() -> None:
        build()
        admission = runtime.admission
        if admission is None:
            raise RuntimeError("--hold-streams needs admission on (the device stand-in, or TTS_ADMISSION=on)")

        def rules(super_resolved: bool = True) -> tuple[AdmissionDecision, float | None]:
            if requests.admitted >= streams:
                reason = f"overloaded: the device stand-in holds {streams} streams"
                return AdmissionDecision(False, reason, 1, rule="codec_cost"), None
            requests.admit_this()
            return AdmissionDecision(True, "admitted"), None

        admission._rules = rules  # the device's rules only; the key shares and counting stay the service's

    runtime.build_codec_scheduler = build_held


class SlotsFile:
    """The replica's input slots as a number in a file (written whole: the router never reads half of one)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __call__(self, slots: int) -> None:
        part = self.path.with_suffix(".part")
        part.write_text(str(slots))
        os.replace(part, self.path)

    def read(self, default: int) -> int:
        try:
            return int(self.path.read_text())
        except (OSError, ValueError):
            return default


def with_input_gate(app: Any, admission: Callable[[], Any], slots: SlotsFile, open_slots: int) -> Any:
    """An ASGI app that starts the input gate on the serving loop at lifespan start and stops it at the end."""
    gate = InputGate(admission, slots, open_slots=open_slots)
    slots(open_slots)

    async def gated(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receive_and_gate() -> Any:
            message = await receive()
            if message["type"] == "lifespan.startup":
                gate.start()
            elif message["type"] == "lifespan.shutdown":
                await gate.stop()
            return message

        await app(scope, receive_and_gate, send)

    return gated
