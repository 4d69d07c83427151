"""The one call's AP-BWE and concurrency steps and the next call's engine step (`engine_step.py`, which carries nothing)
run in the lent GPU image recreated on this CPU (tests/integration/gpu_image.py). A file of their own beside
test_gpu_image_venv.py, so the test workers run the two side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.gpu_image import run_acceptance, run_kit

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
def test_the_apbwe_variants_step_runs_in_the_image(image_python: Path, tmp_path: Path) -> None:
    """The one call's AP-BWE step (bench/gpu/apbwe_variants.py) on the image's torch: every variant measured, the
    fused one traced whole by its dynamo (a graph break there fails the variant), the reduced ones >= 50 dB."""
    done = run_acceptance(image_python, tmp_path, "apbwe_variants")
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
    done = run_kit(image_python, "bench/gpu/engine_step.py", *args, "--out", str(tmp_path), timeout_s=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads((tmp_path / "engine-step.json").read_text())
    assert not result["partial"]
    assert [row["batch"] for row in result["variants"]["graph"]["rows"]] == [1, 2]


@pytest.mark.timeout(600)
def test_the_concurrency_step_runs_in_the_image(image_python: Path, tmp_path: Path) -> None:
    """`--one-call`'s first step (bench/gpu/concurrency.py): the engine in a child process of its own and beside the
    codec's calls on threads of one process, at tiny sizes and short phases."""
    done = run_acceptance(image_python, tmp_path, "concurrency")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads((tmp_path / "concurrency.json").read_text())["result"]
    assert not result["partial"]
    for layout in ("inprocess", "process"):
        rows = result["layouts"][layout]["rows"]
        assert [r["batch"] for r in rows] == [2, 4] and all(r["engine_beside_ms"] > 0 for r in rows)
    assert "The engine and the codec at once" in (tmp_path / "acceptance.md").read_text()
