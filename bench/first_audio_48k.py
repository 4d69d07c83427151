"""Why 48 kHz starts later than 16 kHz, from the schedules alone: the service's own `DecodePlanner` (balanced first
chunk) and, at 48 kHz, `SRPlanner` with AP-BWE's released grid, context and the service's block sizes.

    PYTHONPATH=. .venv/bin/python bench/first_audio_48k.py [--out bench/results/first_audio_48k/first_audio_48k.json]

Semantic ids arrive one at a time at a steady engine rate (100 tokens/s is admission's floor, twice real time); each
decode window's kept audio goes out, at 48 kHz through the SR windows it completes. For each schedule and rate: the
token (and time) of the first audio, the length of the first piece, and the smallest margin of any piece before a
client playing from first audio + 100 ms would run dry. Decode and AP-BWE calls cost nothing here: the device's
latency comes on top of every figure, so a margin of a few ms is an underrun in service. `48k, balanced, lead` is
the service's while admission measures the engine at 3.5x real time or more (175 tokens/s;
`Admission.sr_lead`): the first AP-BWE window takes its right context from the first chunk's held overlap
(core.sr_planner). `48k, first chunk 12` is a variant (8 tokens kept at once, enough for the first AP-BWE window),
tried and not shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sim.windows import HOP, SR_CONTEXT, SR_GRID  # noqa: E402
from core.sr_planner import SRPlanner  # noqa: E402
from core.streaming import DecodePlanner, StreamingConfig  # noqa: E402
from core.tokens import SEMANTIC_CODEBOOK_SIZE  # noqa: E402
from services.pipeline.audio_output import SR_MAX_BLOCK, SR_MIN_BLOCK  # noqa: E402

PREBUFFER_S = 0.1


def pieces(
    config: StreamingConfig, super_resolve: bool, tokens: int = 250, *, lead: bool = False
) -> list[tuple[int, float]]:
    """(token after which the piece can go out, its seconds of audio), in order. `lead`: the first AP-BWE window may
    be a lead window, as AudioOutput asks it."""
    planner = DecodePlanner(config, hop=HOP, codebook_size=SEMANTIC_CODEBOOK_SIZE)
    sr = SRPlanner(grid=SR_GRID, context=SR_CONTEXT, min_block=SR_MIN_BLOCK, max_block=SR_MAX_BLOCK)
    out: list[tuple[int, float]] = []
    for token in range(1, tokens + 1):
        for window in planner.push([token % SEMANTIC_CODEBOOK_SIZE]):
            audio = planner.take(window, np.zeros(window.kept_tokens * HOP, np.float32))
            if not super_resolve:
                out.append((token, audio.size / 16_000))
                continue
            ahead = planner.held_audio if lead else None
            out += [(token, (w.keep_end - w.keep_start) / 48_000) for w in sr.push(audio, ahead)]
    return out


def margins(schedule: list[tuple[int, float]], rate: float) -> dict[str, float]:
    first_s = schedule[0][0] / rate
    played, worst = 0.0, float("inf")
    for token, seconds in schedule:
        worst = min(worst, first_s + PREBUFFER_S + played - token / rate)
        played += seconds
    return {
        "first_audio_token": schedule[0][0],
        "first_audio_ms": 1000 * first_s,
        "first_piece_ms": 1000 * schedule[0][1],
        "min_margin_ms": 1000 * worst,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="100,150,175,250", help="engine tokens per second per stream")
    p.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "first_audio_48k" / "first_audio_48k.json"
    )
    args = p.parse_args()
    balanced = StreamingConfig().for_latency("balanced")
    cases = {
        "16k, balanced": (balanced, False, False),
        "48k, balanced": (balanced, True, False),
        "48k, balanced, lead": (balanced, True, True),
        "48k, first chunk 12": (replace(balanced, first_chunk_tokens=12), True, False),
    }
    rows = []
    print("| schedule | tokens/s | first audio: token (ms) | first piece ms | least margin ms |")
    print("|---|---|---|---|---|")
    for name, (config, super_resolve, lead) in cases.items():
        schedule = pieces(config, super_resolve, lead=lead)
        for rate in (float(r) for r in args.rates.split(",")):
            row = {"schedule": name, "tokens_per_s": rate, **margins(schedule, rate)}
            rows.append(row)
            print(
                f"| {name} | {rate:.0f} | {row['first_audio_token']} ({row['first_audio_ms']:.0f}) | "
                f"{row['first_piece_ms']:.0f} | {row['min_margin_ms']:.0f} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"prebuffer_s": PREBUFFER_S, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
