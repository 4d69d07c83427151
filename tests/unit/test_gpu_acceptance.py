"""The GPU acceptance kit runs on this CPU (`--quick --device cpu`) so it never rots: every step's plumbing, the
results it writes, resuming, and the wheel list it carries. The figures of such a run say nothing about a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCEPTANCE = ROOT / "bench" / "gpu" / "acceptance.py"


def _run(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_") and k != "OUT"}
    return subprocess.run([sys.executable, str(ACCEPTANCE), "--quick", "--device", "cpu", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    results, out = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("out")
    done = _run("--results", str(results), "--out", str(out), out=out)
    return done, results, out


@pytest.mark.timeout(1500)  # the module fixture runs every step once (~3 min on an idle 2-core machine)
def test_every_step_runs_and_writes_its_result(first_run) -> None:  # noqa: ANN001
    done, results, out = first_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "CPU: figures say nothing about a GPU" in done.stdout.splitlines()[-1]
    assert sorted(p.name for p in results.glob("*.json")) == sorted(
        ["parity.json", "throughput.json", "llm.json", "service.json", "scheduler.json", "acceptance.json"])
    combined = json.loads((out / "acceptance.json").read_text())
    assert combined["missing"] == [] and combined["cpu_notice"]
    steps = combined["steps"]
    for step in steps.values():
        assert step["quick"] and step["numerics"]["cuda_matmul_tf32"] is False and step["numerics"]["cudnn_conv_tf32"] is False

    parity = steps["parity"]["result"]
    assert parity["all_ok"] and parity["checks"] >= 4
    checks = {r["check"] for r in parity["rows"]}
    assert {"fixture: BiCodec decode", "fixture: AP-BWE synthesis", "fixture: encoder semantic_tokens",
            "demo-size BiCodec: streamed (full context) == offline", "demo-size AP-BWE: streamed == offline"} <= checks

    throughput = steps["throughput"]["result"]
    assert throughput["streams"]["decode_16k"]["fp32"] > 0 and throughput["streams"]["clone_encoder_x_realtime"] > 0
    assert throughput["aligner"]["ratio_to_decode"] > 0 and throughput["streams"]["ctc_aligner_x_realtime"] > 0

    llm = steps["llm"]["result"]
    assert [r["batch"] for r in llm["rows"]] == [1, 2] and all(r["tokens_per_s_per_stream"] > 0 for r in llm["rows"])
    assert llm["bf16_vs_fp32"]["steps"] == 4

    service = steps["service"]["result"]
    assert "error" not in service, service
    assert service["rate"] == pytest.approx(llm["rows"][-1]["tokens_per_s_per_stream"], rel=1e-6)
    assert sorted({(r["schedule"], r["streams"]) for r in service["rows"]}) == [
        ("balanced", 1), ("balanced", 2), ("lowest", 1), ("lowest", 2)]
    assert all(r["ttfa_p50_s"] and r["mean_batch"] is not None for r in service["rows"])

    scheduler = steps["scheduler"]["result"]
    assert scheduler["all_ok"] and scheduler["graphs"] == []  # a CPU runs eager: no graphs
    assert {r["check"] for r in scheduler["rows"]} >= {
        "demo-size scheduler: exact (full context) decode == offline", "demo-size scheduler: lowest decode, batched vs alone",
        "demo-size scheduler: AP-BWE streams, batched == offline"}

    page = (out / "acceptance.md").read_text()
    for title in ("Parity on the device", "Throughput", "The LLM step", "The service under load",
                  "The codec scheduler on the device"):
        assert f"## {title}" in page
    assert "not run yet" not in page


@pytest.mark.timeout(1500)
def test_a_later_call_keeps_finished_steps(first_run, tmp_path: Path) -> None:  # noqa: ANN001
    _, results, _ = first_run
    done = _run("--results", str(results), "--out", str(tmp_path), "--steps", "parity,llm", out=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "== parity: result from an earlier call kept" in done.stdout
    assert "== llm: result from an earlier call kept" in done.stdout
    assert json.loads((tmp_path / "acceptance.json").read_text())["missing"] == []


def test_a_cpu_run_never_touches_gpu_results(tmp_path: Path) -> None:
    """A CPU run into a folder holding a GPU run's files is refused, and leaves them byte for byte as they were."""
    gpu_step = {"machine": {"device": "NVIDIA H100 80GB HBM3"}, "quick": False, "result": {"rows": []}}
    (tmp_path / "parity.json").write_text(json.dumps(gpu_step))
    (tmp_path / "acceptance.md").write_text("# GPU acceptance (NVIDIA H100 80GB HBM3)\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    done = _run("--results", str(tmp_path), "--steps", "parity", out=tmp_path)
    assert done.returncode == 2 and "holds GPU results (parity.json)" in done.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    other = tmp_path / "elsewhere"
    done = _run("--results", str(other), "--out", str(tmp_path), "--steps", "parity", out=tmp_path)
    assert done.returncode == 2 and {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_cpu_run_defaults_to_its_own_results_folder() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu import acceptance

    assert acceptance.DEFAULT_CPU_RESULTS != acceptance.DEFAULT_RESULTS
    assert acceptance.gpu_files(acceptance.DEFAULT_CPU_RESULTS) == []
    committed = acceptance.DEFAULT_RESULTS / "parity.json"
    if committed.is_file():  # the committed H100 run is recognised as GPU results
        assert "parity.json" in acceptance.gpu_files(acceptance.DEFAULT_RESULTS)


def test_an_unknown_step_is_refused(tmp_path: Path) -> None:
    done = _run("--results", str(tmp_path), "--steps", "parity,warp", out=tmp_path)
    assert done.returncode == 2 and "unknown steps ['warp']" in done.stderr


def test_the_carried_wheels_cover_the_service_and_leave_the_image_torch_alone() -> None:
    listed = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu" / "wheels.py"), "--list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=True).stdout.split()
    names = {spec.split("==")[0] for spec in listed}
    assert {"fastapi", "starlette", "pydantic", "pydantic-settings", "uvicorn", "av", "soxr"} <= names
    assert not names & {"torch", "numpy", "transformers", "httpx", "prometheus-client"}
