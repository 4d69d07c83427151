"""The time-stretch alone: CPU per second of audio, duration and level, ours (`audio/time_stretch.py`) beside
`audiotsm`'s WSOLA (the same algorithm, with our frame length) when that package is installed.

    PYTHONPATH=. .venv/bin/python bench/bench_time_stretch.py [--speeds 0.5,0.8,1.1,1.25,1.5,2,3] [--seconds 6]
        [--out bench/results/speed/time_stretch.json]

The input is speech-like (a pulse train gliding 110-170 Hz through a syllable-rate envelope, a little noise), pushed
in 0.5 s pieces as a stream's chunks come; CPU is this thread's process time, best of 3. Level: output RMS over the
input's. `audiotsm` is not a dependency any more: `pip install audiotsm==0.1.2` to see it beside ours.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio.time_stretch import FRAME_SAMPLES, StreamingTimeStretch  # noqa: E402

RATE = 16_000
PIECE = 8_000


def speech_like(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    phase = np.cumsum(2 * np.pi * (140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / RATE)
    source = sum(np.sin(h * phase) / h for h in range(1, 25))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    noise = 0.002 * np.random.default_rng(0).standard_normal(t.size)
    return (0.2 * source * envelope + noise).astype(np.float32)


def ours(samples: np.ndarray, speed: float) -> np.ndarray:
    stretch = StreamingTimeStretch(speed)
    parts = [stretch.push(samples[i : i + PIECE]) for i in range(0, samples.size, PIECE)]
    return np.concatenate([*parts, stretch.finish()])


def audiotsm_wsola(samples: np.ndarray, speed: float) -> np.ndarray:
    """audiotsm's WSOLA with audio/time_stretch.py's frame length, pushed piece by piece."""
    from audiotsm import wsola
    from audiotsm.io.array import ArrayReader, ArrayWriter

    tsm = wsola(
        1,
        speed=speed,
        frame_length=FRAME_SAMPLES,
        synthesis_hop=min(FRAME_SAMPLES // 2, int(FRAME_SAMPLES / speed)),
    )
    writer = ArrayWriter(1)
    for i in range(0, samples.size, PIECE):
        reader = ArrayReader(samples[i : i + PIECE].reshape(1, -1))
        finished = False
        while not (finished and reader.empty):
            tsm.read_from(reader)
            _, finished = tsm.write_to(writer)
    finished = False
    while not finished:
        _, finished = tsm.flush_to(writer)
    return writer.data[0].astype(np.float32)


def measure(fn, samples: np.ndarray, speed: float) -> dict:  # noqa: ANN001
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        out = fn(samples, speed)
        best = min(best, time.process_time() - started)
    rms = float(
        np.sqrt(np.mean(out.astype(np.float64) ** 2)) / np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    )
    return {
        "ms_per_audio_s": 1000 * best / (samples.size / RATE),
        "duration_ratio": samples.size / out.size / speed,
        "level_ratio": rms,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speeds", default="0.5,0.8,1.1,1.25,1.5,2,3")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed" / "time_stretch.json")
    args = p.parse_args()
    try:
        import audiotsm  # noqa: F401

        have_audiotsm = True
    except ImportError:
        have_audiotsm = False
    samples = speech_like(args.seconds)
    rows: list[dict[str, Any]] = []
    for speed in (float(s) for s in args.speeds.split(",")):
        row: dict[str, Any] = {"speed": speed, "ours": measure(ours, samples, speed)}
        if have_audiotsm:
            row["audiotsm"] = measure(audiotsm_wsola, samples, speed)
        rows.append(row)
    print(
        "| speed | ours: ms CPU per audio s | duration x speed / input | level | audiotsm: ms per audio s | "
        "duration | level | ours / audiotsm CPU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        o, a = r["ours"], r.get("audiotsm")
        other = (
            (
                f"{a['ms_per_audio_s']:.2f} | {a['duration_ratio']:.4f} | {a['level_ratio']:.3f} | "
                f"{o['ms_per_audio_s'] / a['ms_per_audio_s']:.2f}"
            )
            if a
            else "- | - | - | -"
        )
        print(
            f"| {r['speed']} | {o['ms_per_audio_s']:.2f} | {o['duration_ratio']:.4f} | {o['level_ratio']:.3f} | "
            f"{other} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"seconds": args.seconds, "piece_samples": PIECE, "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
