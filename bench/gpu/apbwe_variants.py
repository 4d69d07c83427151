"""Acceptance step `apbwe_variants`: AP-BWE's precisions timed at every shape the service captures, in one call.

    python3 bench/gpu/acceptance.py --steps apbwe_variants        # also part of --one-call

Variants (core/apbwe_precision): `fp32` (the reference), `tf32` (graphs captured with the TF32 switches on),
`fp16` (the ConvNeXt pointwise layers on fp16 tensor cores: `TTS_CODEC_SR_PRECISION`'s default) and `fp16-fused`
(`TTS_CODEC_SR_FUSED`: a layer pair compiled by TorchInductor, its elementwise chain fused). For each, at the released
size (random weights: the same kernels as the released ones): every AP-BWE graph of the service's plan captured (the
72 shapes, fewest rows first, within the variant's share of the step's budget), each replay timed by CUDA events
(best of `REPEAT`), the fit `fixed + per_sample` over the shapes, each shape's replay against fp32's; the first
eager call's seconds (the fused variant's compile); and the quality: SNR of the offline upsample against fp32's,
streamed against offline at the variant's own precision, one graph's output against the eager call of its shape.
The cost model reads the fits (`fixed_ms`, `per_sample_ms`: bench/cost_models/). On a CPU (`--quick`) the same plumbing
runs eager on tiny shapes: the figures say nothing about a GPU.
"""

from __future__ import annotations

import copy
import math
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from core.apbwe import RELEASED_CONFIG, APBWEConfig, SuperResolution, _layer, random_generator
from core.apbwe_precision import SRPrecision
from services.device.calls import SchedulerPolicy
from services.device.graphs import CodecGraphs, GraphKey, GraphPlan

VARIANTS: dict[str, tuple[SRPrecision, bool]] = {  # name: (precision, fused)
    "fp32": ("fp32", False),
    "fp16": ("fp16", False),
    "tf32": ("tf32", False),
    "fp16-fused": ("fp16", True),
}
REPEAT = 5
BUDGET_S = 100.0  # the step alone; --one-call gives it bench/gpu/one_call.py's share
MIN_SNR_DB = 50.0  # the bar a precision clears to serve (docs/decisions/apbwe-precision.md)
SIGNAL_S = 4.0


