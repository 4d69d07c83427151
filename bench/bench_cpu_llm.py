"""CPU engines for the Spark LLM side by side, and the whole CPU chain's real-time factor.

The model is Qwen2 at the released Spark-TTS LLM size (bench_cpu_engine.RELEASED: hidden 896, 24 layers, vocabulary
166,000) with random weights and the demo tokenizer (the released id layout), written once to a folder laid out like
the released `LLM/` (`--work DIR` keeps it and the ONNX builds between runs). Every candidate decodes with the
grammar's id limits enforced (the grammar head: logits for the ~13k ids the parser reads, nothing else reachable):

- `torch fp32`: the transformers engine as it serves on a CPU today;
- `torch int8`: the same with torch's dynamic int8 Linear layers in the decoder (the head stays float32);
- `onnx int8`, `onnx int4`: the ONNX engine (core/llm/onnx_engine.py), weight-only int8/int4 blocks of 32.

Candidates that cannot run here are listed with the reason (llama.cpp: no prebuilt wheel; CTranslate2: no way to
restrict the output to the grammar's ids; OpenVINO: its exporter pins transformers below 5).

Each (candidate, threads) runs in a child process of its own, one after the other, so its load time and resident
memory are its own: load (to a ready engine; the ONNX build is timed apart, it happens once per checkpoint), peak
resident memory, prefill of `--prompt` ids, then `--tokens` greedy ids, the fastest of `--repeat` runs; the ids are
compared with torch fp32's. Real-time factor: 50 ids per second of audio over ids/s (below 1 keeps up). ids per CPU
second: the ids over the process's CPU time, which other processes' load leaves nearly untouched: at one thread it
is what one idle core gives, the figure to read on a busy machine.

The chain: BiCodec's decode (released size, random weights) per audio second at 100-id chunks, and AP-BWE 16->48 kHz
per audio second, on the same CPU and threads, so 16 kHz costs LLM + BiCodec, 48 kHz adds AP-BWE.

    .venv/bin/python -m bench cpu_llm [--threads 1,2] [--tokens 48] [--prompt 150] [--work DIR] [--quick]

Prints markdown tables (the load average during the run beside them); writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEMANTIC_PER_SECOND = 50
CANDIDATES = ("torch fp32", "torch int8", "onnx int8", "onnx int4")
NOT_RUN = {
    "llama.cpp (GGUF q8_0/q4_0)": "llama-cpp-python has no prebuilt wheel on PyPI (source only; the build took "
    "over 10 minutes here): a user would need a compiler",
    "CTranslate2 int8": "takes token strings and has no hook to restrict the output to the grammar's ids "
    "(16-17 ids/s on 2 cores when last measured)",
    "OpenVINO": "its exporter (optimum-intel) pins transformers below 5, which conflicts with the project's pin",
}


def write_released_llm(out: Path, layers: int, seed: int = 0) -> Path:
    """The released LLM folder's layout at the released size: config, random float32 weights, the demo tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from bench.bench_cpu_engine import RELEASED
    from core.demo import checkpoint as demo

    if (out / "model.safetensors").is_file():
        return out
    torch.manual_seed(seed)
    Qwen2ForCausalLM(Qwen2Config(**{**RELEASED, "num_hidden_layers": layers})).save_pretrained(out)
    (out / "tokenizer.json").write_text(demo.build_tokenizer().to_str(pretty=False))
    (out / "tokenizer_config.json").write_text(json.dumps(demo._tokenizer_config()))
    (out / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": demo.IM_END, "pad_token": "<|endoftext|>"})
    )
    return out


def prompt_ids(n: int) -> list[int]:
    import torch

    return torch.randint(0, 151_000, (n,), generator=torch.Generator().manual_seed(1)).tolist()


def load_engine(candidate: str, llm_dir: Path, threads: int) -> Any:
    import torch

    from core.llm.transformers_engine import TransformersEngine, grammar_head_ids_of

    if candidate not in CANDIDATES:
        raise ValueError(f"unknown candidate {candidate!r}; accepted: {', '.join(CANDIDATES)}")
    head = grammar_head_ids_of(llm_dir)
    if candidate.startswith("onnx"):
        from core.llm.onnx_convert import Precision
        from core.llm.onnx_engine import OnnxEngine

        precision: Precision = "int4" if candidate.endswith("int4") else "int8"
        return OnnxEngine.from_checkpoint(llm_dir, precision, threads=threads, max_concurrency=1)
    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32).eval()
    if candidate == "torch int8":
        from torch.ao.quantization import quantize_dynamic

        model.model.layers = quantize_dynamic(model.model.layers, {torch.nn.Linear}, dtype=torch.qint8)
    return TransformersEngine(model, device="cpu", max_concurrency=1, head_ids=head)


