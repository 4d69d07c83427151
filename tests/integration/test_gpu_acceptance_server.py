"""The GPU acceptance kit runs every step on this CPU (`--quick --device cpu`; its service steps start bench servers)
so it never rots: every step's plumbing, the results it writes, and resuming. The figures of such a run say nothing
about a GPU. The kit's checks that start nothing are in tests/unit/bench/gpu/test_gpu_acceptance.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.unit.bench.gpu.test_gpu_acceptance import run_acceptance

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    results, out = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("out")
    done = run_acceptance("--results", str(results), "--out", str(out), out=out)
    return done, results, out


@pytest.mark.timeout(1500)  # the module fixture runs every step once (~3 min on an idle 2-core machine)
def test_every_step_runs_and_writes_its_result(first_run) -> None:  # noqa: ANN001
    done, results, out = first_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "CPU: figures say nothing about a GPU" in done.stdout.splitlines()[-1]
    assert sorted(p.name for p in results.glob("*.json")) == sorted(
        [
            "parity.json",
            "throughput.json",
            "llm.json",
            "service.json",
            "service48.json",
            "service48-tf32.json",
            "scheduler.json",
            "apbwe_variants.json",
            "concurrency.json",
            "acceptance.json",
        ]
    )
    combined = json.loads((out / "acceptance.json").read_text())
    assert combined["missing"] == [] and combined["cpu_notice"]
    steps = combined["steps"]
    for step in steps.values():
        assert (
            step["quick"]
            and step["numerics"]["cuda_matmul_tf32"] is False
            and step["numerics"]["cudnn_conv_tf32"] is False
        )

    parity = steps["parity"]["result"]
    assert parity["all_ok"] and parity["checks"] >= 4
    checks = {r["check"] for r in parity["rows"]}
    assert {
        "fixture: BiCodec decode",
        "fixture: AP-BWE synthesis",
        "fixture: encoder semantic_tokens",
        "demo-size BiCodec: streamed (full context) == offline",
        "demo-size AP-BWE: streamed == offline",
    } <= checks

    throughput = steps["throughput"]["result"]
    assert (
        throughput["streams"]["decode_16k"]["fp32"] > 0
        and throughput["streams"]["clone_encoder_x_realtime"] > 0
    )
    assert (
        throughput["aligner"]["ratio_to_decode"] > 0 and throughput["streams"]["ctc_aligner_x_realtime"] > 0
    )

    llm = steps["llm"]["result"]
    assert [r["batch"] for r in llm["rows"]] == [1, 2] and all(
        r["tokens_per_s_per_stream"] > 0 for r in llm["rows"]
    )
    assert llm["bf16_vs_fp32"]["steps"] == 4

    for name, rate in (("service", 16000), ("service48", 48000), ("service48-tf32", 48000)):
        service = steps[name]["result"]
        assert "error" not in service, service
        assert (
            steps[name]["schema"] == 2 and service["sample_rate"] == rate and service["skipped_levels"] == []
        )
        # the server took the step's settings (AP-BWE graphs in TF32 for service48-tf32, else the fp16 default; a CPU
        # serves fp32 whatever the setting)
        assert service["sr_precision"] == ("tf32" if name.endswith("tf32") else "fp16")
        assert service["settings"] == ({"TTS_CODEC_SR_PRECISION": "tf32"} if name.endswith("tf32") else {})
        # No CUDA-graph rows on a CPU: each level is paced at the eager rows' rate (raised for a quick run), said so.
        for plan, batch in zip(service["plan"], (1, 2), strict=True):
            assert plan["streams"] == batch and "eager transformers" in plan["source"]
            eager = next(r["tokens_per_s_per_stream"] for r in llm["rows"] if r["batch"] == batch)
            assert plan["rate"] == pytest.approx(max(eager, 150.0), rel=1e-6) and plan["estimate_s"] > 0
        schedules = ["balanced", "lowest"] if rate == 16000 else ["balanced"]  # --quick: 48 kHz balanced only
        assert sorted({(r["schedule"], r["streams"]) for r in service["rows"]}) == [
            (schedule, n) for schedule in schedules for n in (1, 2)
        ]
        for r in service["rows"]:
            assert r["ttfa_p50_s"] and r["mean_batch"] is not None and r["failed"] == 0, r
            # what else binds: the server's CPU seconds in the cell; admission's decisions (off on a CPU: none)
            assert r["host_cpu_s"] > 0 and r["admission"] is None
            assert r["rate"] == next(p["rate"] for p in service["plan"] if p["streams"] == r["streams"])
            kinds = {
                s["kind"] for s in r["device_shapes"]
            }  # the runner's device time, read through the bench route
            assert kinds == ({"decode", "sr"} if rate == 48000 else {"decode"}), r["device_shapes"]
            assert all(
                s["calls"] > 0 and s["seconds"] > 0 and s["device_seconds"] is None
                for s in r["device_shapes"]
            )
            assert sum(s["calls"] for s in r["device_shapes"]) >= (r["busy_seconds"] > 0)
        assert all(r["mean_sr_batch"] for r in service["rows"]) == (rate == 48000)

    scheduler = steps["scheduler"]["result"]
    assert scheduler["all_ok"] and scheduler["graphs"] == []  # a CPU runs eager: no graphs
    assert {r["check"] for r in scheduler["rows"]} >= {
        "demo-size scheduler: exact (full context) decode == offline",
        "demo-size scheduler: lowest decode, batched vs alone",
        "demo-size scheduler: AP-BWE streams, batched == offline",
    }
    # TTS_CODEC_SR_PRECISION=tf32 measured apart; a CPU runs its plumbing eager in fp32
    assert scheduler["sr_tf32"]["precision"] == "fp32" and scheduler["sr_tf32"]["graphs"] == []
    assert (
        scheduler["sr_tf32"]["row"]["ok"]
        and "fp32 (a CPU has no TF32) graphs vs offline fp32" in scheduler["sr_tf32"]["row"]["check"]
    )

    page = (out / "acceptance.md").read_text()
    assert "AP-BWE with fp32 graphs (`TTS_CODEC_SR_PRECISION=tf32`; the default is fp16)" in page
    variants = steps["apbwe_variants"]["result"]["variants"]
    assert list(variants) == ["fp32", "fp16", "tf32", "fp16-fused"] and all(
        v["ok"] for v in variants.values()
    )
    for title in (
        "Parity on the device",
        "Throughput",
        "The LLM step",
        "The service under load, 16 kHz",
        "The service under load, 48 kHz (BiCodec + AP-BWE)",
        "The codec scheduler on the device",
        "The service under load, 48 kHz, AP-BWE graphs in TF32 (`TTS_CODEC_SR_PRECISION=tf32`)",
        "AP-BWE's precisions at the service's shapes",
    ):
        assert f"## {title}" in page
    assert "not run yet" not in page
    assert "| in-service ms | device-thread ms | isolated ms |" in page and "| not measured |" in page
    assert "1: not measured; 2: not measured." in page  # no isolated costs on a CPU (no graphs)


@pytest.mark.timeout(1500)
def test_a_later_call_keeps_finished_steps(first_run, tmp_path: Path) -> None:  # noqa: ANN001
    _, results, _ = first_run
    done = run_acceptance(
        "--results", str(results), "--out", str(tmp_path), "--steps", "parity,llm", out=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "== parity: result from an earlier call kept" in done.stdout
    assert "== llm: result from an earlier call kept" in done.stdout
    assert json.loads((tmp_path / "acceptance.json").read_text())["missing"] == []
