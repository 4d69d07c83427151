"""The benches: list them, run one by name, or run the quick suite.

    python -m bench                      # one line per bench
    python -m bench NAME [ARGS...]       # run one (ARGS go to the bench; --help shows its own)
    python -m bench all [--quick] [--only parser,service]   # the suite, one process per bench, then a summary

Run from the repository root with the project's venv (vllm_output and `host_path --engine vllm`: `.venv-vllm`;
pipecat_first_audio: the agents venv, see its docstring).
Each bench prints markdown tables (docs/benchmarks.md quotes them); a JSON copy goes under bench/results/, which git
ignores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    target: str  # a script under bench/ ("bench_parser.py") or a module ("-m bench.sim")
    what: str
    suite: bool = False  # in `all` (every one of them takes --quick)


BENCHES: dict[str, Bench] = {
    # components, no server
    "parser": Bench(
        "bench_parser.py", "incremental token parser against decode-and-regex, per id", suite=True
    ),
    "guards": Bench("bench_guards.py", "generation guards: false alarms and cost", suite=True),
    "encoders": Bench("bench_encoders.py", "streaming encoders and resampler, CPU s per audio s", suite=True),
    "resampler": Bench(
        "bench_resampler.py", "the output resampler against soxr: held back, first chunk, CPU"
    ),
    "normalize": Bench("bench_normalize.py", "text normalisation: time per length, adversarial inputs"),
    "pdf_reading": Bench(
        "bench_pdf_reading.py", "jobs' PDF reader against pypdf and pdfminer.six, and the outline attack"
    ),
    "text_linearity": Bench(
        "bench_text_linearity.py", "every pre-charge text step on adversarial shapes: time grows linearly"
    ),
    "sr_convs": Bench(
        "bench_sr_convs.py", "AP-BWE's length-independent convolutions against torch's", suite=True
    ),
    "apbwe": Bench(
        "bench_apbwe.py", "AP-BWE 16->48 kHz at the released size, offline and streaming", suite=True
    ),
    "apbwe_precision": Bench(
        "-m bench.bench_apbwe_precision",
        "AP-BWE at fp16/TF32 against fp32 (--weights DIR: the released ones)",
    ),
    "bicodec": Bench(
        "bench_bicodec.py", "BiCodec decode at the released size, chunked against offline", suite=True
    ),
    "align": Bench(
        "bench_align.py",
        "word timestamps: accuracy on espeak-ng speech, cost of estimate and ctc",
        suite=True,
    ),
    "clone": Bench(
        "bench_clone.py", "voice-cloning encode at the released size, and the cache hit", suite=True
    ),
    "cpu_engine": Bench(
        "bench_cpu_engine.py",
        "the transformers engine on a CPU at the released size: ids/s, real-time factor",
    ),
    "cpu_llm": Bench(
        "bench_cpu_llm.py",
        "CPU engines side by side (torch, ONNX int8/int4) at the released size, and the CPU chain's real-time factor",
    ),
    "cpu_quality": Bench(
        "cpu_quality.py",
        "the CPU engine's int8/int4 builds against float32: next-id agreement, KL (--weights DIR)",
    ),
    "first_chunk": Bench(
        "bench_first_chunk.py", "what a short first chunk costs in accuracy (released BiCodec)"
    ),
    "first_audio_48k": Bench("first_audio_48k.py", "why 48 kHz starts later, from the schedules alone"),
    "run_ahead": Bench(
        "bench_run_ahead.py", "how far an abandoned reply's generation runs ahead of playback"
    ),
    "time_stretch": Bench("bench_time_stretch.py", "the time-stretch alone: CPU, duration, level"),
    "host_stages": Bench("bench_host_stages.py", "the API path's synchronous stages, us per audio second"),
    "sr_submit": Bench("bench_sr_submit.py", "AP-BWE windows submitted one task each against together"),
    "stitching": Bench("bench_stitching.py", "what request stitching costs first audio (paced engine)"),
    "vllm_output": Bench(
        "bench_vllm_output.py", "vLLM's output path in the API process, per id (.venv-vllm)"
    ),
    # the real server (bench/harness.py starts it)
    "service": Bench(
        "bench_service.py", "the HTTP service under concurrent streams, paced engine", suite=True
    ),
    "ttfa": Bench("bench_ttfa.py", "time to first audio per schedule, voice, rate, concurrency", suite=True),
    "timing": Bench("bench_timing_latency.py", "first audio with and without word timestamps, per transport"),
    "barge_in": Bench("bench_barge_in.py", "the next turn after a barge-in against a fresh turn"),
    "long_reply": Bench(
        "bench_long_reply.py", "a long reply sent whole: gaps on the wire, audio held, late words"
    ),
    "pipecat_first_audio": Bench(
        "bench_pipecat_first_audio.py",
        "Pipecat's ElevenLabs against Cartesia first audio at 20 and 50 LLM tokens/s",
    ),
    "standin_load": Bench(
        "bench_standin_load.py", "1 against N streams on the device stand-in: first audio, underruns"
    ),
    "timed_sockets": Bench(
        "bench_timed_sockets.py", "voice-agent sockets on the stand-in, timestamps off and on"
    ),
    "mixed_formats": Bench(
        "bench_mixed_formats.py", "PCM listeners beside compressed streams on the stand-in"
    ),
    "host_path": Bench("bench_host_path.py", "the API path's CPU per audio second, per transport and format"),
    "request_cost": Bench("bench_request_cost.py", "the API process's CPU per request, apart from its audio"),
    "flood_cost": Bench(
        "bench_flood_cost.py", "what a flooding WebSocket client costs the server (PostgreSQL)"
    ),
    "flood_fairness": Bench(
        "bench_flood_fairness.py", "another key's first audio under each flood, as ratios"
    ),
    "hostile_listeners": Bench(
        "bench_hostile_listeners.py",
        "another key's first audio and health under alias rules and Wyoming attacks",
    ),
    "fleet": Bench(
        "bench_fleet.py",
        "two replicas behind a local router (PostgreSQL, Redis): a stream a full one refuses, served by the other",
    ),
    "jobs_beside_live": Bench(
        "bench_jobs_beside_live.py",
        "live first audio and underruns beside a long-form job; the job's throughput",
    ),
    "job_turns": Bench(
        "bench_job_turns.py",
        "another key's first chapter behind a long queue; store reads per progress stream",
    ),
    # the device on a virtual clock: one entry point, one subcommand per question (`python -m bench sim` lists them)
    "sim": Bench(
        "-m bench.sim",
        "the device on a virtual clock: `python -m bench sim NAME`, one subcommand per question",
    ),
    # a GPU (bench/gpu/README.md)
    "gpu": Bench("gpu/bench_gpu.py", "batched BiCodec and AP-BWE throughput, fp32 / tf32 / bf16", suite=True),
    "gpu_acceptance": Bench("gpu/acceptance.py", "every GPU claim in resumable steps (a lent GPU)"),
}


def command(name: str, args: list[str]) -> list[str]:
    target = BENCHES[name].target
    if target.startswith("-m "):
        return [sys.executable, "-m", target[3:], *args]
    return [sys.executable, str(ROOT / "bench" / target), *args]


def run(name: str, args: list[str]) -> int:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    return subprocess.run(command(name, args), cwd=ROOT, env=env, check=False).returncode


def suite(argv: list[str]) -> int:
    """Every `suite` bench in turn, each its own process (one crash does not stop the rest), then wall times."""
    names = [n for n, b in BENCHES.items() if b.suite]
    parser = argparse.ArgumentParser(prog="python -m bench all", description=suite.__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every bench")
    parser.add_argument(
        "--only", type=lambda s: s.split(","), default=None, help=f"subset of {', '.join(names)}"
    )
    args = parser.parse_args(argv)
    chosen = args.only or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        parser.error(f"unknown benches {unknown}; accepted: {', '.join(names)}")
    rows: list[tuple[str, float, int]] = []
    started = time.perf_counter()
    for name in chosen:
        print(f"\n===== {name}: {' '.join(command(name, ['--quick'] if args.quick else [])[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = run(name, ["--quick"] if args.quick else [])
        rows.append((name, time.perf_counter() - t0, rc))
    print(f"\n===== summary ({'--quick, ' if args.quick else ''}load avg now {os.getloadavg()[0]:.1f})\n")
    print("| bench | wall s | status |")
    print("|---|---:|---|")
    for name, seconds, rc in rows:
        print(f"| {name} | {seconds:.0f} | {'ok' if rc == 0 else f'FAILED (exit {rc})'} |")
    print(f"| total | {time.perf_counter() - started:.0f} | {sum(rc != 0 for *_, rc in rows)} failed |")
    return 0 if all(rc == 0 for *_, rc in rows) else 1


def listing() -> str:
    width = max(map(len, BENCHES))
    lines = [f"  {name:<{width}}  {bench.what}" for name, bench in BENCHES.items()]
    return "\n".join(
        [
            __doc__.strip(),
            "",
            "benches:",
            *lines,
            f"  {'all':<{width}}  the suite: " + ", ".join(n for n, b in BENCHES.items() if b.suite),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "list"):
        print(listing())
        return 0
    name, rest = argv[0], argv[1:]
    if name == "all":
        return suite(rest)
    if name not in BENCHES:
        print(f"unknown bench {name!r}\n\n{listing()}", file=sys.stderr)
        return 2
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main())
