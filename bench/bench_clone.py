"""Voice-cloning encode cost at the released size (random weights: same compute as the real checkpoint).

The encoder is built in memory at the released widths: BiCodec's encode half (ECAPA-TDNN 512 / 1536, perceiver
128, feature encoder 1024 -> 384 x 12 layers) and a wav2vec2-large (hidden 1024, 16 heads, FFN 4096; 16 of its 24
layers run). For reference lengths of 3-30 s it measures:
- `global` (speaker branch only: volume normalisation, mel, ECAPA, perceiver, FSQ; what a saved voice needs);
- `full` (global + wav2vec2 + encoder + quantizer: a voice with a transcript for continuation prompts);
- seconds of compute per second of reference audio (best of N runs: on a shared CPU the minimum is the least
  disturbed estimate), and the wav2vec2 share;
- the service's own path for a per-request reference (`services.voice_library.references.References`): the first
  request decodes and encodes the upload, a repeat of the same bytes is served from the LRU by SHA-256.

Usage: .venv/bin/python bench/bench_clone.py [--quick] [--device cpu|cuda] [--threads N]
Prints a markdown table and writes bench/results/clone.json. On a lent GPU: `--device cuda` (the same code path
the service runs; bench/gpu/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.bicodec import RELEASED_CONFIG, unwrap_config  # noqa: E402
from core.clone.encoder import ReferenceEncoder  # noqa: E402
from core.clone.mel import MagnitudeMel, MelConfig  # noqa: E402
from core.clone.semantic import SemanticTokenizer, Wav2VecFeatures  # noqa: E402
from core.clone.speaker import SpeakerTokenizer, SpeakerWidths  # noqa: E402
from core.demo.random_bicodec import RELEASED_SPEAKER_WIDTHS, build_random_state_dict  # noqa: E402
from core.demo.random_wav2vec2 import PREPROCESSOR_CONFIG  # noqa: E402
from core.nn import fold_weight_norms  # noqa: E402

LENGTHS_S = (3.0, 6.0, 10.0, 20.0, 30.0)
QUICK_LENGTHS_S = (3.0, 10.0)


@dataclass
class Row:
    reference_s: float
    global_s: float
    full_s: float
    global_per_audio_s: float
    full_per_audio_s: float
    wav2vec2_share: float
    semantic_tokens: int


def released_encoder(device: str, seed: int = 0) -> ReferenceEncoder:
    """The encoder at the released size with random weights, without writing 2 GB of files."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = unwrap_config(RELEASED_CONFIG)
    tensors = build_random_state_dict(config, seed, RELEASED_SPEAKER_WIDTHS)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    with torch.device("meta"):
        speaker = SpeakerTokenizer(SpeakerWidths.from_shapes(shapes), config["speaker_encoder"]["fsq_levels"])
        semantic = SemanticTokenizer(config["encoder"], config["quantizer"])
    speaker.load_state_dict({n: tensors[f"speaker_encoder.{n}"] for n in speaker.state_dict()}, assign=True)
    semantic.load_state_dict({n: tensors[n] for n in semantic.state_dict()}, assign=True)
    for module in (speaker, semantic):
        fold_weight_norms(module)
        module.requires_grad_(False).eval()
    torch.manual_seed(seed)
    w2v_config = Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        conv_dim=(512,) * 7,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        layer_norm_eps=1e-5,
    )
    w2v = Wav2Vec2Model(w2v_config).eval().to(device)
    extractor = Wav2Vec2FeatureExtractor(
        **{k: v for k, v in PREPROCESSOR_CONFIG.items() if k != "feature_extractor_type"}
    )
    return ReferenceEncoder(
        root_config={},
        mel=MagnitudeMel(MelConfig.from_dict(config["mel_params"])).to(device),
        speaker=speaker.to(device),
        semantic=semantic.to(device),
        wav2vec2=Wav2VecFeatures(w2v, extractor),
        device=torch.device(device),
    )


def speech_like(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 10))
    return 0.2 * voiced / 3 * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t)) + rng.normal(0, 0.003, t.size)