async def measure(engine: Any, prompt: list[int], tokens: int, repeat: int) -> dict[str, Any]:
    from core.llm import SamplingConfig

    greedy = SamplingConfig(temperature=0.0, top_k=0, top_p=1.0, max_tokens=tokens)
    best: dict[str, Any] = {}
    await _run(engine, prompt[:8], SamplingConfig(temperature=0.0, max_tokens=4))  # first-call allocations
    for _ in range(repeat):
        run = await _run(engine, prompt, greedy)
        if not best or run["ids_per_s"] > best["ids_per_s"]:
            best = {**run, "prefill_s": min(run["prefill_s"], best.get("prefill_s", run["prefill_s"]))}
    return best


async def _run(engine: Any, prompt: list[int], sampling: Any) -> dict[str, Any]:
    """bench_cpu_engine's timed request (prefill, ids/s, CPU s per audio s), with this bench's key for the rate."""
    from bench.bench_cpu_engine import run

    result = await run(engine, prompt, sampling)
    result["ids_per_s"] = result.pop("tokens_per_s")
    return result


def worker(args: argparse.Namespace) -> None:
    """One candidate at one thread count, in this process: prints one JSON line."""
    started = time.perf_counter()
    engine = load_engine(args.one, args.llm_dir, args.threads)
    load_s = time.perf_counter() - started
    result = asyncio.run(measure(engine, prompt_ids(args.prompt), args.tokens, args.repeat))
    asyncio.run(engine.shutdown())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": load_s, "peak_rss_mb": peak_mb, **result}))


def run_candidate(candidate: str, threads: int, llm_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--one",
        candidate,
        "--threads",
        str(threads),
        "--llm-dir",
        str(llm_dir),
    ]
    command += ["--tokens", str(args.tokens), "--prompt", str(args.prompt), "--repeat", str(args.repeat)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def chain(threads: int, seconds: float) -> dict[str, float]:
    """BiCodec decode and AP-BWE, CPU seconds of wall time per audio second (best of 2)."""
    import numpy as np
    import torch

    from bench.bench_bicodec import MANIFEST, build_decoder
    from core.apbwe import RELEASED_CONFIG, APBWEConfig, SuperResolution, random_generator

    torch.set_num_threads(threads)
    out: dict[str, float] = {}
    with torch.inference_mode():
        if MANIFEST.is_file():
            model = build_decoder(MANIFEST, "cpu")
            gen = torch.Generator().manual_seed(1)
            d = model.speaker_vector(
                torch.randint(0, model.global_codebook_size, (1, model.global_token_count), generator=gen)
            )
            ids = torch.randint(
                0, model.semantic_codebook_size, (1, int(seconds * SEMANTIC_PER_SECOND)), generator=gen
            )
            out["bicodec"] = _best(lambda: model.decode_with_speaker(ids, d)) / seconds
        config = APBWEConfig.from_dict(RELEASED_CONFIG)
        sr = SuperResolution(random_generator(config, seed=0), config, device="cpu")
        wav = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)
        out["apbwe"] = _best(lambda: sr.upsample(wav)) / seconds
    return out