def speechlike(seconds: float, rate: int = 16000) -> np.ndarray:
    """A voiced-speech stand-in (no espeak-ng on the lent image): a gliding 110-220 Hz pulse train through two moving
    resonances, syllable-rate envelope, a little noise. Its band above 8 kHz is empty, as a 16 kHz input's is."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 165 + 55 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    first, second = 600 + 250 * np.sin(2 * np.pi * 1.1 * t), 1700 + 500 * np.sin(2 * np.pi * 0.8 * t)
    voiced = np.zeros_like(t)
    for k in range(1, 32):  # harmonics below 7 kHz
        weight = (
            np.exp(-(((k * f0 - first) / 250) ** 2))
            + 0.5 * np.exp(-(((k * f0 - second) / 400) ** 2))
            + 0.05 / k
        )
        voiced += weight * np.sin(k * phase)
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.003
    wav = envelope * voiced + noise
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


def _policy(quick: bool) -> SchedulerPolicy:
    if quick:
        return SchedulerPolicy(sr_buckets=(3_520, 4_800), batch_sizes=(1, 2), max_call_sr_samples=20_000)
    return SchedulerPolicy()


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float | None:
    noise = float(np.sum((other.astype(np.float64) - reference) ** 2))
    return (
        None
        if noise == 0
        else round(10 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / noise), 1)
    )


def _streamed(sr: SuperResolution, wav: np.ndarray) -> np.ndarray:
    stream = sr.stream()
    return np.concatenate(
        [*(stream.push(wav[i : i + 4000]) for i in range(0, wav.size, 4000)), stream.finish()]
    )


def _best_ms(fn: Any, cuda: bool) -> float:
    best = math.inf
    for _ in range(REPEAT if cuda else 1):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end))
        else:
            began = time.perf_counter()
            fn()
            best = min(best, (time.perf_counter() - began) * 1000)
    return best


def fit(points: list[tuple[int, float]]) -> dict[str, float] | None:
    """Least squares `ms = fixed + per_sample * samples` over (16 kHz input samples of a call, ms); None below two
    distinct sizes."""
    if len({n for n, _ in points}) < 2:
        return None
    x = np.array([n for n, _ in points], float)
    y = np.array([ms for _, ms in points], float)
    per, fixed = np.polyfit(x, y, 1)
    worst = float(np.max(np.abs(fixed + per * x - y) / y))
    return {
        "fixed_ms": round(float(fixed), 4),
        "per_sample_ms": float(f"{per:.4g}"),
        "worst_rel_err": round(worst, 3),
    }


def _variant(
    name: str,
    generator: Any,
    config: APBWEConfig,
    device: str,
    keys: list[GraphKey],
    budget_s: float,
    wav: np.ndarray,
    reference: np.ndarray | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray]:
    precision, fused = VARIANTS[name]
    cuda = device.startswith("cuda")
    sr = SuperResolution(copy.deepcopy(generator), config, device, precision=precision, fused=fused)
    if fused and not cuda:
        # A CPU checks the trace (a graph break raises); Inductor's C++ build would take minutes here.
        sr.generator._layer = torch.compile(_layer, dynamic=True, fullgraph=True, backend="eager")
    began = time.perf_counter()
    offline = sr.upsample(wav)  # the fused variant compiles here
    first_s = time.perf_counter() - began
    summary: dict[str, Any] = {
        "precision": precision,
        "fused": fused,
        "first_call_s": round(first_s, 2),
        "snr_db_vs_fp32": None if reference is None else _snr_db(reference, offline),
        "streamed_vs_offline_max": float(np.abs(_streamed(sr, wav) - offline).max()),
    }
    rows: list[dict[str, Any]] = []
    graphs: CodecGraphs | None = None
    if cuda:
        graphs = CodecGraphs(
            SimpleNamespace(device=device), sr, GraphPlan(frozenset(keys)), sr_precision=precision
        )
        began = time.perf_counter()
        graphs.capture_all(budget_s=budget_s)
        summary.update(capture_s=round(time.perf_counter() - began, 1), captured=len(graphs.graphs))
    summary["planned"] = len(keys)
    with torch.inference_mode():
        for key in keys:
            graph = graphs.graphs.get(key) if graphs is not None else None
            if cuda and graph is None:
                continue  # left by the budget: not timed
            x = torch.zeros(key.rows, key.length, device=device)
            call = graph.replay if graph is not None else (lambda x=x, sr=sr: sr.enhance_batch(x))
            rows.append(
                {
                    "variant": name,
                    "length": key.length,
                    "rows": key.rows,
                    "ms": round(_best_ms(call, cuda), 4),
                }
            )
        if graphs is not None and graphs.graphs:
            # A graph against the eager call of its shape: the same kernels for fp32 and fp16; for tf32 the eager call
            # runs fp32 (the switches are on only while capturing), so this is TF32 against fp32.
            graph = graphs.graphs[max(graphs.graphs, key=lambda k: k.work)]
            rows_, length = graph.key.rows, graph.key.length
            x = torch.from_numpy(np.resize(wav, rows_ * length).reshape(rows_, length)).to(device)
            graph.inputs[0].copy_(x)
            replayed = graph.replay().float().cpu().numpy()
            eager = sr.enhance_batch(x).float().cpu().numpy()
            summary["graph_vs_eager_max"] = float(np.abs(replayed - eager).max())
            summary["graph_vs_eager_snr_db"] = _snr_db(eager, replayed)
    summary["fit"] = fit([(r["length"] * r["rows"], r["ms"]) for r in rows])
    del graphs, sr
    if cuda:
        torch.cuda.empty_cache()
    return summary, rows, offline


def run(device: str, quick: bool, *, budget_s: float | None = None) -> dict[str, Any]:
    began = time.perf_counter()
    budget_s = BUDGET_S if budget_s is None else budget_s
    if not device.startswith("cuda"):
        budget_s = math.inf  # a CPU run is the plumbing check: every variant runs, however slow the machine
    raw = dict(RELEASED_CONFIG, ConvNeXt_channels=16, ConvNeXt_layers=1) if quick else dict(RELEASED_CONFIG)
    config = APBWEConfig.from_dict(raw)
    generator = random_generator(config, seed=0)
    keys = GraphPlan.from_policy(_policy(quick), ("sr",)).ordered()
    wav = speechlike(0.5 if quick else SIGNAL_S)
    variants: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    reference = None
    names = list(VARIANTS)
    for index, name in enumerate(names):
        left = budget_s - (time.perf_counter() - began)
        if left <= 0:
            variants[name] = {"skipped": "the step's budget was spent"}
            continue
        share = left / (len(names) - index)  # what is left, shared by the variants still to run
        print(f"  {name}: up to {share:.0f} s", flush=True)
        try:
            summary, measured, offline = _variant(
                name, generator, config, device, keys, 0.6 * share, wav, reference
            )
        except Exception as exc:  # noqa: BLE001 - one variant failing (a compile, say) leaves the others measured
            variants[name] = {
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            }
            print(f"  {name}: {variants[name]['error']}", flush=True)
            continue
        if name == "fp32":
            reference = offline
        variants[name], rows = summary, rows + measured
        print(f"  {name}: {summary}", flush=True)
    base = {(r["length"], r["rows"]): r["ms"] for r in rows if r["variant"] == "fp32"}
    for name, summary in variants.items():
        ratios = [
            r["ms"] / base[(r["length"], r["rows"])]
            for r in rows
            if r["variant"] == name and (r["length"], r["rows"]) in base
        ]
        if ratios and "error" not in summary:
            summary["ratio_to_fp32"] = {
                "mean": round(float(np.mean(ratios)), 3),
                "min": round(min(ratios), 3),
                "max": round(max(ratios), 3),
            }
        # tf32's eager upsample is fp32: its graph against the eager call is its quality figure
        snr = summary.get("graph_vs_eager_snr_db" if VARIANTS[name][0] == "tf32" else "snr_db_vs_fp32")
        summary["ok"] = "error" not in summary and (snr is None or snr >= MIN_SNR_DB)
    return {
        "size": "demo-size" if quick else "released",
        "variants": variants,
        "rows": rows,
        "shapes": len(keys),
    }


def report(step: dict[str, Any], steps: dict[str, Any]) -> list[str]:
    """The step's table for the kit's page (bench/gpu/report.py)."""
    result = step["result"]
    lines = [
        f"AP-BWE ({result['size']}), {result['shapes']} shapes: each variant's replays fitted as fixed + per "
        "sample (16 kHz input samples of a call), its replays against fp32's, and its quality.",
        "",
        "| variant | captured | fixed ms | ms per 1k samples | ratio to fp32 (mean, range) | first call s | SNR vs fp32 dB "
        "| streamed vs offline | graph vs eager (max, dB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        if "error" in v or "skipped" in v:
            lines.append(f"| {name} | {v.get('error') or v.get('skipped')} |||||||")
            continue
        f, r = v.get("fit") or {}, v.get("ratio_to_fp32") or {}
        ratio = f"{r['mean']:.2f} ({r['min']:.2f}-{r['max']:.2f})" if r else "-"
        per_k = f"{f['per_sample_ms'] * 1000:.3f}" if f else "-"
        lines.append(
            f"| {name} | {v.get('captured', '-')}/{v['planned']} | {f.get('fixed_ms', '-')} | {per_k} | {ratio} | "
            f"{v['first_call_s']} | {v['snr_db_vs_fp32'] if v['snr_db_vs_fp32'] is not None else '-'} | "
            f"{v['streamed_vs_offline_max']:.1e} | {v.get('graph_vs_eager_max', '-')}, "
            f"{v.get('graph_vs_eager_snr_db', '-')} |"
        )
    return lines
