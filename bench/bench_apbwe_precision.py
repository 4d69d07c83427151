"""AP-BWE's reduced-precision generator against fp32, on any CPU: which precision may serve.

    python -m bench.bench_apbwe_precision [--weights DIR] [--fixtures DIR] [--seconds 4] [--variants fp32,tf32,fp16]

`--weights DIR`: a 16kto48k directory (config.json and g_16kto48k, as released); without it the released
architecture with random weights. `--fixtures DIR`: also the shared reference fixture (its own tiny weights and
input). Inputs: English espeak-ng speech (a Debian package) and, with --fixtures, the fixture's input. A CPU emulates
the GPU's roundings (core/apbwe_precision: operands rounded to fp16 or TF32, fp32 kernels), so the figures stand for a
GPU's (docs/decisions/apbwe-precision.md). Per variant and input it prints:
- SNR of the 48 kHz output against fp32's, in dB (the bar: 50);
- the phase: the largest wrapped difference from fp32's, over the output's STFT bins within 60 dB of its peak
  (the bar: pi/2), and the share of those bins past pi/4;
- streamed against offline at the variant's own precision (max |difference|; the service's rule: 1e-4).
Nothing is written; the table is the result.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.apbwe import (  # noqa: E402
    RELEASED_CONFIG,
    APBWEConfig,
    APBWEGenerator,
    SuperResolution,
    random_generator,
)
from core.apbwe_precision import SR_PRECISIONS, SRPrecision, check_precision  # noqa: E402

SNR_FLOOR_DB = 50.0
PHASE_LIMIT = math.pi / 2
AUDIBLE_DB = 60.0  # bins this far below the output's peak are left out of the phase figure
PHRASES = ("The quick brown fox jumps over the lazy dog.", "Every morning the baker sells fresh bread.")


@dataclass(frozen=True)
class Figures:
    snr_db: float
    phase_max: float  # radians, over the audible bins
    phase_past_quarter: float  # share of the audible bins more than pi/4 off
    streamed_max_diff: float  # streamed against offline at the same precision

    @property
    def ok(self) -> bool:
        return self.snr_db >= SNR_FLOOR_DB and self.phase_max <= PHASE_LIMIT


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((other.astype(np.float64) - reference) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def phase_figures(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(largest wrapped phase difference, share past pi/4) over the reference's bins within AUDIBLE_DB of its peak."""
    window = torch.hann_window(1024, periodic=True, dtype=torch.float64)

    def spec(x: np.ndarray) -> torch.Tensor:
        return torch.stft(
            torch.from_numpy(x.astype(np.float64)), 1024, 256, window=window, return_complex=True
        )

    ref, got = spec(reference), spec(other)
    magnitude = ref.abs()
    audible = magnitude >= magnitude.max() * 10 ** (-AUDIBLE_DB / 20)
    diff = torch.angle(got * ref.conj())[audible].abs()
    return float(diff.max()), float((diff > math.pi / 4).double().mean())


def streamed(sr: SuperResolution, wav: np.ndarray, block: int = 4000) -> np.ndarray:
    stream = sr.stream()
    parts = [stream.push(wav[i : i + block]) for i in range(0, len(wav), block)]
    return np.concatenate([*parts, stream.finish()])


def measure(reference: SuperResolution, variant: SuperResolution, wav: np.ndarray) -> Figures:
    ref = reference.upsample(wav)
    got = variant.upsample(wav)
    phase_max, past = phase_figures(ref, got)
    return Figures(snr_db(ref, got), phase_max, past, float(np.abs(streamed(variant, wav) - got).max()))


def at_precision(generator: APBWEGenerator, config: APBWEConfig, precision: SRPrecision) -> SuperResolution:
    """A SuperResolution of its own (the generator copied: precision is set on the generator's layers)."""
    return SuperResolution(copy.deepcopy(generator), config, "cpu", precision=precision)


def espeak_speech(seconds: float) -> np.ndarray:
    from bench.espeak_speech import espeak  # needs the espeak-ng binary

    clips = [espeak(text, "en") for text in PHRASES]
    speech = np.concatenate([np.concatenate([c, np.zeros(1600, np.float32)]) for c in clips])
    return (0.7 * speech[: int(seconds * 16000)] / max(1e-6, float(np.abs(speech).max()))).astype(np.float32)


def load(weights: Path | None) -> tuple[APBWEGenerator, APBWEConfig, str]:
    if weights is None:
        config = APBWEConfig.from_dict(RELEASED_CONFIG)
        return random_generator(config, seed=0), config, "released size, random weights"
    reference = SuperResolution.from_pretrained(weights)
    return reference.generator, reference.config, f"{weights.name}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--weights", type=Path, default=None, help="a 16kto48k directory (default: random weights)"
    )
    p.add_argument("--fixtures", type=Path, default=None, help="the shared fixtures (apbwe_tiny/) as well")
    p.add_argument("--seconds", type=float, default=4.0, help="espeak speech length")
    p.add_argument("--variants", default="tf32,fp16", help=f"from {', '.join(SR_PRECISIONS)}")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [check_precision(v) for v in args.variants.split(",") if v and v != "fp32"]
    cases = [(*load(args.weights), espeak_speech(args.seconds), "espeak en")]
    if args.fixtures is not None:
        tiny = SuperResolution.from_pretrained(args.fixtures / "apbwe_tiny")
        with np.load(args.fixtures / "apbwe_tiny" / "expected.npz") as data:
            cases.append((tiny.generator, tiny.config, "apbwe_tiny fixture", data["wav16"], "fixture input"))
            cases.append(
                (tiny.generator, tiny.config, "apbwe_tiny fixture", espeak_speech(args.seconds), "espeak en")
            )
    print(
        "| weights | input | variant | SNR dB | phase max (rad) | bins past pi/4 | streamed vs offline | passes | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for generator, config, name, wav, label in cases:
        reference = at_precision(generator, config, "fp32")
        for precision in variants:
            started = time.perf_counter()
            figures = measure(reference, at_precision(generator, config, precision), wav)
            failed += not figures.ok
            print(
                f"| {name} | {label} ({len(wav) / 16000:.1f} s) | {precision} | {figures.snr_db:.1f} | "
                f"{figures.phase_max:.3f} | {figures.phase_past_quarter:.2e} | {figures.streamed_max_diff:.1e} | "
                f"{'yes' if figures.ok else 'NO'} | {time.perf_counter() - started:.0f} |",
                flush=True,
            )
    print(
        f"bar: SNR >= {SNR_FLOOR_DB:g} dB and phase within pi/2 on the bins within {AUDIBLE_DB:g} dB of the peak"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
