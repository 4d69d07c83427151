"""A device call cut short keeps what it measured (bench/gpu/one_call.py): the kit's 16 kHz service step on this CPU
(`--quick --device cpu`: levels 1 and 2, both schedules) is killed with its server as soon as level 1 is written,
as the device tool's limit would kill it; its result file then holds level 1 (`"partial": true`), and the next call
runs only the level it lacks and merges it in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _command(results: Path) -> list[str]:
    return [sys.executable, "bench/gpu/acceptance.py", "--quick", "--device", "cpu", "--steps", "service",
            "--results", str(results), "--out", str(results)]  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TTS_") and k != "OUT"}


def _level_one_written(path: Path) -> dict | None:
    try:
        result = json.loads(path.read_text())["result"]
    except (OSError, ValueError, KeyError):
        return None
    done = {r["schedule"] for r in result.get("rows", []) if r["streams"] == 1}
    return result if done == {"balanced", "lowest"} else None


@pytest.mark.timeout(900)
def test_a_cut_call_keeps_its_levels_and_the_next_runs_only_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "service.json"
    # Its own process group, so the kill takes its server too (as the end of a device call does).
    first = subprocess.Popen(
        _command(tmp_path), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while _level_one_written(path) is None:
            assert first.poll() is None, "the step ended before it was cut"
            assert time.monotonic() < deadline, "level 1 was never written"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    cut = json.loads(path.read_text())["result"]
    assert cut["partial"] is True and {r["streams"] for r in cut["rows"]} <= {1, 2}

    again = subprocess.run(
        _command(tmp_path), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "    2 streams" in again.stdout and "    1 streams" not in again.stdout  # only the level it lacked
    final = json.loads(path.read_text())["result"]
    assert not final.get("partial") and final["levels"] == [1, 2]
    rows = {(r["streams"], r["schedule"]) for r in final["rows"]}
    assert rows == {(1, "balanced"), (1, "lowest"), (2, "balanced"), (2, "lowest")}
    level_one = [r for r in final["rows"] if r["streams"] == 1]
    assert level_one == [r for r in cut["rows"] if r["streams"] == 1]  # kept as measured, not run again
