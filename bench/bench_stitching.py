"""What request stitching costs the first audio: a stitched request (`previous_request_ids`: the previous request's
last seconds of speech and its words in the prompt) against the same request unstitched, on the paced engine.

The LLM is `PacedEngine` with a prompt-length-dependent prefill (`--prefill-per-token-ms`), so the stitched prompt's
extra ids cost what they would on a real engine; the rest of the product pipeline (parser, streaming decoder,
audio chain) is real, on the demo checkpoint. Unstitched and stitched requests alternate, so they share the
machine's background load. The claim: stitched TTFA <= unstitched TTFA + extra prefill + the service's extra prompt
build (tokenising the prefix, measured here too) + the engine's tick, with the same engine steps before the audio.

    .venv/bin/python bench/bench_stitching.py [--repeats 10] [--prefix-s 4] [--rate 100]

Prints a markdown table and writes bench/results/stitching.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.paced_engine import PaceConfig, PacedEngine  # noqa: E402
from services.continuity import Continuity, MemoryRecentStore  # noqa: E402
from services.deployment.runtime import ModelRuntime  # noqa: E402
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest  # noqa: E402
from services.pipeline.text_plan import prompt_for  # noqa: E402
from shared.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from services.pipeline.resources import PipelineResources

PREVIOUS = "The story began on a quiet morning, when the harbour was still asleep and the boats lay still."
TEXT = "Then the bell rang out across the water, and everyone woke at once."
OUT = ROOT / "bench" / "results" / "stitching.json"


async def first_audio(runtime: ModelRuntime, request: SynthesisRequest) -> tuple[float, int, SynthesisJob]:
    """Seconds to the first audio bytes, engine ids before them, and the finished job."""
    job = SynthesisJob.planned(runtime.pipeline_resources(), request)
    started = time.perf_counter()
    ttfa = None
    async for _ in job.stream_bytes():
        if ttfa is None:
            ttfa = time.perf_counter() - started
    assert ttfa is not None and job.stats.first_audio_engine_ids is not None
    return ttfa, job.stats.first_audio_engine_ids, job


def request(runtime: ModelRuntime, request_id: str, text: str, voice, seed: int) -> SynthesisRequest:
    return SynthesisRequest(
        request_id=request_id,
        text=text,
        voice=voice,
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        stream=True,
        sampling=SamplingOptions.with_defaults(runtime.settings, seed=seed),
    )


def prompt_build_s(runtime: ModelRuntime, voice, global_tokens, rounds: int = 50) -> float:
    """The service's own cost of the prompt (tokenising it, on the event loop): median of `rounds`."""
    # the runtime stands in for the pipeline's resources: it has the tokenizer and added ids prompt_for reads
    resources = cast("PipelineResources", runtime)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        prompt_for(resources, TEXT, voice, global_tokens)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def run(args: argparse.Namespace) -> dict:
    from core.demo.checkpoint import build_demo_checkpoint

    model_dir = build_demo_checkpoint(ROOT / "var" / "bench-demo-model", seed=0)
    settings = Settings(
        model_dir=model_dir,
        warmup=False,
        auth_enabled=False,
        sr_enabled=False,
        log_json=False,
        log_level="WARNING",
        continuity_prefix_s=args.prefix_s,
    )
    runtime = ModelRuntime(settings)
    await runtime.start()
    pace = PaceConfig(
        tokens_per_s=args.rate,
        prefill_s=args.prefill_ms / 1000,
        tick_s=args.tick_ms / 1000,
        prefill_per_token_s=args.prefill_per_token_ms / 1000,
    )
    await runtime.engine.shutdown()
    runtime.engine = PacedEngine.from_tokenizer(runtime.tokenizer, runtime.layout, pace)
    continuity = Continuity(settings, runtime, MemoryRecentStore())
    voice = runtime.voices.resolve("fixed")
    rows: dict[str, list[tuple[float, int]]] = {"unstitched": [], "stitched": []}
    try:
        previous = SynthesisJob.planned(
            runtime.pipeline_resources(), request(runtime, "previous", PREVIOUS, voice, 1)
        )
        continuity.track(previous, None)
        await previous.collect()
        stitched_voice = await continuity.stitched_voice(voice, ["previous"], None, voice_named=True)
        # the runtime stands in for the pipeline's resources: it has the tokenizer and added ids prompt_for reads
        resources = cast("PipelineResources", runtime)
        extra_ids = len(prompt_for(resources, TEXT, stitched_voice, stitched_voice.global_tokens)[0]) - len(
            prompt_for(resources, TEXT, voice, voice.global_tokens)[0]
        )
        build_s = {
            kind: prompt_build_s(runtime, used, voice.global_tokens)
            for kind, used in (("unstitched", voice), ("stitched", stitched_voice))
        }
        await first_audio(runtime, request(runtime, "warm", TEXT, voice, 0))
        for i in range(args.repeats):
            for kind, used in (("unstitched", voice), ("stitched", stitched_voice)):
                ttfa, steps, _ = await first_audio(runtime, request(runtime, f"{kind}-{i}", TEXT, used, i))
                rows[kind].append((ttfa, steps))
    finally:
        await runtime.shutdown()
    extra_prefill_s = extra_ids * pace.prefill_per_token_s
    extra_build_s = build_s["stitched"] - build_s["unstitched"]
    summary: dict[str, dict[str, Any]] = {
        kind: {
            "ttfa_p50_ms": 1000 * statistics.median(t for t, _ in values),
            "ttfa_max_ms": 1000 * max(t for t, _ in values),
            "steps_before_audio": sorted({s for _, s in values}),
        }
        for kind, values in rows.items()
    }
    difference_ms = summary["stitched"]["ttfa_p50_ms"] - summary["unstitched"]["ttfa_p50_ms"]
    return {
        "repeats": args.repeats,
        "rate_tokens_per_s": args.rate,
        "prefix_s": args.prefix_s,
        "prefill_ms": args.prefill_ms,
        "prefill_per_token_ms": args.prefill_per_token_ms,
        "extra_prompt_ids": extra_ids,
        "extra_prefill_ms": 1000 * extra_prefill_s,
        "extra_prompt_build_ms": 1000 * extra_build_s,
        "stitched_minus_unstitched_p50_ms": difference_ms,
        "within_extra_prefill_build_and_tick": difference_ms
        <= 1000 * (extra_prefill_s + extra_build_s + pace.tick_s),
        "cells": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0, help="engine ids per second")
    parser.add_argument("--prefix-s", type=float, default=4.0, help="TTS_CONTINUITY_PREFIX_S")
    parser.add_argument("--prefill-ms", type=float, default=20.0, help="fixed prefill per request")
    parser.add_argument("--prefill-per-token-ms", type=float, default=0.1, help="prefill per prompt id")
    parser.add_argument(
        "--tick-ms", type=float, default=2.0, help="the engine's wake-up interval (its time grain)"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(
        f"extra prompt ids: {result['extra_prompt_ids']}, extra prefill: {result['extra_prefill_ms']:.1f} ms, extra "
        f"prompt build (tokenising the prefix): {result['extra_prompt_build_ms']:.1f} ms\n"
    )
    print("| request | TTFA p50 (ms) | TTFA max (ms) | engine ids before audio |")
    print("|---|---|---|---|")
    for kind, cell in result["cells"].items():
        print(
            f"| {kind} | {cell['ttfa_p50_ms']:.1f} | {cell['ttfa_max_ms']:.1f} | {cell['steps_before_audio']} |"
        )
    print(
        f"\nstitched - unstitched (p50): {result['stitched_minus_unstitched_p50_ms']:.1f} ms; within extra prefill "
        f"+ prompt build + one tick: {result['within_extra_prefill_build_and_tick']}"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
