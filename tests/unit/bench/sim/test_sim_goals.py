"""bench/goals_table.py: every goal arrival on the three device models, paced and not, whether each cell meets its goal,
and which device the deployment is."""

from __future__ import annotations

import json

from bench.sim import goals_table
from bench.sim.device_labels import deployed_sharing
from bench.sim.goals import GOAL_BURSTS, STEADY_ARRIVALS, goal_met


def run(admitted: int, underran: int = 0, p95: float | None = 100.0) -> dict[str, object]:
    return {"admitted": admitted, "underran": underran, "ttfa_ms_p95": p95}


def test_a_goal_is_met_only_when_every_seed_admits_all_keeps_all_playing_and_starts_in_time() -> None:
    burst = GOAL_BURSTS[0]  # 64 within 2 s, p95 <= 300 ms
    assert goal_met(burst, [run(64), run(64, p95=300.0)])
    assert not goal_met(burst, [run(64), run(63)])
    assert not goal_met(burst, [run(64), run(64, underran=1)])
    assert not goal_met(burst, [run(64), run(64, p95=301.0)])
    assert not goal_met(burst, [run(64, p95=None)])
    assert not goal_met(burst, [])
    steady = STEADY_ARRIVALS[0]  # no bound on first audio
    assert goal_met(steady, [run(250, p95=2000.0)])


def test_48k_rows_run_at_both_ap_bwe_precisions_on_their_own_models() -> None:
    assert goals_table.precisions(GOAL_BURSTS[2]) == ("tf32", "fp32")
    assert goals_table.precisions(GOAL_BURSTS[0]) == ("-",)
    fp32 = goals_table.run_one(
        (GOAL_BURSTS[2].name, "fp32", "off", "serial", False, 0, str(goals_table.MEASURED), None, 0.5)
    )
    assert (
        fp32["cost_model"]
        != goals_table.run_one(
            (GOAL_BURSTS[2].name, "tf32", "off", "serial", False, 0, str(goals_table.MEASURED), None, 0.5)
        )["cost_model"]
    )


def test_the_bench_writes_every_run_and_a_verdict_per_cell(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(goals_table, "GOAL_BURSTS", GOAL_BURSTS[:1])
    monkeypatch.setattr(goals_table, "ADMISSIONS", ("off",))
    out = tmp_path / "goals.json"
    assert goals_table.main(["--quick", "--workers", "1", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    runs = written["runs"]
    deployed = deployed_sharing()  # --quick runs the deployment's device alone
    assert [(r["arrivals"], r["admission"], r["device_sharing"], r["paced"]) for r in runs] == [
        (GOAL_BURSTS[0].name, "off", deployed, False),
        (GOAL_BURSTS[0].name, "off", deployed, True),
    ]
    assert written["deployed_device_sharing"] == deployed and 0 <= written["device_overlap"] <= 1
    assert len(written["verdicts"]) == 2 and written["engine_pace"]["lead_ids"] == 100
    assert all(
        v["met"] == goal_met(GOAL_BURSTS[0], [r]) for v, r in zip(written["verdicts"], runs, strict=True)
    )
    printed = capsys.readouterr().out
    assert "| 64 @16k within 2 s | - |" in printed and "the deployment's device" in printed


def test_a_gpus_engine_step_replaces_the_published_one_in_every_row(tmp_path, monkeypatch) -> None:
    step = tmp_path / "engine-step.json"
    fit = {"fixed": 0.9, "per_row": 0.012, "worst_error": 0.05}
    step.write_text(
        json.dumps(
            {
                "device": "NVIDIA H200",
                "config": "released",
                "variants": {"compiled": {"rows": [], "fit": fit}},
            }
        )
    )
    monkeypatch.setattr(goals_table, "GOAL_BURSTS", GOAL_BURSTS[:1])
    monkeypatch.setattr(goals_table, "ADMISSIONS", ("off",))
    out = tmp_path / "goals.json"
    assert (
        goals_table.main(["--quick", "--workers", "1", "--json", str(out), "--engine-step", str(step)]) == 0
    )
    written = json.loads(out.read_text())
    assert written["engine_step_ms"] == {"fixed": 0.9, "per_row": 0.012}
    assert written["engine_step_from"] == "engine-step.json compiled"
    assert all("engine step 0.9 ms + 0.012 ms per row" in r["cost_model"] for r in written["runs"])


def test_one_context_meets_the_16k_goal_bursts_on_the_deployed_device_and_runs_no_48k_burst_dry() -> None:
    """Seed 0 on the deployment's device (one CUDA context): the profile scaled for it (admission_profiles.py)."""
    sharing = deployed_sharing()
    assert sharing == "overlapped"
    for arrivals, precision in ((GOAL_BURSTS[0], "-"), (GOAL_BURSTS[1], "-"), (GOAL_BURSTS[2], "tf32")):
        model = str(goals_table.MEASURED)
        result = goals_table.run_one(
            (arrivals.name, precision, "one_context", sharing, False, 0, model, None, 0.5)
        )
        assert result["underran"] == 0, arrivals.name
        if arrivals.sample_rate == 16_000:
            assert goal_met(arrivals, [result]), (arrivals.name, result)
