"""bench/sim/burst_costs.py: the goal bursts with one device cost term made cheaper at a time."""

from __future__ import annotations

import json

from bench.sim import burst_costs
from bench.sim.goals import GOAL_BURSTS
from bench.standin.cost_model import Linear


def test_a_variant_runs_on_its_scaled_model_under_each_admission() -> None:
    burst = GOAL_BURSTS[0].name
    measured = str(burst_costs.MEASURED)
    off = burst_costs.run_one((measured, "decode x0.75", burst, "off", 0, "{}", "serial", None, None))
    assert off["cost_model"].endswith("(decode x0.75)")
    assert off["admitted"] == GOAL_BURSTS[0].streams  # admission off admits every arrival
    profiled = burst_costs.run_one((measured, "decode x0.75", burst, "bursts", 0, "{}", "serial", None, None))
    assert profiled["admission"] == "bursts" and profiled["underran"] == 0
    capped = burst_costs.run_one(
        (measured, "decode x0.75", burst, "bursts", 0, '{"ramp_floor": 8}', "serial", None, None)
    )
    assert capped["admitted"] < profiled["admitted"] and capped["refused_by"]  # the keywords reach admission
    sliced = burst_costs.run_one((measured, "decode x0.75", burst, "off", 0, "{}", "sliced", None, None))
    assert (
        sliced["admitted"] == off["admitted"] and sliced["ttfa_ms_p95"] != off["ttfa_ms_p95"]
    )  # the sharing ran
    stepped = burst_costs.run_one(
        (
            measured,
            "engine step fixed x0.5",
            burst,
            "off",
            0,
            "{}",
            "serial",
            None,
            (Linear(0.8, 0.01), "gpu"),
        )
    )
    assert "engine step 0.8 ms + 0.01 ms per row (gpu)" in stepped["cost_model"]
    assert stepped["cost_model"].endswith("(llm_fixed x0.5)")  # the variant scales the measured step


def test_the_variants_scale_the_cost_model_given_and_write_every_run(tmp_path, monkeypatch, capsys) -> None:
    for path, factors in burst_costs.VARIANTS.values():
        assert (path is None or path.is_file()) and all(0 < f <= 1 for f in factors.values())
    monkeypatch.setattr(burst_costs, "VARIANTS", {"as measured": burst_costs.VARIANTS["decode x0.75"]})
    monkeypatch.setattr(burst_costs, "ADMISSIONS", ("off",))
    out = tmp_path / "costs.json"
    model = tmp_path / "fit.json"
    model.write_text(burst_costs.MEASURED.read_text().replace('"fixed": 1.7', '"fixed": 0.9'))
    argv = [
        "--quick",
        "--cost-model",
        str(model),
        "--json",
        str(out),
        "--workers",
        "1",
        "--device-sharing",
        "sliced",
        "--engine-pace",
        '{"lead_ids": 80}',
    ]
    assert burst_costs.main(argv) == 0
    written = json.loads(out.read_text())
    assert written["cost_model"] == "fit.json" and written["device_sharing"] == "sliced"
    assert written["engine_pace"] == {"lead_ids": 80, "rate": 2.0, "resume_gap_ids": 25}
    runs = written["runs"]
    assert [(r["arrivals"], r["admission"], r["seed"]) for r in runs] == [(GOAL_BURSTS[2].name, "off", 0)]
    assert runs[0]["cost_model"].endswith("(decode x0.75)")
    printed = capsys.readouterr().out
    assert "sliced device" in printed and "| 200 @48k within 5 s | as measured |" in printed
