"""BiCodec decode speed at the released size (about 96 M decode parameters, random weights: same compute).

Measures
- decode real-time factor (compute seconds per second of audio) for chunks of 10, 25, 50, 100, 200 and
  400 semantic tokens (one token = 20 ms of audio);
- the streaming decoder's cost relative to one offline decode for a 500-token utterance with the default
  `StreamingConfig` (context and look-ahead are decoded again and thrown away), its first-chunk compute time,
  and how far its output is from the offline decode on these random weights.
Times are the best of N runs: on a shared CPU the minimum is the least disturbed estimate.

Usage: .venv/bin/python bench/bench_bicodec.py [--quick] [--threads N] [--device cpu|cuda]
Prints a markdown table and writes bench/results/bicodec.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.bicodec import BiCodecDecoder, is_skipped_tensor  # noqa: E402
from core.demo.random_bicodec import build_random_state_dict  # noqa: E402
from core.streaming import StreamingConfig, StreamingDecoder  # noqa: E402

MANIFEST = ROOT / ".." / "shared" / "fixtures" / "bicodec_manifest.json"
CHUNK_TOKENS = (10, 25, 50, 100, 200, 400)
UTTERANCE_TOKENS = 500
TOKEN_SECONDS = 320 / 16000


@dataclass
class ChunkRow:
    tokens: int
    audio_s: float
    best_s: float
    rtf: float
    x_realtime: float
    ms_per_token: float


@dataclass
class StreamResult:
    tokens: int
    config: dict
    chunk_tokens: list[int]
    decode_calls: int
    decoded_tokens_ratio: float  # tokens through the decoder (context included) / utterance tokens
    stream_s: float
    offline_s: float
    compute_ratio: float  # streaming decode time / offline decode time, same utterance
    first_chunk_ms: float
    max_abs_diff: float
    snr_db: float


def build_decoder(manifest: Path, device: str, seed: int = 0) -> BiCodecDecoder:
    if not manifest.is_file():
        sys.exit(f"manifest not found: {manifest} (the steering fixtures hold the released config)")
    config = json.loads(manifest.read_text())["config"]
    with torch.device("meta"):
        model = BiCodecDecoder(config)
    tensors = build_random_state_dict(config, seed)
    model.load_decode_state_dict({k: v for k, v in tensors.items() if not is_skipped_tensor(k)})
    return model.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], repeats: int, device: str) -> float:
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def bench_chunks(model: BiCodecDecoder, d: torch.Tensor, repeats: int, device: str) -> list[ChunkRow]:
    gen = torch.Generator().manual_seed(1)
    rows = []
    for tokens in CHUNK_TOKENS:
        semantic = torch.randint(0, model.semantic_codebook_size, (1, tokens), generator=gen).to(device)
        model.decode_with_speaker(semantic, d)  # warm-up (allocator, oneDNN primitive cache)
        best = best_time(functools.partial(model.decode_with_speaker, semantic, d), repeats, device)
        audio_s = tokens * TOKEN_SECONDS
        rows.append(ChunkRow(tokens, audio_s, best, best / audio_s, audio_s / best, 1000 * best / tokens))
    return rows


def bench_streaming(model: BiCodecDecoder, d: torch.Tensor, repeats: int, device: str) -> StreamResult:
    config = StreamingConfig()
    tokens = np.random.default_rng(2).integers(0, model.semantic_codebook_size, UTTERANCE_TOKENS)
    offline_out: list[np.ndarray] = []

    def offline() -> None:
        wav = model.decode_with_speaker(torch.from_numpy(tokens)[None].to(device), d)[0]
        offline_out[:] = [wav.float().cpu().numpy()]

    def stream() -> StreamingDecoder:
        decoder = StreamingDecoder(model, d, config)
        for i in range(0, len(tokens), 10):  # LLM-like bursts; the chunk schedule does not depend on them
            decoder.push(tokens[i : i + 10].tolist())
        decoder.finish()
        return decoder

    offline_s = best_time(offline, repeats, device)
    best_stream: StreamingDecoder | None = None
    for _ in range(repeats):
        run = stream()
        if best_stream is None or run.decode_seconds_total < best_stream.decode_seconds_total:
            best_stream = run
    assert best_stream is not None

    # Chunk schedule, first-chunk cost and accuracy from one instrumented run.
    probe = StreamingDecoder(model, d, config)
    chunks: list[np.ndarray] = []
    first_ms = 0.0
    for i in range(0, len(tokens), 10):
        before = probe.decode_seconds_total
        out = probe.push(tokens[i : i + 10].tolist())
        if out and not chunks:
            first_ms = 1000 * (probe.decode_seconds_total - before)
        chunks += out
    chunks += probe.finish()
    streamed, ref = np.concatenate(chunks), offline_out[0]
    err = streamed - ref
    snr = 10 * np.log10(np.sum(ref**2) / max(float(np.sum(err**2)), 1e-30))
    return StreamResult(
        tokens=UTTERANCE_TOKENS,
        config=asdict(config),
        chunk_tokens=[c.shape[0] // model.hop_length for c in chunks],
        decode_calls=best_stream.decode_calls,
        decoded_tokens_ratio=best_stream.decode_tokens_total / UTTERANCE_TOKENS,
        stream_s=best_stream.decode_seconds_total,
        offline_s=offline_s,
        compute_ratio=best_stream.decode_seconds_total / offline_s,
        first_chunk_ms=first_ms,
        max_abs_diff=float(np.abs(err).max()),
        snr_db=float(snr),
    )


def render(rows: list[ChunkRow], stream: StreamResult, meta: dict) -> str:
    lines = [
        f"BiCodec decode, released config, random weights ({meta['decode_params_m']:.1f} M params), "
        f"device {meta['device']}, {meta['threads']} threads, best of {meta['repeats']}",
        "",
        "| chunk tokens | audio s | decode s | RTF | x realtime | ms / token |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.tokens} | {r.audio_s:.2f} | {r.best_s:.3f} | {r.rtf:.3f} | {r.x_realtime:.2f} | "
            f"{r.ms_per_token:.1f} |"
        )
    c = stream.config
    lines += [
        "",
        f"Streaming {stream.tokens} tokens (first {c['first_chunk_tokens']}, growth {c['growth']}, "
        f"max {c['max_chunk_tokens']}, left context {c['left_context_tokens']}, "
        f"look-ahead {c['lookahead_tokens']}); chunks {stream.chunk_tokens}",
        "",
        "| decode calls | decoded tokens / tokens | stream decode s | offline decode s | compute ratio | "
        "first chunk ms | max abs diff | SNR dB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {stream.decode_calls} | {stream.decoded_tokens_ratio:.2f} | {stream.stream_s:.3f} | "
        f"{stream.offline_s:.3f} | {stream.compute_ratio:.2f} | {stream.first_chunk_ms:.0f} | "
        f"{stream.max_abs_diff:.2e} | {stream.snr_db:.1f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed runs (under a minute on 2 cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--manifest", type=Path, default=MANIFEST, help="bicodec_manifest.json with the config"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bicodec.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Quick: best of 2 for the (cheap) chunk table, one streaming/offline pair.
    repeats, stream_repeats = (2, 1) if args.quick else (3, 3)

    started = time.perf_counter()
    model = build_decoder(args.manifest, args.device)
    d = model.speaker_vector(torch.randint(0, model.global_codebook_size, (1, model.global_token_count)))
    rows = bench_chunks(model, d, repeats, args.device)
    stream = bench_streaming(model, d, stream_repeats, args.device)
    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.machine()}, {os.cpu_count()} cores"
    )
    meta = {
        "device": f"{args.device} ({device_name})",
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "quick": args.quick,
        "torch": torch.__version__,
        "decode_params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    table = render(rows, stream, meta)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "chunks": [asdict(r) for r in rows], "streaming": asdict(stream), "table": table}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out} ({meta['wall_s']} s)")


if __name__ == "__main__":
    main()
