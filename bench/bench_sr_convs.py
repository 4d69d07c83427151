"""AP-BWE convolutions: the length-independent ones (core/exact_conv) against torch's, at the released size.

AP-BWE once switched oneDNN off around every call (a process-wide flag) to make a window's rounding independent
of its length; it now computes its convolutions with core/exact_conv instead and touches no flag. This measures
the generator's forward (random weights, same compute as the released 29.8 M parameters) for windows of 0.1-1 s
of 48 kHz frames with three implementations:
- `exact`: what the service runs (core/exact_conv);
- `torch, oneDNN off`: torch's convolutions with oneDNN switched off (what the service did before);
- `torch, oneDNN on`: torch's default convolutions (fast, but their rounding depends on the window length on some
  CPUs, which breaks streamed == offline).
Times are the best of N runs (on a shared CPU the minimum is the least disturbed estimate); ratios are to `exact`.

Usage: .venv/bin/python bench/bench_sr_convs.py [--quick] [--threads N] [--reps N]
Prints a markdown table and writes bench/results/sr_convs.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core.apbwe as apbwe  # noqa: E402

FRAMES_PER_SECOND = 600  # 48 kHz / hop 80


def _torch_convs() -> contextlib.AbstractContextManager[None]:
    """Swap the generator's convolutions for torch's own for the duration (benchmark only)."""

    @contextlib.contextmanager
    def swapped():
        saved = apbwe.depthwise_conv1d, apbwe._conv
        apbwe.depthwise_conv1d = lambda x, weight, bias: F.conv1d(
            x, weight, bias, padding=weight.shape[-1] // 2, groups=weight.shape[0]
        )
        apbwe._conv = lambda conv, x, products: conv(x)  # torch at fp32, whatever the precision
        try:
            yield
        finally:
            apbwe.depthwise_conv1d, apbwe._conv = saved

    return swapped()


def _best(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repetitions (python -m bench all --quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sr_convs.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = 2
    torch.set_num_threads(args.threads)
    generator = apbwe.random_generator(apbwe.APBWEConfig.from_dict(apbwe.RELEASED_CONFIG))
    rows = []
    for seconds in (0.1, 0.3, 1.0):
        frames = int(seconds * FRAMES_PER_SECOND)
        logamp, pha = torch.randn(1, 513, frames), torch.randn(1, 513, frames)

        def forward(logamp=logamp, pha=pha) -> None:
            with torch.inference_mode():
                generator(logamp, pha)

        exact = _best(forward, args.reps)
        with _torch_convs(), torch.backends.mkldnn.flags(enabled=False):
            onednn_off = _best(forward, args.reps)
        with _torch_convs():
            onednn_on = _best(forward, args.reps)
        rows.append(
            {
                "window_s": seconds,
                "exact_ms": exact * 1e3,
                "onednn_off_ms": onednn_off * 1e3,
                "onednn_on_ms": onednn_on * 1e3,
                "onednn_off_over_exact": onednn_off / exact,
                "onednn_on_over_exact": onednn_on / exact,
            }
        )
    print(f"threads {args.threads}, best of {args.reps}\n")
    print("| window | exact | torch, oneDNN off (before) | torch, oneDNN on |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['window_s']} s | {r['exact_ms']:.0f} ms | {r['onednn_off_ms']:.0f} ms "
            f"({r['onednn_off_over_exact']:.2f}x) | {r['onednn_on_ms']:.0f} ms ({r['onednn_on_over_exact']:.2f}x) |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "threads": args.threads,
                "torch": torch.__version__,
                "rows": rows,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