def best_of(fn, repeats: int, device: str) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


class EncoderRuntime:
    """What the service's reference path (`services.voice_library.references.References`) asks of the runtime."""

    cloning_unavailable_reason = None

    def __init__(self, encoder: ReferenceEncoder) -> None:
        self.encoder = encoder

    def encode_reference(self, samples: np.ndarray, *, semantic: bool = True):  # noqa: ANN201
        return self.encoder.encode(samples, semantic=semantic)


def wav_bytes(samples: np.ndarray) -> bytes:
    """16-bit mono WAV at 16 kHz, as a client uploads it."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        16000,
        32000,
        2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm


def service_cache_path(encoder: ReferenceEncoder, reference: bytes, repeats: int = 50) -> tuple[float, float]:
    """The service's own path for a per-request reference: the first request decodes and encodes it (miss), a
    repeat of the same bytes is answered from the LRU by SHA-256 (hit). Returns (miss s, mean hit s)."""
    from services.voice_library.references import References

    async def run() -> tuple[float, float]:
        references = References(EncoderRuntime(encoder), max_concurrent=1, cache_size=8)  # type: ignore[arg-type]
        started = time.perf_counter()
        await references.encode(reference, semantic=True)
        miss = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(repeats):
            await references.encode(reference, semantic=True)
        assert references.encodes == 1
        return miss, (time.perf_counter() - started) / repeats

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two lengths, two repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "clone.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = QUICK_LENGTHS_S if args.quick else LENGTHS_S
    repeats = args.repeats or (2 if args.quick else 3)
    started = time.perf_counter()
    encoder = released_encoder(args.device)
    build_s = time.perf_counter() - started
    rows: list[Row] = []
    for index, seconds in enumerate(lengths):
        audio = speech_like(seconds, index)
        encoder.encode(audio, semantic=True)  # warm-up at this length (allocator, oneDNN primitives)
        global_s = best_of(lambda a=audio: encoder.encode(a, semantic=False), repeats, args.device)
        full_s = best_of(lambda a=audio: encoder.encode(a, semantic=True), repeats, args.device)
        tokens = encoder.encode(audio, semantic=True).semantic_tokens or ()
        rows.append(
            Row(
                seconds,
                global_s,
                full_s,
                global_s / seconds,
                full_s / seconds,
                (full_s - global_s) / full_s,
                len(tokens),
            )
        )
    reference = wav_bytes(speech_like(lengths[-1], 9))
    miss_s, hit_s = service_cache_path(encoder, reference)

    print(
        f"\n## Voice-cloning encode, released size, {args.device}, torch threads {torch.get_num_threads()}, "
        f"load avg {os.getloadavg()[0]:.1f} (built in {build_s:.1f} s)\n"
    )
    print(
        "| reference s | global-only s | full s | global s / audio s | full s / audio s | wav2vec2 share | semantic tokens |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.reference_s:.0f} | {r.global_s:.3f} | {r.full_s:.3f} | {r.global_per_audio_s:.4f} | "
            f"{r.full_per_audio_s:.4f} | {100 * r.wav2vec2_share:.0f}% | {r.semantic_tokens} |"
        )
    print(
        f"\nThe service's reference path (`References.encode`, {lengths[-1]:.0f} s 16-bit WAV, "
        f"{len(reference) / 1e6:.2f} MB): first request {miss_s:.3f} s (decode + full encode), the same bytes again "
        f"{1e3 * hit_s:.2f} ms (SHA-256 + LRU lookup, no encode): {miss_s / hit_s:.0f}x cheaper."
    )
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": args.device,
                "torch_threads": torch.get_num_threads(),
                "repeats": repeats,
                "machine": platform.machine(),
                "cpu_count": os.cpu_count(),
                "load_avg": os.getloadavg()[0],
                "rows": [asdict(r) for r in rows],
                "service_miss_s": miss_s,
                "service_hit_s": hit_s,
                "reference_bytes": len(reference),
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
