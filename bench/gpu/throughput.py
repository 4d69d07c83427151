"""Acceptance step 2, throughput at the released sizes, as real-time streams one device sustains per stage.

- codec: batched BiCodec decode and AP-BWE (fp32 / tf32 / bf16 on CUDA), by `bench/gpu/bench_gpu.py`;
- cloning: the reference encoder (speaker branch + wav2vec2 + BiCodec encoder), by `bench/bench_clone.py`;
- aligner: the `ctc` method's cost (a released-size random `Wav2Vec2ForCTC`: the emissions plus the Viterbi), as
  seconds of audio aligned per second, and as a ratio to BiCodec decode of the same audio.
Every figure is "x real-time": audio seconds handled per compute second = concurrent real-time streams.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.gpu.bench_gpu import bicodec_config, build_bicodec

ROOT = Path(__file__).resolve().parents[2]


def codec(device: str, quick: bool) -> dict[str, Any]:
    from bench.gpu import bench_gpu

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "codec.json"
        bench_gpu.main(["--device", device, "--out", str(out)] + (["--quick"] if quick else []))
        return json.loads(out.read_text())


def cloning(device: str, quick: bool) -> dict[str, Any]:
    """`bench/bench_clone.py` at the released size; `--quick`: the demo checkpoint's encoder on 3 s (plumbing)."""
    if quick:
        return _demo_cloning(device)
    from bench import bench_clone

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clone.json"
        bench_clone.main(["--device", device, "--out", str(out)])
        result = json.loads(out.read_text())
    for row in result["rows"]:
        row["x_realtime_full"] = 1.0 / row["full_per_audio_s"] if row["full_per_audio_s"] else None
    return result


def _demo_cloning(device: str) -> dict[str, Any]:
    from bench.bench_clone import best_of, speech_like
    from core.clone.encoder import ReferenceEncoder
    from core.demo.checkpoint import build_demo_checkpoint

    encoder = ReferenceEncoder.from_pretrained(
        build_demo_checkpoint(ROOT / "var" / "test-demo-model", seed=0), device=device
    )
    audio = speech_like(3.0, 0)
    encoder.encode(audio)
    full_s = best_of(lambda: encoder.encode(audio), 1, device)
    print(f"  demo-size encoder: 3 s reference in {full_s * 1000:.0f} ms")
    return {
        "rows": [
            {
                "reference_s": 3.0,
                "full_s": full_s,
                "full_per_audio_s": full_s / 3.0,
                "x_realtime_full": 3.0 / full_s,
            }
        ],
        "size": "demo",
    }


def aligner(device: str, quick: bool) -> dict[str, Any]:
    """The ctc aligner (`bench/bench_align.py`'s measurement: a wav2vec2-base-size random Wav2Vec2ForCTC, emissions
    plus Viterbi on 10 s) against BiCodec decoding the same 10 s, on the same device."""
    try:
        from bench.bench_align import ctc_cost
    except ImportError as exc:
        return {"note": f"the ctc aligner is not available: {exc}"}
    from core.demo.random_bicodec import DEMO_CONFIG

    decoder = build_bicodec(DEMO_CONFIG if quick else bicodec_config()[0], device)
    d_vector = torch.randn(1, decoder.d_vector_dim, device=device)
    with torch.inference_mode():
        result = ctc_cost(decoder, d_vector, 1 if quick else 3, device)
    result["x_realtime"] = result["audio_s"] / (result["ctc_ms"] / 1000)
    result["decoder"] = "demo-size" if quick else "released"
    print(
        f"  ctc aligner: {result['audio_s']:.0f} s of audio in {result['ctc_ms']:.0f} ms "
        f"(x{result['x_realtime']:.0f} real-time), {result['ratio_to_decode']:.2f}x the {result['decoder']} BiCodec "
        "decode of the same audio"
    )
    return result


def run(device: str, quick: bool) -> dict[str, Any]:
    print("codec: batched BiCodec decode and AP-BWE")
    codec_result = codec(device, quick)
    print("cloning encoder")
    clone_result = cloning(device, quick)
    print("ctc aligner")
    aligner_result = aligner(device, quick)
    streams = {
        "decode_16k": {m: e.get("streams_16k") for m, e in codec_result["sustained"].items()},
        "decode_sr_48k": {m: e.get("streams_48k") for m, e in codec_result["sustained"].items()},
        "clone_encoder_x_realtime": max((r["x_realtime_full"] or 0) for r in clone_result["rows"]),
        "ctc_aligner_x_realtime": aligner_result.get("x_realtime"),
    }
    return {"codec": codec_result, "cloning": clone_result, "aligner": aligner_result, "streams": streams}
