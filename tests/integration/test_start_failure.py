"""A server whose start fails is known as failed within seconds: a real uvicorn process on the demo checkpoint whose
warm-up cannot import the Chinese segmenter (`rjieba`, imported lazily, left out here through
tests/block_imports/sitecustomize.py as if it were not installed). The process names the package in one line with its
install command and exits non-zero; the bench harness's wait ends within seconds of the failure and prints the cause.
A warm-up that fails otherwise (a package installed but broken) leaves the process up, not ready, and the wait ends
on readiness's `warmup_failed`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.harness import app_command, demo_env, spawn_server, stop_server, wait_ready
from services.deployment.missing_package import EXIT_CODE, missing_package_line
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.integration

BLOCKER = PROJECT_ROOT / "tests" / "block_imports"
FAILED_LINE = "warm-up failed"  # what the runtime logs the moment warm-up fails


def _watch_log(log: Path, marker: str, seen: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        if log.is_file() and marker in log.read_text(errors="replace"):
            seen["at"] = time.monotonic()
            return
        time.sleep(0.05)


def _start_and_wait(
    tmp_path: Path, demo_model_dir: Path, capsys: pytest.CaptureFixture[str], **blocking: str
) -> tuple[str, str, float, object]:
    """Start the server with `blocking` in its environment, wait for it with the harness; returns the wait's error,
    what it printed, the seconds from the log's failure line to the wait's end, and the server."""
    log = tmp_path / "server.log"
    env = demo_env(demo_model_dir, TTS_LOG_JSON="true", PYTHONPATH=str(BLOCKER), **blocking)
    server = spawn_server(app_command, env, log)
    seen: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_log, args=(log, FAILED_LINE, seen, stop), daemon=True)
    watcher.start()
    try:
        with pytest.raises(RuntimeError) as failure:
            wait_ready([server], timeout_s=240)
        ended = time.monotonic()
        watcher.join(timeout=2)
    finally:
        stop.set()
        if server.process.poll() is None:
            stop_server(server)
    assert "at" in seen, log.read_text(errors="replace")[-3000:]
    return str(failure.value), capsys.readouterr().err, ended - seen["at"], server


@pytest.mark.timeout(300)
def test_a_package_missing_at_warm_up_ends_the_process_and_the_wait_within_seconds(
    tmp_path: Path, demo_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error, printed, after_s, server = _start_and_wait(
        tmp_path, demo_model_dir, capsys, BLOCK_IMPORTS="rjieba"
    )
    assert after_s < 10, f"the wait ended {after_s:.1f} s after the warm-up failed"
    install = "MISSING PACKAGE: rjieba (No module named 'rjieba', needed by warm-up); install it with: python -m pip install rjieba"
    for text in (error, printed):
        assert install in text
        assert "ModuleNotFoundError: No module named 'rjieba'" in text  # the traceback from its log
    assert server.process.wait(timeout=30) == EXIT_CODE  # type: ignore[attr-defined]


@pytest.mark.timeout(300)
def test_a_warm_up_that_fails_otherwise_stays_up_and_the_wait_reads_warmup_failed(
    tmp_path: Path, demo_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error, printed, after_s, server = _start_and_wait(
        tmp_path, demo_model_dir, capsys, BLOCK_IMPORTS="rjieba", BLOCK_IMPORTS_AS="broken"
    )
    assert after_s < 10, f"the wait ended {after_s:.1f} s after the warm-up failed"
    assert error.startswith(
        "server reports warmup_failed: warm-up failed: ImportError: rjieba is installed but broken"
    )
    assert "MISSING PACKAGE" not in error and "ImportError: rjieba is installed but broken" in printed


def test_the_missing_package_line_names_the_distribution_and_its_install_command() -> None:
    def fails(module: str) -> BaseException:
        try:
            try:
                raise ModuleNotFoundError(f"No module named {module!r}", name=module)
            except ModuleNotFoundError as exc:
                raise RuntimeError("the step failed") from exc
        except RuntimeError as outer:
            return outer

    assert missing_package_line(fails("yaml.cyaml"), "model loading") == (
        "MISSING PACKAGE: pyyaml (No module named 'yaml', needed by model loading); "
        "install it with: python -m pip install pyyaml"
    )
    assert missing_package_line(RuntimeError("CUDA out of memory"), "warm-up") is None
