"""A Python package missing at start: named in one line with the command that installs it, and the process ended.

A module imported lazily (the Chinese segmenter's `rjieba`, loaded by warm-up) is missing only when that code first
runs, so an image built from a list of start-up imports starts, answers health, and is never ready. A restart would
fail the same way, so the process says what to install and exits non-zero: an orchestrator (Modal included: its
`@modal.enter` raises on any state but ready) then sees a failed start, not a live server that never serves.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

logger = logging.getLogger("services.deployment.missing_package")

EXIT_CODE = 3  # uvicorn's own code for a failed start
# Import names whose distribution is named otherwise (the rest install under their module's name).
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "multipart": "python-multipart",
    "dotenv": "python-dotenv",
    "dateutil": "python-dateutil",
    "google": "protobuf",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
}


def missing_module(exc: BaseException) -> str | None:
    """The top-level name of the module whose absence raised `exc` (or what caused it), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name.split(".")[0]
        current = current.__cause__ or current.__context__
    return None


def missing_package_line(exc: BaseException, during: str) -> str | None:
    """One line naming the missing package and the command that installs it; None when `exc` is something else."""
    module = missing_module(exc)
    if module is None:
        return None
    package = DISTRIBUTIONS.get(module, module.replace("_", "-"))
    return (
        f"MISSING PACKAGE: {package} (No module named {module!r}, needed by {during}); "
        f"install it with: python -m pip install {package}"
    )


def note_missing_package(exc: BaseException, during: str) -> str | None:
    """`missing_package_line`, logged as an error when there is one (where the runtime records a failed start, so
    every way of serving, Modal's included, logs it)."""
    line = missing_package_line(exc, during)
    if line is not None:
        logger.error(line)
    return line


def stop_for_missing_package() -> bool:
    """Ask the server to shut down after a missing package (`note_missing_package` logged it);
    `exit_after_shutdown` then ends the process with EXIT_CODE. Only where the app runs on the main thread's loop
    (uvicorn); an app served from another thread (a test's client) is left up, not ready, with the reason in health.
    Returns whether the shutdown was asked for."""
    if threading.current_thread() is not threading.main_thread():
        return False
    # uvicorn's own SIGTERM handling: stop accepting, close the connections, run the lifespan's shutdown.
    signal.raise_signal(signal.SIGTERM)
    return True


def exit_after_shutdown() -> None:
    """The last step of the lifespan's shutdown after `stop_for_missing_package`: exit non-zero (uvicorn would
    otherwise re-raise the SIGTERM and the process would look killed from outside)."""
    logging.shutdown()
    os._exit(EXIT_CODE)
