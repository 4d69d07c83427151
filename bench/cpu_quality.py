"""How far the CPU engine's quantised builds are from float32: next-id agreement and KL divergence over a fixed
prompt set, for any checkpoint (`--weights`: the released one settles the choice; without it, the released size
with random weights).

For each prompt (controllable prompts over six texts and three voices, and clone prompts with fixed global tokens),
the float32 reference (the transformers engine with the grammar head, as it serves) decodes `--tokens` ids greedily;
every candidate then reads the same prompt and ids (teacher forcing), so each position compares the two distributions
over the same history. Per candidate: top-1 agreement (the share of positions whose most likely id is float32's),
the mean and 99th-percentile KL(float32 || candidate) in nats over the grammar's ids at temperature 1 (the
distribution the sampler draws from), and how many of float32's 50 most likely ids the candidate also ranks top-50
(the default top-k).

The bar (docs/decisions/cpu-engine.md): top-1 agreement >= 0.95 and mean KL <= 0.02 nats. A quantisation that fails
it on the released checkpoint is not the default.

    .venv/bin/python -m bench cpu_quality [--weights MODEL_OR_LLM_DIR] [--candidates onnx int8,onnx int4] [--tokens 48]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AGREEMENT_BAR = 0.95
KL_BAR = 0.02
TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Turn off the kitchen lights at eleven.",
    "Your package arrives on Tuesday, the fourth of March.",
    "It is twenty one degrees and sunny in Lisbon.",
    "Remind me to call grandma after dinner.",
    "The front door is unlocked.",
)
VOICES = (("female", "moderate", "moderate"), ("male", "low", "high"), ("female", "high", "low"))


def llm_folder(weights: Path) -> Path:
    """A model folder (with LLM/) or the LLM folder itself."""
    return weights / "LLM" if (weights / "LLM" / "config.json").is_file() else weights


def prompt_set(llm_dir: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    from processing.prompt import StyleLabels, clone_prompt, controllable_prompt, encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    rng = np.random.default_rng(7)
    prompts = []
    for i, text in enumerate(TEXTS):
        gender, pitch, speed = VOICES[i % len(VOICES)]
        prompts.append(encode_prompt(tokenizer, controllable_prompt(text, StyleLabels(gender, pitch, speed))))
        globals_ = rng.integers(0, 4096, 32).tolist()
        prompts.append(encode_prompt(tokenizer, clone_prompt(text, globals_, start_semantic=True)))
    return prompts


def step_logits(engine: Any, prompt: list[int], continuation: list[int]) -> np.ndarray:
    """The engine's float32 logits over its head rows after the prompt and after each id of the continuation but
    the last: [len(continuation), head rows]."""
    import torch

    rows = []
    with torch.inference_mode():
        logits, cache = engine._step(torch.tensor([prompt]), None)
        rows.append(logits.numpy().copy())
        for token in continuation[:-1]:
            logits, cache = engine._step(torch.tensor([[token]]), cache)
            rows.append(logits.numpy().copy())
    return np.stack(rows)


def greedy(engine: Any, prompt: list[int], tokens: int) -> list[int]:
    import torch

    ids: list[int] = []
    with torch.inference_mode():
        logits, cache = engine._step(torch.tensor([prompt]), None)
        for _ in range(tokens):
            ids.append(int(engine._head_rows[int(torch.argmax(logits))]))
            logits, cache = engine._step(torch.tensor([[ids[-1]]]), cache)
    return ids


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, np.ndarray]:
    """Per position: top-1 equal, KL(reference || candidate) in nats, top-50 overlap."""

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x = x - x.max(axis=-1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

    p, q = log_softmax(reference), log_softmax(candidate)
    kl = (np.exp(p) * (p - q)).sum(axis=-1)
    top_ref = np.argsort(-reference, axis=-1)[:, :50]
    top_cand = np.argsort(-candidate, axis=-1)[:, :50]
    overlap = np.array([len(set(a) & set(b)) / 50 for a, b in zip(top_ref, top_cand, strict=True)])
    return {"top1": reference.argmax(-1) == candidate.argmax(-1), "kl": np.maximum(kl, 0.0), "top50": overlap}


def load(candidate: str, llm_dir: Path, threads: int) -> Any:
    """The candidate's engine, as the speed bench loads it (torch fp32 is the reference)."""
    from bench.bench_cpu_llm import load_engine

    return load_engine(candidate, llm_dir, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, default=None, help="a model folder (or its LLM/); default: random"
    )
    parser.add_argument("--candidates", default="onnx int8,onnx int4", help="comma-separated")
    parser.add_argument("--tokens", type=int, default=48, help="ids per prompt")
    parser.add_argument("--prompts", type=int, default=len(TEXTS) * 2, help="how many of the fixed prompts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--work", type=Path, default=None, help="random weights: keep the model and builds here"
    )
    args = parser.parse_args()
    import asyncio

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cpu-quality-") as tmp:
        if args.weights is not None:
            llm_dir, weights = llm_folder(args.weights), str(args.weights)
        else:
            from bench.bench_cpu_llm import write_released_llm

            llm_dir, weights = (
                write_released_llm((args.work or Path(tmp)) / "LLM", 24),
                "random, released size",
            )
        prompts = prompt_set(llm_dir)[: args.prompts]
        reference = load("torch fp32", llm_dir, args.threads)
        continuations = [greedy(reference, p, args.tokens) for p in prompts]
        ref_logits = [step_logits(reference, p, c) for p, c in zip(prompts, continuations, strict=True)]
        asyncio.run(reference.shutdown())
        del reference
        rows = []
        for name in [c.strip() for c in args.candidates.split(",") if c.strip()]:
            engine = load(name, llm_dir, args.threads)
            parts = [
                compare(r, step_logits(engine, p, c))
                for r, p, c in zip(ref_logits, prompts, continuations, strict=True)
            ]
            asyncio.run(engine.shutdown())
            top1 = np.concatenate([x["top1"] for x in parts])
            kl = np.concatenate([x["kl"] for x in parts])
            top50 = np.concatenate([x["top50"] for x in parts])
            passed = top1.mean() >= AGREEMENT_BAR and kl.mean() <= KL_BAR
            rows.append((name, top1.mean(), kl.mean(), np.percentile(kl, 99), top50.mean(), passed))
            print(f"{name}: agreement {top1.mean():.3f}, mean KL {kl.mean():.4f}", flush=True)
    print(
        f"\nWeights: {weights}; {len(prompts)} prompts x {args.tokens} ids teacher-forced on float32's greedy ids; "
        f"bar: agreement >= {AGREEMENT_BAR}, mean KL <= {KL_BAR} nats ({time.perf_counter() - started:.0f} s)\n"
    )
    print("| candidate | top-1 agreement | mean KL (nats) | p99 KL | top-50 overlap | passes the bar |")
    print("|---|---|---|---|---|---|")
    for name, agree, kl_mean, kl_p99, top50, passed in rows:
        print(
            f"| {name} | {agree:.3f} | {kl_mean:.4f} | {kl_p99:.4f} | {top50:.3f} | {'yes' if passed else 'no'} |"
        )


if __name__ == "__main__":
    main()
