"""The lent GPU image recreated on this CPU (bench/gpu/image_venv.py: only the image's packages the service loads,
with what they need, plus exactly what bench/gpu/wheels.py carries, all installed without their requirements), and
the kit's service steps run in it end to end (`acceptance.py --quick --device cpu`): the carried list is complete;
so do the one call's AP-BWE and concurrency steps and the next call's engine step (`engine_step.py`, which carries
nothing).
With a lazily imported package left out (`rjieba`, imported by warm-up: what the H200 run lacked), the step's
server names it and exits, and the kit fails within seconds of it instead of waiting out its budget.

The venv takes a few minutes to build (scripts/test starts it in the background; the test then waits on its lock)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from bench.gpu import image_venv

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BLOCKER = ROOT / "tests" / "block_imports"


@pytest.fixture(scope="module")
def image_python() -> Path:
    return image_venv.ensure()


def _kit(python: Path, script: str, *args: str, timeout_s: float, **env: str) -> subprocess.CompletedProcess:
    """A kit script run as on the lent machine: from the checkout, with none of this shell's service settings."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("TTS_") and k not in ("OUT", "PYTHONPATH")
    }
    return subprocess.run(
        [str(python), script, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _acceptance(python: Path, results: Path, steps: str, **env: str) -> subprocess.CompletedProcess:
    args = ["--quick", "--device", "cpu", "--steps", steps, "--results", str(results), "--out", str(results)]
    return _kit(python, "bench/gpu/acceptance.py", *args, timeout_s=900, **env)


@pytest.mark.timeout(1500)
def test_the_service_steps_run_in_the_image_with_the_carried_packages(
    image_python: Path, tmp_path: Path
) -> None:
    done = _acceptance(image_python, tmp_path, "service,service48")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for step in ("service", "service48"):
        result = json.loads((tmp_path / f"{step}.json").read_text())["result"]
        assert "error" not in result and not result.get("partial")
        assert result["rows"] and all("error" not in row for row in result["rows"]), result["rows"]


@pytest.mark.timeout(900)
def test_the_apbwe_variants_step_runs_in_the_image(image_python: Path, tmp_path: Path) -> None:
    """The one call's AP-BWE step (bench/gpu/apbwe_variants.py) on the image's torch: every variant measured, the
    fused one traced whole by its dynamo (a graph break there fails the variant), the reduced ones >= 50 dB."""
    done = _acceptance(image_python, tmp_path, "apbwe_variants")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    variants = json.loads((tmp_path / "apbwe_variants.json").read_text())["result"]["variants"]
    assert list(variants) == ["fp32", "fp16", "tf32", "fp16-fused"]
    assert all(v["ok"] and v["fit"] is not None for v in variants.values()), variants
    assert variants["fp16-fused"]["snr_db_vs_fp32"] >= 50


@pytest.mark.timeout(600)
def test_the_next_calls_engine_step_runs_in_the_image(image_python: Path, tmp_path: Path) -> None:
    """bench/gpu/README.md's next call, `engine_step.py`, carries no wheel: it runs on the image's own torch and
    transformers, so a change in either that breaks the script shows here, not on a lent GPU."""
    args = ["--quick", "--device", "cpu", "--batches", "1,2", "--steps", "4", "--variants", "graph"]
    done = _kit(image_python, "bench/gpu/engine_step.py", *args, "--out", str(tmp_path), timeout_s=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads((tmp_path / "engine-step.json").read_text())
    assert not result["partial"]
    assert [row["batch"] for row in result["variants"]["graph"]["rows"]] == [1, 2]


@pytest.mark.timeout(600)
def test_the_concurrency_step_runs_in_the_image(image_python: Path, tmp_path: Path) -> None:
    """`--one-call`'s first step (bench/gpu/concurrency.py): the engine in a child process of its own and beside the
    codec's calls on threads of one process, at tiny sizes and short phases."""
    done = _acceptance(image_python, tmp_path, "concurrency")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads((tmp_path / "concurrency.json").read_text())["result"]
    assert not result["partial"]
    for layout in ("inprocess", "process"):
        rows = result["layouts"][layout]["rows"]
        assert [r["batch"] for r in rows] == [2, 4] and all(r["engine_beside_ms"] > 0 for r in rows)
    assert "The engine and the codec at once" in (tmp_path / "acceptance.md").read_text()


@pytest.mark.timeout(1500)
def test_a_lazily_imported_package_left_out_fails_the_step_in_seconds(
    image_python: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    done = _acceptance(image_python, tmp_path, "service", PYTHONPATH=str(BLOCKER), BLOCK_IMPORTS="rjieba")
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    # The harness stops at whichever it sees first: the failed warm-up's readiness state, or the exit it leads to.
    assert "server exited with code 3" in output or "server reports warmup_failed" in output, output[-4000:]
    assert "MISSING PACKAGE: rjieba" in output and "python -m pip install rjieba" in output
    assert "SERVICE STEPS FAILED: service" in output
    # The server's start (~20-60 s on a busy 2-core machine), not the step's 400 s wait.
    assert elapsed < 200, f"{elapsed:.0f} s"
    result = json.loads((tmp_path / "service.json").read_text())["result"]
    assert "MISSING PACKAGE: rjieba" in result["error"]
