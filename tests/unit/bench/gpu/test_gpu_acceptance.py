"""The GPU acceptance kit on this CPU (`--quick --device cpu`) so it never rots: the results folder it refuses, the
steps it knows, the wheel list it carries, its report. A run of every step (its service steps start bench servers)
and resuming are in tests/integration/test_gpu_acceptance_server.py. The figures of such a run say nothing about a
GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
ACCEPTANCE = ROOT / "bench" / "gpu" / "acceptance.py"


def run_acceptance(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_") and k != "OUT"}
    return subprocess.run(
        [sys.executable, str(ACCEPTANCE), "--quick", "--device", "cpu", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_a_cpu_run_never_touches_gpu_results(tmp_path: Path) -> None:
    """A CPU run into a folder holding a GPU run's files is refused, and leaves them byte for byte as they were."""
    gpu_step = {"machine": {"device": "NVIDIA H100 80GB HBM3"}, "quick": False, "result": {"rows": []}}
    (tmp_path / "parity.json").write_text(json.dumps(gpu_step))
    (tmp_path / "acceptance.md").write_text("# GPU acceptance (NVIDIA H100 80GB HBM3)\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    done = run_acceptance("--results", str(tmp_path), "--steps", "parity", out=tmp_path)
    assert done.returncode == 2 and "holds GPU results (parity.json)" in done.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    other = tmp_path / "elsewhere"
    done = run_acceptance("--results", str(other), "--out", str(tmp_path), "--steps", "parity", out=tmp_path)
    assert (
        done.returncode == 2 and {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    )


def test_a_cpu_run_defaults_to_its_own_results_folder(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu import acceptance

    assert acceptance.DEFAULT_CPU_RESULTS != acceptance.DEFAULT_RESULTS
    assert acceptance.gpu_files(acceptance.DEFAULT_CPU_RESULTS) == []
    # A GPU run's step file (its machine as the kit records it) is recognised; a CPU run's is not.
    machine = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "cuda": "13.0"}
    (tmp_path / "parity.json").write_text(json.dumps({"machine": machine, "quick": False, "result": {}}))
    (tmp_path / "llm.json").write_text(
        json.dumps({"machine": {"device": "cpu"}, "quick": True, "result": {}})
    )
    assert acceptance.gpu_files(tmp_path) == ["parity.json"]


def test_an_unknown_step_is_refused(tmp_path: Path) -> None:
    done = run_acceptance("--results", str(tmp_path), "--steps", "parity,warp", out=tmp_path)
    assert done.returncode == 2 and "unknown steps ['warp']" in done.stderr


def test_the_carried_wheels_cover_the_service_and_leave_the_image_torch_alone() -> None:
    listed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu" / "wheels.py"), "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    names = {spec.split("==")[0] for spec in listed}
    assert {
        "fastapi",
        "starlette",
        "pydantic",
        "pydantic-settings",
        "uvicorn",
        "av",
        "soxr",
        "rjieba",
    } <= names
    assert not names & {"torch", "numpy", "transformers", "httpx", "prometheus-client"}


# ---------------------------------------------------------------------------------------------- pure parts, no run
def _llm(graph: list[tuple[int, float]], eager: list[tuple[int, float]] = ()) -> dict:
    return {
        "graph_rows": [{"batch": b, "step_ms_p50": ms} for b, ms in graph],
        "rows": [{"batch": b, "step_ms_p50": ms, "tokens_per_s_per_stream": 1000 / ms} for b, ms in eager],
    }


def test_each_level_is_paced_at_the_graph_step_rate_interpolated_or_extrapolated() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu.llm_step import paced_rate

    llm = _llm([(1, 3.0), (32, 5.0), (64, 7.0)], eager=[(64, 80.0)])
    assert paced_rate(llm, 32) == {"rate": 200.0, "step_ms": 5.0, "source": "graph, measured"}
    assert (
        paced_rate(llm, 48)["step_ms"] == pytest.approx(6.0)
        and "interpolated B=32-64" in paced_rate(llm, 48)["source"]
    )
    beyond = paced_rate(llm, 256)  # 7 + (7 - 5) / 32 * 192 = 19 ms
    assert beyond["step_ms"] == pytest.approx(19.0) and beyond["source"] == "graph, extrapolated from B=32,64"
    assert paced_rate(llm, 256)["rate"] == pytest.approx(1000 / 19)
    assert paced_rate(_llm([], eager=[(1, 50.0), (64, 80.0)]), 128) == {
        "rate": 12.5,
        "step_ms": 80.0,
        "source": "eager transformers (no CUDA-graph rows)",
    }
    assert paced_rate(None, 8)["rate"] == 200.0 and "no llm result" in paced_rate(None, 8)["source"]


def test_levels_below_real_time_are_flagged_and_the_plan_has_an_estimate() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu import service_load

    plan = service_load.plan_levels([1, 64, 256], _llm([(32, 10.0), (64, 15.0)]), 300.0, schedules=2)
    assert [p["below_realtime"] for p in plan] == [False, False, True]  # 256: 15 + 5/32*192 = 45 ms, 22 tok/s
    assert all(p["estimate_s"] > 0 for p in plan) and plan[2]["estimate_s"] > plan[1]["estimate_s"]
    assert [p["clients"] for p in plan] == [service_load.SINGLE_STREAMS, 64, 256]


def test_each_shape_sits_beside_its_isolated_cost_with_a_work_weighted_ratio() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu.service_load import merge_shapes, shape_delta, shape_table

    before = [
        {
            "kind": "decode",
            "length": 64,
            "rows": 8,
            "graph": True,
            "calls": 10,
            "seconds": 1.0,
            "device_seconds": 0.5,
        }
    ]
    after = [
        {**before[0], "calls": 30, "seconds": 2.0, "device_seconds": 0.9},
        {
            "kind": "sr",
            "length": 9760,
            "rows": 4,
            "graph": True,
            "calls": 10,
            "seconds": 0.4,
            "device_seconds": 0.3,
        },
        {
            "kind": "sr",
            "length": None,
            "rows": 1,
            "graph": False,
            "calls": 5,
            "seconds": 0.1,
            "device_seconds": 0.05,
        },
    ]
    shapes = shape_delta(before, after)
    assert [(s["kind"], s["calls"]) for s in shapes] == [("decode", 20), ("sr", 10), ("sr", 5)]
    assert shapes[0]["device_seconds"] == pytest.approx(0.4)
    scheduler = {
        "graphs": [
            {"kind": "decode", "length": 64, "rows": 8, "replay_ms": 10.0, "eager_ms": 30.0},
            {"kind": "sr", "length": 9760, "rows": 4, "replay_ms": 25.0, "eager_ms": 50.0},
        ]
    }
    table = shape_table(shapes, scheduler)
    rows = {(r["kind"], r["length"]): r for r in table["rows"]}
    assert rows[("decode", 64)]["in_service_ms"] == pytest.approx(20.0) and rows[("decode", 64)][
        "ratio"
    ] == pytest.approx(2.0)
    assert rows[("sr", 9760)]["ratio"] == pytest.approx(1.2) and rows[("sr", None)]["isolated_ms"] is None
    assert table["weighted_ratio"] == pytest.approx((0.4 + 0.3) / (20 * 0.010 + 10 * 0.025))
    assert table["covered"] == pytest.approx(0.7 / 0.75) and table["device_clock"]
    assert (
        shape_table(shapes, None)["weighted_ratio"] is None
        and shape_table(shapes, None)["isolated"] == "not measured"
    )
    assert merge_shapes([shapes, shapes])[0]["calls"] == 40


def test_a_levels_rerun_merges_and_an_older_kits_result_is_rerun() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu import acceptance
    from bench.gpu.service_load import merge_levels

    def result(levels: list[int], tag: str) -> dict:
        return {
            "sample_rate": 16000,
            "levels": levels,
            "skipped_levels": [],
            "rows": [{"streams": n, "schedule": "balanced", "tag": tag} for n in levels],
            "plan": [{"streams": n, "below_realtime": False, "tag": tag} for n in levels],
        }

    old = result([1, 8, 256], "old")
    old["rows"].append({"streams": 256, "schedule": "lowest", "tag": "old"})
    merged = merge_levels(old, {**result([256], "new"), "skipped_levels": [128], "schedules": ["balanced"]})
    assert [(r["streams"], r["schedule"], r["tag"]) for r in merged["rows"]] == [
        (1, "balanced", "old"),
        (8, "balanced", "old"),
        (256, "balanced", "new"),
        (256, "lowest", "old"),
    ]
    assert merged["levels"] == [1, 8, 256] and merged["skipped_levels"] == [128]
    assert acceptance.stale("service", {"result": {}}) and not acceptance.stale("service", {"schema": 2})
    assert not acceptance.stale("parity", {"result": {}})
    assert acceptance.stale("service48", {"schema": 2, "result": {"error": "server not ready in 300 s"}})


def test_the_committed_gpu_page_still_renders_with_this_kit() -> None:
    """The committed GPU files render with this kit, and none of them is stale (the next call would rerun it)."""
    sys.path.insert(0, str(ROOT))
    from bench.gpu import acceptance, report

    results = acceptance.load_results(acceptance.DEFAULT_RESULTS)
    if "service" not in results:
        pytest.skip("no committed GPU service result")
    page = report.markdown({"steps": results, "missing": []})
    assert "## The service under load, 16 kHz" in page and "## The service under load, 48 kHz" in page
    assert "older kit" not in page
    assert not any(acceptance.stale(step, results[step]) for step in results)


def test_the_tf32_super_resolution_graphs_sit_beside_their_fp32_twins() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu.report import _sr_tf32

    result = {
        "graphs": [
            {"kind": "sr", "length": 9760, "rows": 4, "replay_ms": 8.0},
            {"kind": "decode", "length": 64, "rows": 4, "replay_ms": 3.0},
        ],
        "sr_tf32": {
            "precision": "tf32",
            "capture_s": 12.3,
            "planned": 72,
            "captured": 70,
            "row": {"max_abs_err": 2.5e-3, "snr_db": 57.9, "tolerance": ">= 40 dB", "ok": True},
            "graphs": [
                {"kind": "sr", "length": 9760, "rows": 4, "replay_ms": 4.4},
                {"kind": "sr", "length": 2240, "rows": 1, "replay_ms": 1.1},
            ],
        },
    }
    page = "\n".join(_sr_tf32(result))
    assert "AP-BWE with tf32 graphs" in page and "max |err| 2.50e-03, SNR 57.9 dB (>= 40 dB: ok)" in page
    assert "Captured in 12.3 s (2 of 72 shapes left to eager fp32 by the capture budget)" in page
    assert "| 9760 | 4 | 8.00 | 4.40 | 0.55 |" in page  # beside the fp32 twin of the same shape
    assert "| 2240 | 1 | - | 1.10 | - |" in page  # no twin: no ratio
    assert _sr_tf32({"graphs": []}) == []  # an older kit's result: nothing said


def test_the_scheduler_page_says_how_many_planned_graphs_a_capture_budget_left_out() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu.report import _scheduler

    graph = {
        "kind": "decode",
        "length": 16,
        "rows": 1,
        "precision": "tf32",
        "capture_s": 0.5,
        "pool_mib": 1.0,
        "allocated_mib": 0.1,
        "replay_ms": 1.0,
        "eager_ms": 5.0,
    }
    result = {
        "streams": 8,
        "size": "released",
        "decode_precision": "tf32",
        "sr_precision": "fp32",
        "rows": [],
        "scheduler": {"calls": 1},
        "graphs": [graph],
        "capture_s": 240.2,
        "pool_mib": 1.0,
        "graphs_planned": 207,
        "capture_budget_s": 240.0,
    }
    page = "\n".join(_scheduler({"result": result}))
    assert "CUDA graphs: 1 of 207 captured in 240.2 s (capture budget 240 s)" in page
    older = {k: v for k, v in result.items() if k not in ("graphs_planned", "capture_budget_s")}
    assert "CUDA graphs: 1 captured in 240.2 s, " in "\n".join(
        _scheduler({"result": older})
    )  # an older kit's file


def test_a_cell_records_admissions_decisions_and_the_page_shows_refusals_by_rule() -> None:
    """What binds a burst on the service: admission's decisions in the cell (cumulative readings diffed), shown per
    rule beside the host's CPU seconds; a row without them (older kit, admission off) shows '-'."""
    sys.path.insert(0, str(ROOT))
    from bench.bench_ttfa import admission_delta
    from bench.gpu.report import _refused

    before = {"admitted": 40, "refused": {"ramp": 3}, "first_chunks": {"balanced/short": 40}}
    after = {
        "admitted": 72,
        "refused": {"ramp": 35, "misses": 2},
        "first_chunks": {"balanced/short": 60, "balanced/exact": 12},
    }
    delta = admission_delta(before, after)
    assert delta == {
        "admitted": 32,
        "refused": {"ramp": 32, "misses": 2},
        "first_chunks": {"balanced/short": 20, "balanced/exact": 12},
    }
    assert admission_delta(None, after) is None
    assert _refused({"admission": delta}) == "misses 2, ramp 32"
    assert _refused({"admission": {**delta, "refused": {}}}) == "none"
    assert _refused({}) == "-"


def test_the_scheduler_page_sets_the_replay_timed_at_capture_beside_the_best_of_three() -> None:
    """The own seconds `TTS_ADMISSION_PROFILE=own_seconds` reads (a replay timed at capture) against the step's own
    best-of-3 replay, per graph and as a median ratio."""
    import json

    sys.path.insert(0, str(ROOT))
    from bench.gpu import acceptance, report

    results = acceptance.load_results(acceptance.DEFAULT_RESULTS)
    if "scheduler" not in results:
        pytest.skip("no committed GPU scheduler result")
    step = json.loads(json.dumps(results["scheduler"]))
    for i, g in enumerate(step["result"]["graphs"]):
        g["capture_replay_ms"] = g["replay_ms"] * (1.0 + 0.1 * (i % 3))
    page = "\n".join(report._scheduler(step))
    assert "| replay ms at capture |" in page
    assert "over the best of 3 replays: median 1.10x, 1.00-1.20x over" in page