def _best(fn: Any, repeat: int = 2) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def render(
    rows: list[dict[str, Any]],
    builds: dict[str, float],
    stages: dict[int, dict[str, float]],
    meta: dict[str, Any],
) -> str:
    lines = [
        f"{meta['cpu']}, {meta['cores']} cores; load average {meta['load_before']} before, {meta['load_after']} after; "
        f"prompt {meta['prompt']} ids, {meta['tokens']} ids greedy, grammar head on, fastest of {meta['repeat']}",
        "",
        "| engine | threads | load s | peak RSS MB | prefill s | ids/s | x torch fp32 | real-time factor | "
        "CPU s per audio s | ids per CPU s | ids as torch fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {r["threads"]: r for r in rows if r["engine"] == "torch fp32" and "ids_per_s" in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['engine']} | {r['threads']} | failed: {r['error'][:120]} |||||||")
            continue
        ref = base.get(r["threads"])
        same = (
            "-"
            if ref is None
            else f"{sum(a == b for a, b in zip(r['ids'], ref['ids'], strict=False))}/{len(ref['ids'])}"
        )
        ratio = "-" if ref is None else f"{r['ids_per_s'] / ref['ids_per_s']:.2f}"
        lines.append(
            f"| {r['engine']} | {r['threads']} | {r['load_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['prefill_s']:.2f} | "
            f"{r['ids_per_s']:.1f} | {ratio} | {SEMANTIC_PER_SECOND / r['ids_per_s']:.2f} | "
            f"{r['cpu_s_per_audio_s']:.2f} | {SEMANTIC_PER_SECOND / r['cpu_s_per_audio_s']:.1f} | {same} |"
        )
    for name, reason in NOT_RUN.items():
        lines.append(f"| {name} | - | not run: {reason} ||||||||")
    if builds:
        lines += [
            "",
            "ONNX builds (once per checkpoint): " + ", ".join(f"{k} {v:.0f} s" for k, v in builds.items()),
        ]
    if stages:
        lines += [
            "",
            "| threads | engine | LLM s per audio s | BiCodec | AP-BWE | 16 kHz chain RTF | 48 kHz chain RTF |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            stage = stages.get(r["threads"])
            if stage is None or "ids_per_s" not in r:
                continue
            llm = SEMANTIC_PER_SECOND / r["ids_per_s"]
            codec = stage.get("bicodec", float("nan"))
            lines.append(
                f"| {r['threads']} | {r['engine']} | {llm:.2f} | {codec:.2f} | {stage['apbwe']:.2f} | "
                f"{llm + codec:.2f} | {llm + codec + stage['apbwe']:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--threads", default=f"1,2{',' + str(os.cpu_count()) if (os.cpu_count() or 2) > 2 else ''}"
    )
    parser.add_argument("--tokens", type=int, default=48, help="ids decoded per run")
    parser.add_argument("--prompt", type=int, default=150, help="prompt length in ids")
    parser.add_argument("--repeat", type=int, default=2, help="runs per row; the fastest is reported")
    parser.add_argument("--engines", default=",".join(CANDIDATES), help="candidates, comma-separated")
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the model and ONNX builds here between runs"
    )
    parser.add_argument("--no-chain", action="store_true", help="skip BiCodec and AP-BWE")
    parser.add_argument(
        "--chain-seconds", type=float, default=2.0, help="audio seconds per chain measurement"
    )
    parser.add_argument("--quick", action="store_true", help="one thread count, 16 ids, one run, two layers")
    parser.add_argument("--layers", type=int, default=24, help=argparse.SUPPRESS)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--llm-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.threads = int(args.threads)
        worker(args)
        return
    threads = [int(t) for t in args.threads.split(",")]
    if args.quick:
        threads, args.tokens, args.repeat, args.layers, args.chain_seconds = threads[:1], 16, 1, 2, 1.0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    from bench.bench_cpu_engine import cpu_name

    meta = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "prompt": args.prompt,
        "tokens": args.tokens,
        "repeat": args.repeat,
        "load_before": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    with tempfile.TemporaryDirectory(prefix="cpu-llm-") as tmp:
        work = args.work or Path(tmp)
        llm_dir = write_released_llm(work / "LLM", args.layers)
        builds: dict[str, float] = {}
        for engine in engines:
            if engine.startswith("onnx"):
                from core.llm.onnx_convert import Precision, cached_model, ensure_onnx_model

                precision: Precision = "int4" if engine.endswith("int4") else "int8"
                if cached_model(llm_dir, precision) is None:
                    started = time.perf_counter()
                    ensure_onnx_model(llm_dir, precision)
                    builds[engine] = time.perf_counter() - started
        rows = []
        for n in threads:
            for engine in engines:
                row = {"engine": engine, "threads": n, **run_candidate(engine, n, llm_dir, args)}
                rows.append(row)
                print(f"{engine} threads={n}: {row.get('ids_per_s', row.get('error'))}", flush=True)
        stages = {} if args.no_chain else {n: chain(n, args.chain_seconds) for n in threads}
    meta["load_after"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(render(rows, builds, stages, meta))


if __name__ == "__main__":
    main()
