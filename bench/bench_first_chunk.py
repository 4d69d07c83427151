"""What a short first chunk costs: streamed audio against the offline decode around the first boundary.

For each first-chunk schedule (first chunk tokens, its look-ahead, crossfaded overlap) this decodes the same
random token stream offline and streamed, one token at a time, and reports the engine steps before the first
audio, the first chunk's audio, and the error in the first second (where the short look-ahead acts) as SNR and
max abs error, plus the whole-stream SNR. The codec has the RELEASED size with random weights (no weights can be
downloaded here): random weights spread errors further than trained ones, so these figures are pessimistic.

    .venv/bin/python bench/bench_first_chunk.py [--tokens 200] [--config released|demo] [--seeds 3]

Prints a markdown table and writes bench/results/first_chunk.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.bicodec import RELEASED_CONFIG, BiCodecDecoder  # noqa: E402
from core.demo.random_bicodec import DEMO_CONFIG, build_random_state_dict  # noqa: E402
from core.streaming import StreamingConfig, StreamingDecoder  # noqa: E402

BASE = StreamingConfig()
SCHEDULES: dict[str, StreamingConfig] = {
    "exact (25 + 24)": BASE.for_latency("exact"),
    "balanced (8 + 8, overlap 4)": BASE.for_latency("balanced"),
    "lowest (6 + 2, overlap 2)": BASE.for_latency("lowest"),
    "10 + 6, overlap 2": StreamingConfig(
        first_chunk_tokens=10, first_lookahead_tokens=6, first_overlap_tokens=2
    ),
    "10 + 4, no overlap": StreamingConfig(first_chunk_tokens=10, first_lookahead_tokens=4),
    "6 + 2, no overlap": StreamingConfig(first_chunk_tokens=6, first_lookahead_tokens=2),
    "8 + 8, overlap 4": StreamingConfig(
        first_chunk_tokens=8, first_lookahead_tokens=8, first_overlap_tokens=4
    ),
}


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = float(((estimate - reference) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((reference**2).sum()) / noise)


def run(
    config_name: str, tokens: int, seeds: int, schedules: dict[str, StreamingConfig] | None = None
) -> list[dict]:
    """One row per schedule (default: SCHEDULES); bench_ttfa.py passes the latency presets only."""
    cfg = RELEASED_CONFIG if config_name == "released" else DEMO_CONFIG
    decoder = BiCodecDecoder(cfg)
    decoder.load_state_dict(build_random_state_dict(cfg, 0), strict=False)
    decoder.eval()
    hop = decoder.hop_length
    rows = []
    for name, schedule in (schedules or SCHEDULES).items():
        first_second, whole, max_err = [], [], []
        first_audio_tokens = 0
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            ids = rng.integers(0, decoder.semantic_codebook_size, tokens).tolist()
            d_vector = torch.from_numpy(rng.standard_normal((1, decoder.d_vector_dim)).astype(np.float32))
            with torch.inference_mode():
                reference = decoder.decode_with_speaker(torch.tensor([ids]), d_vector)[0].numpy()
                stream = StreamingDecoder(decoder, d_vector, schedule)
                chunks = []
                for token in ids:
                    chunks += stream.push([token])
                first_audio_tokens = len(chunks[0]) // hop if chunks else 0
                chunks += stream.finish()
            streamed = np.concatenate(chunks)
            assert streamed.shape == reference.shape
            window = slice(0, 50 * hop)  # the first second: the first chunk, its boundary and the crossfade
            first_second.append(snr_db(reference[window], streamed[window]))
            max_err.append(float(np.abs(reference[window] - streamed[window]).max()))
            whole.append(snr_db(reference, streamed))
        rows.append(
            {
                "schedule": name,
                "config": asdict(schedule),
                "steps_before_first_audio": schedule.tokens_before_first_audio,
                "first_chunk_ms": first_audio_tokens * 20,
                "first_second_snr_db": min(first_second),
                "first_second_max_abs": max(max_err),
                "whole_snr_db": min(whole),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--config", choices=("released", "demo"), default="released")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = run(args.config, args.tokens, args.seeds)
    print(
        f"First-chunk schedules, {args.config} codec size, random weights (pessimistic), worst of {args.seeds} "
        f"seeds, {args.tokens} tokens\n"
    )
    print(
        "| schedule | engine steps before first audio | first chunk | SNR first 1 s | max abs first 1 s | "
        "SNR whole |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['schedule']} | {r['steps_before_first_audio']} | {r['first_chunk_ms']} ms | "
            f"{r['first_second_snr_db']:.1f} dB | {r['first_second_max_abs']:.2e} | {r['whole_snr_db']:.1f} dB |"
        )
    out = ROOT / "bench" / "results" / "first_chunk.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"config": args.config, "tokens": args.tokens, "seeds": args.seeds, "rows": rows}, indent=2
        )
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
