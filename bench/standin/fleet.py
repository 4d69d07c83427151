"""One replica of a local fleet (the two-replica test and `bench.bench_fleet`): a device that holds a fixed number of
streams, and the input gate's slot count handed to the local router (`bench.standin.router`) through a file.

- `hold_streams(runtime, n, requests)`: admission's device rules become one, "n other requests are under way: the
  device is full" (a capacity refusal, as a full GPU's rules give), so a test fills a replica with one stream
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
    """POST requests under way in an ASGI app, each from its arrival to its response's last byte: the streams the
    held device counts (a codec stream ends when its audio is decoded, which on the device stand-in comes long
    before its listener has it)."""

    def __init__(self) -> None:
        self.open = 0
        self._inside: ContextVar[bool] = ContextVar("inside_a_counted_request", default=False)

    def others(self) -> int:
        """Those under way besides the one asking (none is asking outside a request: the input gate's look)."""
        return self.open - self._inside.get()

    def wrap(self, app: Any) -> Any:
        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope.get("method") != "POST":
                await app(scope, receive, send)
                return
            self.open += 1
            token = self._inside.set(True)
            try:
                await app(scope, receive, send)
            finally:
                self._inside.reset(token)
                self.open -= 1

        return counted


def hold_streams(runtime: Any, streams: int, requests: OpenRequests) -> None:
    """Make the runtime's admission refuse while `streams` other POST requests are under way, whenever it builds
    one."""
    build = runtime.build_codec_scheduler

    def build_held() -> None:
        build()
        admission = runtime.admission
        if admission is None:
            raise RuntimeError("--hold-streams needs admission on (the device stand-in, or TTS_ADMISSION=on)")

        def rules() -> tuple[AdmissionDecision, float | None]:
            if requests.others() >= streams:
                reason = f"overloaded: the device stand-in holds {streams} streams"
                return AdmissionDecision(False, reason, 1, rule="codec_cost"), None
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
