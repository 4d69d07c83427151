"""The goal arrivals under each admission profile and the codec's cost per second of audio, on both engine steps and
both ways of sharing the device: `python -m bench sim profiles [--json OUT] [--quick]`.

Each profile (`TTS_ADMISSION_PROFILE`, services/device/admission_profiles.py) is the service's admission settings and
the codec seconds they read. Beside them, `audio second`: the service's read, with rule 3's codec cost per second of
audio the codec decoded rather than per second a stream is open (`Admission`'s `codec_cost_basis`), capped at 0.5 of
the device, and the first-chunk and ramp settings of `own_seconds`. This runs each on the goal bursts and the steady
and 10 s arrivals beside them (bench/sim/goals.py), seeds 0-2, host 1.4 ms per audio second, on:
- the H200's measured codec with vLLM's published engine step (`h200-graphs-vllm-step.json`: 1.7 ms + 0.02 ms per
  row, prompts in the step) and with the 3 ms step guessed before it (`h200-graphs.json`, prefill 3 ms of its own);
- a device that runs one call at a time (`serial`) and one the engine and the codec share by time slices (`sliced`,
  as a GPU shares itself between the engine's process and the codec's: bench/sim/sliced_device.py).
Prints, per arrival and device, each profile's streams admitted per seed, first audio p95 range and the streams that
underran at a 100 ms prebuffer; writes every run. Which profile keeps admitted streams from underrunning in floods and
sustained overload is `python -m bench sim overload --profile NAME` (or `--admission` with `AUDIO_SECOND`'s settings)
(docs/decisions/admission-profiles.md). A prediction from
cost models, not a measurement.
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import write_results
from bench.sim.goals import GOAL_BURSTS, MEASURED_HOST_MS, STEADY_ARRIVALS, Arrivals, arrivals_named
from bench.sim.run import SimConfig, simulate
from bench.sim.sliced_device import DEVICE_SHARINGS, DeviceSharing
from bench.standin.cost_model import CostModel
from services.device.admission_profiles import ADMISSION_PROFILES, AdmissionProfile

ROOT = Path(__file__).resolve().parents[2]
MODELS = {
    "vLLM step": ROOT / "bench" / "cost_models" / "h200-graphs-vllm-step.json",
    "3 ms step": ROOT / "bench" / "cost_models" / "h200-graphs.json",
}
SEEDS = (0, 1, 2)
# Rule 3 per second of audio decoded, capped at 0.5, with the rest of own_seconds' settings: 0.6 let admitted streams
# underrun in sustained 48 kHz overload on the sliced device (`bench.sim.overload`: 16 at vLLM's step, 27 at the 3 ms
# step), 0.5 let 1 (docs/benchmarks.md).
AUDIO_SECOND = AdmissionProfile(
    "dispatch_to_end",
    {
        **ADMISSION_PROFILES["own_seconds"].admission,
        "codec_cost_basis": "audio_second",
        "max_codec_share": 0.5,
    },
)
# The served profiles by name, then this study's variant (a dict of plain names: the variant is no profile name).
VARIANTS: dict[str, AdmissionProfile] = {name: profile for name, profile in ADMISSION_PROFILES.items()}
VARIANTS["audio second"] = AUDIO_SECOND
ARRIVALS = (
    *GOAL_BURSTS,
    *STEADY_ARRIVALS,
    Arrivals("250 @16k within 10 s", 250, 10.0, 16_000),
    Arrivals("200 @48k within 10 s", 200, 10.0, 48_000),
)

Job = tuple[str, DeviceSharing, str, str, int]  # model name, sharing, arrivals, profile, seed


def run_one(job: Job) -> dict[str, Any]:
    model_name, sharing, arrivals, profile_name, seed = job
    _, streams, within, rate, _ = arrivals_named(arrivals, ARRIVALS)
    profile = VARIANTS[profile_name]
    model = CostModel.load(MODELS[model_name]).with_overrides(host_ms=MEASURED_HOST_MS)
    report = simulate(
        SimConfig(
            model,
            streams,
            sample_rate=rate,
            arrive_within_s=within,
            seed=seed,
            admission=profile.admission,
            call_seconds_read=profile.call_seconds_read,
            device_sharing=sharing,
        )
    )
    return {
        "engine_step": model_name,
        "device_sharing": sharing,
        "arrivals": arrivals,
        "profile": profile_name,
        "seed": seed,
        "admitted": report["streams_admitted"],
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "refused_by": report["refused_by"],
    }


def jobs_for(arrivals: tuple[Arrivals, ...], seeds: tuple[int, ...]) -> list[Job]:
    return [
        (model, sharing, a.name, profile, seed)
        for model, sharing, a, profile, seed in itertools.product(
            MODELS, DEVICE_SHARINGS, arrivals, VARIANTS, seeds
        )
    ]


def _cell(runs: list[dict[str, Any]]) -> str:
    p95 = [r["ttfa_ms_p95"] for r in runs if r["ttfa_ms_p95"] is not None]
    span = f"{round(min(p95))}-{round(max(p95))}" if p95 else "-"
    underran = sum(r["underran"] for r in runs)
    return f"{'/'.join(str(r['admitted']) for r in runs)}, {span}" + (
        f", **{underran} underran**" if underran else ""
    )


def print_table(runs: list[dict[str, Any]]) -> None:
    print(
        "Admitted per seed, first audio p95 ms (and streams that underran at a 100 ms prebuffer, where any did); "
        f"host {MEASURED_HOST_MS} ms per audio second"
    )
    profiles = list(dict.fromkeys(r["profile"] for r in runs))
    print("| arrivals | engine step | device | " + " | ".join(profiles) + " |")
    print("|---|---|---|" + "---|" * len(profiles))
    keys = list(dict.fromkeys((r["arrivals"], r["engine_step"], r["device_sharing"]) for r in runs))
    for key in sorted(keys, key=lambda k: [a.name for a in ARRIVALS].index(k[0])):
        cells = []
        for profile in profiles:
            chosen = sorted(
                (
                    r
                    for r in runs
                    if (r["arrivals"], r["engine_step"], r["device_sharing"]) == key
                    and r["profile"] == profile
                ),
                key=lambda r: r["seed"],
            )
            cells.append(_cell(chosen))
        print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "simulate" / "profiles.json",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="seed 0 and the 64-stream burst only")
    args = p.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    arrivals = ARRIVALS[:1] if args.quick else ARRIVALS
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs_for(arrivals, seeds)))
    print_table(runs)
    print()
    write_results(
        args.json,
        {
            "cost_models": {name: str(path.relative_to(ROOT)) for name, path in MODELS.items()},
            "host_ms_per_audio_second": MEASURED_HOST_MS,
            "profiles": {
                name: {"admission": p.admission, "call_seconds_read": p.call_seconds_read}
                for name, p in VARIANTS.items()
            },
            "runs": runs,
        },
    )
    return 0
