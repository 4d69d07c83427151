"""Where does AP-BWE's rounding depend on the window length on a device? Stage by stage, at the released size.

    python3 bench/gpu/sr_exactness.py [--device cuda] [--seconds 12]

Streamed super-resolution equals the offline recipe only if every stage rounds an output sample the same way
whatever the length of the window around it: AP-BWE takes the phase of the empty 8-24 kHz band (rounding noise) as
input, so a 1e-7 difference there moves the output by tens of dB (`parity` measures that on the CPU as the chain's
conditioning). For one window of a long signal this prints the largest difference between the window's and the
whole signal's values, per stage: the resampler, the STFT, each matmul shape the generator runs, the generator, and
the whole window. 0 everywhere is the goal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.bench_gpu import apbwe_config, build_sr  # noqa: E402
from core.numerics import apply_model_numerics  # noqa: E402


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def stage_rows(device: str, seconds: float) -> list[tuple[str, float]]:
    sr = build_sr(apbwe_config()[0], device)
    c, ratio = sr.config, sr.config.ratio
    rng = np.random.default_rng(0)
    x16 = torch.from_numpy((0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)).to(device)
    start = 4 * 16000 // c.grid * c.grid  # a window starting on the frame grid, 4 s in
    stop = start + 5120 + 2 * sr.context
    rows = []
    with torch.inference_mode():
        full48 = sr.resample(x16)
        win48 = sr.resample(x16[start:stop])
        m = 64 * ratio  # skip the resampler's edges
        rows.append(("resampler", _max_diff(full48[start * ratio + m : stop * ratio - m], win48[m:-m])))
        full = sr.analyse(full48)
        win = sr.analyse(full48[start * ratio : stop * ratio])  # same samples: the STFT alone
        f0, edge = start * ratio // c.hop_size, 16
        frames = win.logamp.shape[-1]
        rows.append(("STFT log-amplitude",
                     _max_diff(full.logamp[..., f0 + edge : f0 + frames - edge], win.logamp[..., edge:-edge])))
        for m_rows in (256, 1000, 4000):  # the generator's Linear layers at several lengths: row 0..255 compared
            a = torch.randn(m_rows, c.channels, device=device, generator=torch.Generator(device).manual_seed(1))
            lin = sr.generator.convnext_mag[0].pwconv1
            rows.append((f"Linear rows {m_rows} vs 256", _max_diff(lin(a)[:256], lin(a[:256]))))
        out_full = sr.generator(full.logamp, full.pha)
        gl = full.logamp[..., f0 : f0 + frames]
        gp = full.pha[..., f0 : f0 + frames]
        out_win = sr.generator(gl, gp)
        e = 32  # beyond the generator's receptive field
        rows.append(("generator log-amplitude",
                     _max_diff(out_full[0][..., f0 + e : f0 + frames - e], out_win[0][..., e:-e])))
        y_full = sr.enhance_window(x16.cpu().numpy())
        y_win = sr.enhance_window(x16[start:stop].cpu().numpy())
        k = sr.context * ratio
        rows.append(("whole window (48 kHz samples)",
                     float(np.abs(y_full[start * ratio + k : stop * ratio - k] - y_win[k:-k]).max())))
        offline = sr.upsample(x16.cpu().numpy())
        stream = sr.stream()
        chunks = [x16[i : i + 5120].cpu().numpy() for i in range(0, x16.numel(), 5120)]  # 320 ms pushes
        streamed = np.concatenate([*(stream.push(c) for c in chunks), stream.finish()])
        noise = float(np.sum((offline - streamed) ** 2))
        snr = float("inf") if noise == 0 else 10 * np.log10(float(np.sum(offline**2)) / noise)
        rows.append((f"streamed vs offline (SNR {snr:.1f} dB)", float(np.abs(offline - streamed).max())))
    return rows


def window_cost_ms(device: str, seconds: float = 0.32, repeats: int = 30) -> float:
    """Wall time of one streamed window (a 320 ms push plus context each side), median of `repeats`."""
    import time

    sr = build_sr(apbwe_config()[0], device)
    x = (0.1 * np.random.default_rng(2).standard_normal(int(seconds * 16000) + 2 * sr.context)).astype(np.float32)
    times = []
    for _ in range(repeats + 3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        sr.enhance_window(x)  # ends with a copy to the host: synchronised
        times.append(time.perf_counter() - t0)
    return sorted(times[3:])[repeats // 2] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    print(apply_model_numerics(), torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu")
    for name, diff in stage_rows(args.device, args.seconds):
        print(f"  {name:<40} max|window - whole| {diff:.3e}", flush=True)
    print(f"  one 320 ms streamed window: {window_cost_ms(args.device):.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
