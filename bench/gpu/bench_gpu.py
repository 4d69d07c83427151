"""Batched BiCodec decode and AP-BWE throughput at the released sizes, fp32 / tf32 / bf16, on one device.

Random weights with the released configs (BiCodec from ../shared/fixtures/bicodec_manifest.json when present,
else the same values kept below and checked against the manifest whenever it is there; AP-BWE from
`core.apbwe.RELEASED_CONFIG`, checked against apbwe_manifest.json likewise): the compute is the real one.

For each precision and batch size B it times one batched call on the window a streaming decoder sends in the
steady state (a 200-token chunk with 24 tokens of left context and 24 of look-ahead = 248 tokens; for
AP-BWE the 64,000-sample block that chunk becomes, plus the 880-sample context on each side) and reports
- x real-time: seconds of *kept* audio (context excluded) per second of compute, for the whole batch;
- the error against fp32 on the same inputs (max abs, SNR dB) for tf32 and bf16;
- peak device memory.
"Streams one GPU sustains" is the best x real-time over B: each stream needs 1 s of audio per second. For
48 kHz streams the decode and SR stages share the device: 1 / (1/decode + 1/SR).

    python3 bench/gpu/bench_gpu.py                      # on the GPU machine (see bench/gpu/README.md)
    .venv/bin/python bench/gpu/bench_gpu.py --quick     # CPU smoke run: tiny windows, B 1-2 (~30 s)

Prints markdown tables and writes bench/results/gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core import exact_stft  # noqa: E402
from core.apbwe import LOG_FLOOR, RELEASED_CONFIG, APBWEConfig, SuperResolution, random_generator  # noqa: E402
from core.bicodec import RELEASED_CONFIG as BICODEC_RELEASED_CONFIG  # noqa: E402
from core.bicodec import BiCodecDecoder, is_skipped_tensor  # noqa: E402
from core.demo.random_bicodec import build_random_state_dict  # noqa: E402

FIXTURES = ROOT / ".." / "shared" / "fixtures"
TOKEN_SECONDS = 320 / 16000
SR_CONTEXT = (
    880  # AP-BWE released config: input samples of context each side (core.apbwe.APBWEConfig.context)
)

# The released BiCodec config, so the harness also runs where the steering fixtures are not copied (the GPU machine
# receives the repository only): the product's own copy (core.bicodec.RELEASED_CONFIG).
RELEASED_BICODEC_CONFIG: dict[str, Any] = BICODEC_RELEASED_CONFIG


@dataclass(frozen=True)
class Shape:
    """What one batched call processes per row: the window and the part of it that is kept."""

    window_tokens: int  # BiCodec window (chunk + left context + look-ahead)
    kept_tokens: int
    sr_window: int  # AP-BWE input samples (block + context both sides)
    sr_kept: int


@dataclass
class Row:
    stage: str  # decode | sr
    precision: str
    batch: int
    ms: float | None  # best time of one batched call
    x_realtime: float | None  # kept audio seconds per compute second (whole batch)
    ms_per_stream_second: float | None  # compute ms per second of kept audio
    peak_mem_mb: float | None
    max_abs_err: float | None = None  # vs fp32, same inputs
    snr_db: float | None = None
    note: str = ""


# ---------------------------------------------------------------------------------------------- set-up
def _manifest_config(name: str) -> dict | None:
    path = FIXTURES / name
    return json.loads(path.read_text())["config"] if path.is_file() else None


def bicodec_config() -> tuple[dict, str]:
    manifest = _manifest_config("bicodec_manifest.json")
    if manifest is None:
        return RELEASED_BICODEC_CONFIG, "built-in copy (fixtures not present)"
    if manifest != RELEASED_BICODEC_CONFIG:
        sys.exit(
            "bicodec_manifest.json config differs from RELEASED_BICODEC_CONFIG in bench/gpu/bench_gpu.py"
        )
    return manifest, "bicodec_manifest.json"


def apbwe_config() -> tuple[dict, str]:
    manifest = _manifest_config("apbwe_manifest.json")
    if manifest is None:
        return RELEASED_CONFIG, "core.apbwe.RELEASED_CONFIG (fixtures not present)"
    if manifest != RELEASED_CONFIG:
        sys.exit("apbwe_manifest.json config differs from core.apbwe.RELEASED_CONFIG")
    return manifest, "apbwe_manifest.json"


def build_bicodec(config: dict, device: str) -> BiCodecDecoder:
    with torch.device("meta"):
        model = BiCodecDecoder(config)
    tensors = build_random_state_dict(config, seed=0)
    model.load_decode_state_dict({k: v for k, v in tensors.items() if not is_skipped_tensor(k)})
    return model.to(device)


def build_sr(config: dict, device: str) -> SuperResolution:
    cfg = APBWEConfig.from_dict(config)
    return SuperResolution(random_generator(cfg, seed=0), cfg, device=device)


# -------------------------------------------------------------------------------------- precision modes
@contextlib.contextmanager
def precision(mode: str, device: str) -> Iterator[None]:
    """fp32: TF32 off for matmul and cuDNN; tf32: on; bf16: autocast to bfloat16 (outputs cast back)."""
    cuda = device.startswith("cuda")
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    try:
        if mode == "bf16":
            with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def sr_batch(sr: SuperResolution, x16: torch.Tensor) -> torch.Tensor:
    """AP-BWE on a batch [B, N] of equal windows: the offline recipe of `enhance_window`, batched.

    The model runs under the caller's precision; STFT analysis and synthesis stay fp32 (they need it, and
    torch has no bf16 FFT), as the service would run them.
    """
    c = sr.config
    with torch.autocast(x16.device.type, enabled=False):
        x48 = sr.resample(x16.float())
        window = torch.hann_window(c.win_size, periodic=True, device=x16.device)
        spec = exact_stft.stft(
            x48, c.n_fft, c.hop_size, window
        )  # the service's own framing (core/exact_stft)
        logamp, pha = torch.log(spec.abs() + LOG_FLOOR), torch.angle(spec)
    logamp_out, pha_out = sr.generator(logamp, pha)
    with torch.autocast(x16.device.type, enabled=False):
        out = torch.polar(torch.exp(logamp_out.float()), pha_out.float())
        return exact_stft.istft(out, c.n_fft, c.hop_size, window, x48.shape[-1])


# ---------------------------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(
    fn: Callable[[], torch.Tensor], device: str, warmup: int, reps: int
) -> tuple[float, torch.Tensor]:
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def error_vs(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    ref, out = ref.float().cpu(), out.float().cpu()
    diff = out - ref
    noise = float(diff.pow(2).mean())
    snr = 10 * math.log10(float(ref.pow(2).mean()) / noise) if noise > 0 else math.inf
    return float(diff.abs().max()), snr


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def sweep(
    stage: str,
    run: Callable[[int], torch.Tensor],
    kept_seconds: float,
    batches: list[int],
    precisions: list[str],
    device: str,
    warmup: int,
    reps: int,
) -> list[Row]:
    """Time `run(B)` for every precision and B; errors are measured against fp32 at the same B."""
    rows: list[Row] = []
    reference: dict[int, torch.Tensor] = {}
    for mode in precisions:
        for batch in batches:
            _peak_reset(device)
            try:
                with precision(mode, device), torch.inference_mode():
                    seconds, out = time_call(functools.partial(run, batch), device, warmup, reps)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                if not _is_oom(exc):
                    raise
                rows.append(Row(stage, mode, batch, None, None, None, None, note="out of memory"))
                torch.cuda.empty_cache()
                break
            row = Row(
                stage,
                mode,
                batch,
                seconds * 1000,
                batch * kept_seconds / seconds,
                seconds * 1000 / (batch * kept_seconds),
                _peak_mb(device),
            )
            if mode == "fp32":
                reference[batch] = out.float().cpu()
            elif batch in reference:
                row.max_abs_err, row.snr_db = error_vs(reference[batch], out)
            rows.append(row)
            print(
                f"  {stage:6} {mode:4} B={batch:<3} {row.ms:9.1f} ms  x{row.x_realtime:7.1f} real-time"
                + (
                    f"  max|err| {row.max_abs_err:.2e} SNR {row.snr_db:.1f} dB"
                    if row.max_abs_err is not None
                    else ""
                ),
                flush=True,
            )
    return rows


def streams_sustained(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Per precision: the best x real-time of each stage (= concurrent real-time streams) and the batch."""
    out: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys(r.precision for r in rows):
        entry: dict[str, Any] = {}
        for stage in ("decode", "sr"):
            best = max(
                (r for r in rows if r.precision == mode and r.stage == stage and r.x_realtime),
                key=lambda r: r.x_realtime or 0.0,
                default=None,
            )
            entry[stage] = None if best is None else {"streams": best.x_realtime, "batch": best.batch}
        d, s = entry.get("decode"), entry.get("sr")
        entry["streams_16k"] = d["streams"] if d else None
        entry["streams_48k"] = 1.0 / (1.0 / d["streams"] + 1.0 / s["streams"]) if d and s else None
        out[mode] = entry
    return out


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny windows and batches 1-2 (CPU smoke run)")
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--precisions", type=lambda s: s.split(","), default=None, help="fp32,tf32,bf16")
    parser.add_argument("--stages", type=lambda s: s.split(","), default=["decode", "sr"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args(argv)
    device = args.device
    cuda = device.startswith("cuda")
    if args.quick:
        shape = Shape(window_tokens=24, kept_tokens=12, sr_window=3200 + 2 * SR_CONTEXT, sr_kept=3200)
        batches, warmup, reps = args.batches or [1, 2], 1, 1
    else:
        shape = Shape(window_tokens=248, kept_tokens=200, sr_window=64000 + 2 * SR_CONTEXT, sr_kept=64000)
        batches, warmup, reps = args.batches or [1, 2, 4, 8, 16, 32, 64], 2, 5
    precisions = args.precisions or (["fp32", "tf32", "bf16"] if cuda else ["fp32", "bf16"])
    started = time.perf_counter()
    torch.manual_seed(0)
    rows: list[Row] = []
    sources = {}

    if "decode" in args.stages:
        config, sources["bicodec"] = bicodec_config()
        decoder = build_bicodec(config, device)
        semantic = torch.randint(0, 8192, (max(batches), shape.window_tokens), device=device)
        d_vector = torch.randn(max(batches), decoder.d_vector_dim, device=device)
        print(
            f"BiCodec ({sum(p.numel() for p in decoder.parameters()) / 1e6:.1f} M params), window "
            f"{shape.window_tokens} tokens, kept {shape.kept_tokens}"
        )
        rows += sweep(
            "decode",
            lambda b: decoder.decode_with_speaker(semantic[:b], d_vector[:b]),
            shape.kept_tokens * TOKEN_SECONDS,
            batches,
            precisions,
            device,
            warmup,
            reps,
        )
        del decoder
    if "sr" in args.stages:
        config, sources["apbwe"] = apbwe_config()
        sr = build_sr(config, device)
        wav = 0.1 * torch.randn(max(batches), shape.sr_window, device=device)
        # The batched path must compute what the service computes: check one row against enhance_window.
        with torch.inference_mode():
            ref = torch.from_numpy(sr.enhance_window(wav[0].cpu().numpy()))
            got = sr_batch(sr, wav[:1])[0].cpu()
        check = float((ref - got[: ref.numel()]).abs().max())
        print(
            f"AP-BWE ({sr.num_parameters / 1e6:.1f} M params), window {shape.sr_window} samples, kept "
            f"{shape.sr_kept}; batched path vs enhance_window: max|diff| {check:.1e}"
        )
        if check > 1e-3:
            sys.exit("the batched AP-BWE path does not match SuperResolution.enhance_window")
        rows += sweep(
            "sr",
            lambda b: sr_batch(sr, wav[:b]),
            shape.sr_kept / 16000,
            batches,
            precisions,
            device,
            warmup,
            reps,
        )

    sustained = streams_sustained(rows)
    env = {
        "device": torch.cuda.get_device_name()
        if cuda
        else f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "shape": asdict(shape),
        "config_sources": sources,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(
        f"\nBatched decode at the released sizes on {env['device']}, torch {env['torch']}"
        f"{' (quick: tiny windows, not representative)' if args.quick else ''}\n"
    )
    print(
        "| stage | precision | batch | call ms | x real-time (batch) | ms per stream-second | peak MiB | "
        "max abs err vs fp32 | SNR dB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:

        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        print(
            f"| {r.stage} | {r.precision} | {r.batch} | {f(r.ms, '.1f')} | {f(r.x_realtime, '.1f')} | "
            f"{f(r.ms_per_stream_second, '.2f')} | {f(r.peak_mem_mb, '.0f')} | {f(r.max_abs_err, '.1e')} | "
            f"{f(r.snr_db, '.1f')} |{' ' + r.note if r.note else ''}"
        )
    print(
        "\nConcurrent real-time streams one device sustains "
        "(best batch; decode only = 16 kHz, decode + SR = 48 kHz):"
    )
    for mode, entry in sustained.items():
        d, s = entry.get("decode"), entry.get("sr")
        print(
            f"  {mode}: 16 kHz {entry['streams_16k'] or 0:.1f} (decode B={d['batch'] if d else '-'}), "
            f"48 kHz {entry['streams_48k'] or 0:.1f} (SR B={s['batch'] if s else '-'})"
        )
    print(f"Total wall time {env['wall_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"env": env, "rows": [asdict(r) for r in rows], "sustained": sustained}, indent=2) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
