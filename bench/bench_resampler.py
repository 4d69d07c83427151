"""The output resampler, soxr's streaming mode against the service's polyphase filter (audio/polyphase.py), per
conversion the service makes: how much of a stream each holds back, how much of an 80 ms first chunk leaves with it,
and the CPU each costs per second of audio.

    PYTHONPATH=. .venv/bin/python bench/bench_resampler.py [--out bench/results/resampler/resampler.json]

Held back: output missing after 1 s of input pushed 10 ms at a time (steady state), in ms of audio. First chunk: the
output of one 80 ms push into a new resampler (balanced's first chunk at 16 kHz; the lead window's at 48 kHz), in ms
of audio. CPU: microseconds per second of audio, 10 s pushed in 1 s (a whole AP-BWE window's output), 100 ms and 20 ms pieces, best of five, on one
thread (OPENBLAS_NUM_THREADS=1 is set before numpy loads, as a busy server's one core would see it)."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soxr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio.polyphase import PolyphaseResampler  # noqa: E402

# (from, to): 16 kHz is BiCodec's rate (8 kHz: telephony; the rest when AP-BWE is not loaded), 48 kHz AP-BWE's
CONVERSIONS = [
    (16000, 8000),
    (48000, 24000),
    (48000, 22050),
    (48000, 44100),
    (48000, 8000),
    (16000, 24000),
    (16000, 48000),
]


class Soxr:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._s = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def push(self, x: np.ndarray) -> np.ndarray:
        return self._s.resample_chunk(x, last=False)


KINDS: dict[str, type[Soxr] | type[PolyphaseResampler]] = {
    "soxr HQ (stream)": Soxr,
    "polyphase": PolyphaseResampler,
}


def measure(kind: str, in_rate: int, out_rate: int) -> dict:
    make = KINDS[kind]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(in_rate * 10) * 0.1).astype(np.float32)
    r, got, step = make(in_rate, out_rate), 0, in_rate // 100
    for i in range(100):
        got += len(r.push(x[i * step : (i + 1) * step]))
    held_ms = (out_rate - got) / out_rate * 1000
    first = len(make(in_rate, out_rate).push(x[: in_rate * 8 // 100])) / out_rate * 1000
    cpu = {}
    for piece_ms in (1000, 100, 20):
        n = in_rate * piece_ms // 1000
        best = float("inf")
        for _ in range(5):
            r = make(in_rate, out_rate)
            t = time.perf_counter()
            for i in range(0, len(x), n):
                r.push(x[i : i + n])
            best = min(best, (time.perf_counter() - t) / 10)
        cpu[f"us_per_audio_s_{piece_ms}ms_pushes"] = round(best * 1e6, 1)
    return {
        "resampler": kind,
        "from": in_rate,
        "to": out_rate,
        "held_ms": round(held_ms, 2),
        "first_chunk_80ms_out_ms": round(first, 2),
        **cpu,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/resampler/resampler.json")
    args = p.parse_args()
    rows = [measure(kind, a, b) for a, b in CONVERSIONS for kind in KINDS]
    print(
        "| from -> to | resampler | held back, ms | out of an 80 ms first chunk, ms | CPU us per audio s (1 s / 100 ms / "
        "20 ms pushes) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['from']} -> {r['to']} | {r['resampler']} | {r['held_ms']} | {r['first_chunk_80ms_out_ms']} | "
            f"{r['us_per_audio_s_1000ms_pushes']} / {r['us_per_audio_s_100ms_pushes']} / "
            f"{r['us_per_audio_s_20ms_pushes']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "soxr": soxr.__version__,
                "numpy": np.__version__,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
