"""bench/gpu/engine_step.py on this CPU (`--quick --device cpu`): its rows, its fit and its file. The figures say
nothing about a GPU; the compiled variant (TorchInductor, a C++ compile on a CPU) is left to the lent machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu.engine_step import fit, measure_order
from bench.standin.cost_model import Linear, engine_step_fit

ROOT = Path(__file__).resolve().parents[4]


def test_the_fit_is_the_cost_models_fixed_and_per_row() -> None:
    rows = [{"batch": b, "step_ms_p50": 1.5 + 0.01 * b} for b in (1, 64, 256)]
    rows.append({"batch": 512, "error": "OutOfMemoryError"})
    assert fit(rows) == {"fixed": pytest.approx(1.5), "per_row": pytest.approx(0.01), "worst_error": 0.0}
    assert fit(rows[:1]) is None


def test_the_ends_are_measured_first_so_a_short_call_has_a_fit() -> None:
    assert measure_order((1, 8, 32, 64, 128, 256)) == [1, 256, 8, 32, 64, 128]
    assert measure_order((4,)) == [4]


def test_a_quick_run_writes_each_variants_rows_and_fit(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "bench/gpu/engine_step.py", "--quick", "--device", "cpu", "--batches", "1,4"]
        + ["--steps", "3", "--variants", "graph", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "engine-step.json").read_text())
    assert result["partial"] is False and result["config"] == "quick"
    graph = result["variants"]["graph"]
    assert [r["batch"] for r in graph["rows"]] == [1, 4]  # the ends first: here, all of them
    assert set(graph["fit"]) == {"fixed", "per_row", "worst_error"}
    assert "| batch | graph |" in done.stdout

    # What the simulator's benches read from it (`--engine-step`): a figure from a GPU at the released size only.
    written = tmp_path / "engine-step.json"
    with pytest.raises(ValueError, match="the plumbing, not a figure"):
        engine_step_fit(written, "graph")
    on_gpu = {**result, "config": "released", "device": "NVIDIA H200"}  # as a lent GPU would write it
    on_gpu["variants"]["graph"]["fit"] = {"fixed": 0.9, "per_row": 0.012, "worst_error": 0.04}
    written.write_text(json.dumps(on_gpu))
    assert engine_step_fit(written, "graph") == Linear(0.9, 0.012)
    with pytest.raises(ValueError, match="no variant 'compiled'"):
        engine_step_fit(written, "compiled")
    on_gpu["variants"]["graph"]["fit"]["per_row"] = -0.001  # two noisy rows can fit that: not a cost
    written.write_text(json.dumps(on_gpu))
    with pytest.raises(ValueError, match="negative term"):
        engine_step_fit(written, "graph")


def test_an_unknown_variant_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "bench/gpu/engine_step.py", "--quick", "--device", "cpu", "--variants", "vllm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "unknown variants" in done.stderr
