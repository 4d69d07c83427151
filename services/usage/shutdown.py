"""Whether this process is shutting down: a stream cut now was cut by the server, not by its client.

Uvicorn cancels the streams still running when its graceful window ends; to the response they look exactly like a
client hang-up. The flag tells them apart so the request ends `interrupted` (refunded, server-side) instead of
`cancelled` (charged). It is set by SIGTERM/SIGINT (chained in front of the server's own handler, which keeps its
behaviour) and by the app's lifespan shutdown.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

_SHUTTING_DOWN = threading.Event()


def shutting_down() -> bool:
    return _SHUTTING_DOWN.is_set()


def mark_shutting_down() -> None:
    _SHUTTING_DOWN.set()


def reset() -> None:
    """For tests and for an app started again in the same process."""
    _SHUTTING_DOWN.clear()


def watch_signals() -> None:
    """Set the flag on SIGTERM/SIGINT, then run the handler that was installed (uvicorn's). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous) or getattr(previous, "_marks_shutdown", False):
            continue  # no server handler to chain (the default kills the process: nothing to settle) or done

        def handler(signum: int, frame: Any, _previous: Any = previous) -> None:
            mark_shutting_down()
            _previous(signum, frame)

        handler._marks_shutdown = True  # type: ignore[attr-defined]
        signal.signal(sig, handler)
