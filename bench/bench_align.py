"""Word timestamps: how accurate `estimate` is on real speech, and what `estimate` and `ctc` cost.

Measures
- accuracy: espeak-ng speech (English, Hindi, Chinese) made of phrases joined with known pauses
  (bench/espeak_speech.py); for each phrase the error of its first word's start and last word's end against the
  phrase's true edges (p50, p90, max), aligned whole and streamed (the incremental aligner fed the decoder's
  pieces, as the service's streams are, first with nothing known of the voice, then with the rate the voice's earlier
  output measured, as the service keeps it: "voice heard"); every word spanned, in order. Also the same speech with
  the phrases' punctuation removed (pauses the text does not announce: the harder case), and in Chinese five more
  such texts (`CHINESE_CLAUSES`);
- estimate's cost: compute per second of audio, as a ratio to the released-size BiCodec decode of the same audio,
  and as a share of a whole request's CPU time (in-process pipeline on the demo checkpoint, timestamps on);
- ctc's cost: a released-size (wav2vec2-base, ~94 M parameters) random Wav2Vec2ForCTC, emissions + Viterbi for
  10 s of audio, as a ratio to the BiCodec decode of the same 10 s.

Usage: .venv/bin/python -m bench align [--quick] [--accuracy-only] [--speed WPM ...] [--device cpu|cuda]
Prints markdown tables and writes bench/results/align.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_bicodec import MANIFEST, best_time, build_decoder  # noqa: E402
from bench.espeak_speech import (  # noqa: E402
    CHINESE_CLAUSES,
    MORE_PHRASES,
    PHRASES,
    edge_errors,
    make_speech,
    streamed,
    unpunctuated,
    voice_rate,
)
from core.align import align, split_words  # noqa: E402
from core.align.ctc import CtcAligner, _Vocab  # noqa: E402

TOLERANCE_MS = 60
CTC_SECONDS = 10.0
REQUEST_TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank, while the morning mist slowly "
    "lifts. Every day the baker opens his small shop at six and sells fresh bread, warm rolls and cakes."
)


def accuracy_rows(speed: int | None = None) -> list[dict]:
    """Per language, method (whole: `align`, streamed: the incremental aligner in the decoder's pieces) and phrase
    set: the distribution of the phrase-edge errors. `speed`: espeak-ng's words per minute (None: each voice's own)."""
    rows = []
    for language in ("en", "hi", "zh"):
        sets = [
            ("narrative", [PHRASES[language]], MORE_PHRASES),
            ("short", [MORE_PHRASES[language]], PHRASES),
            ("unpunctuated", [unpunctuated(PHRASES[language])], MORE_PHRASES),
        ]
        if language == "zh":
            sets.append(("unpunctuated clauses", CHINESE_CLAUSES, MORE_PHRASES))
        for name, texts, other in sets:
            # The voice heard before: the rate the service kept from its other phrase set, streamed.
            rate = voice_rate(make_speech(language, other[language], speed=speed))
            speeches = [make_speech(language, phrases, speed=speed) for phrases in texts]
            for method in ("whole", "streamed", "streamed, voice heard"):
                errors, words_count, spanned, in_order = [], 0, True, True
                for speech in speeches:
                    words = split_words(speech.text)
                    spans = (
                        list(align(speech.audio, words).words)
                        if method == "whole"
                        else streamed(speech.audio, words, rate if method != "streamed" else None)
                    )
                    errors += edge_errors(speech, spans)
                    times = [t for w in spans for t in (w.start, w.end)]
                    words_count += len(words)
                    spanned &= all(w.end > w.start for w in spans)
                    in_order &= [w.text for w in spans] == words and times == sorted(times)
                errors_ms = np.array(errors) * 1000
                rows.append(
                    {
                        "language": language,
                        "method": method,
                        "set": name,
                        "speed_wpm": speed,
                        "phrases": sum(len(phrases) for phrases in texts),
                        "words": words_count,
                        "edges": len(errors_ms),
                        "p50_ms": round(float(np.percentile(errors_ms, 50)), 1),
                        "p90_ms": round(float(np.percentile(errors_ms, 90)), 1),
                        "max_ms": round(float(errors_ms.max()), 1),
                        "within_60ms": int((errors_ms <= TOLERANCE_MS).sum()),
                        "all_spanned": spanned,
                        "in_order": in_order,
                    }
                )
    return rows


def estimate_cost(decoder, d, repeats: int, device: str) -> dict:  # noqa: ANN001
    speech = make_speech("en")
    words = split_words(speech.text)
    seconds = len(speech.audio) / 16_000
    align(speech.audio, words)  # warm-up
    estimate_s = best_time(lambda: align(speech.audio, words), repeats * 5, "cpu")
    tokens = torch.randint(0, decoder.semantic_codebook_size, (1, int(seconds * 50))).to(device)
    decoder.decode_with_speaker(tokens, d)
    decode_s = best_time(lambda: decoder.decode_with_speaker(tokens, d), repeats, device)
    return {
        "audio_s": round(seconds, 2),
        "estimate_ms": round(estimate_s * 1000, 3),
        "estimate_ms_per_audio_s": round(estimate_s * 1000 / seconds, 3),
        "bicodec_decode_ms": round(decode_s * 1000, 1),
        "ratio_to_decode": round(estimate_s / decode_s, 5),
    }


def request_share() -> dict:
    """A whole in-process request on the demo checkpoint with timestamps on: CPU time in the aligner / process CPU
    time of the request."""
    from core.demo.checkpoint import build_demo_checkpoint
    from services.deployment.runtime import ModelRuntime
    from services.pipeline import timestamps as ts
    from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest
    from shared.settings import Settings

    model_dir = build_demo_checkpoint(ROOT / "var" / "test-demo-model", seed=0)
    runtime = ModelRuntime(
        Settings(
            model_dir=model_dir,
            warmup=False,
            auth_enabled=False,
            device="cpu",
            sr_enabled=False,
            log_json=False,
        )
    )
    spent = [0.0]
    # The pipeline's two blocking steps of the track (settle after each audio piece, end_segment per text chunk).
    originals = {name: getattr(ts.TimestampTrack, name) for name in ("settle", "end_segment")}

    def timing(method):  # noqa: ANN001, ANN202
        def timed(self, *args):  # noqa: ANN001, ANN202
            started = time.thread_time()
            try:
                return method(self, *args)
            finally:
                spent[0] += time.thread_time() - started

        return timed

    for name, method in originals.items():
        setattr(ts.TimestampTrack, name, timing(method))

    async def run() -> tuple[float, float]:
        await runtime.start()
        voice = runtime.voices.resolve(runtime.voices.default_voice_id)
        request = SynthesisRequest(
            request_id="bench",
            text=REQUEST_TEXT,
            voice=voice,
            sampling=SamplingOptions(max_tokens=300, seed=1),
            audio_format="pcm",
            sample_rate=NATIVE_RATE,
            stream=True,
            timestamps="word",
        )
        await SynthesisJob.planned(runtime.pipeline_resources(), request).collect()  # warm-up
        spent[0] = 0.0
        cpu = time.process_time()
        audio = await SynthesisJob.planned(runtime.pipeline_resources(), request).collect()
        cpu = time.process_time() - cpu
        await runtime.shutdown()
        return cpu, len(audio) / 2 / NATIVE_RATE

    cpu, audio_s = asyncio.run(run())
    for name, method in originals.items():
        setattr(ts.TimestampTrack, name, method)
    return {
        "audio_s": round(audio_s, 2),
        "request_cpu_s": round(cpu, 3),
        "align_cpu_ms": round(spent[0] * 1000, 3),
        "share": round(spent[0] / cpu, 5),
    }


def ctc_cost(decoder, d, repeats: int, device: str) -> dict:  # noqa: ANN001
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32, pad_token_id=0)).eval().to(device)  # base size
    letters = "abcdefghijklmnopqrstuvwxyz'"
    vocab = _Vocab({"<pad>": 0, " ": 4, **{c: i + 5 for i, c in enumerate(letters)}}, blank=0, lower=True)
    aligner = CtcAligner(model, vocab, device=device)
    audio = (0.1 * np.random.default_rng(0).standard_normal(int(CTC_SECONDS * 16_000))).astype(np.float32)
    words = split_words(REQUEST_TEXT)
    aligner.align_batch([(audio, words)])
    ctc_s = best_time(lambda: aligner.align_batch([(audio, words)]), repeats, device)
    emissions_s = best_time(lambda: aligner.emissions([audio]), repeats, device)
    tokens = torch.randint(0, decoder.semantic_codebook_size, (1, int(CTC_SECONDS * 50))).to(device)
    decoder.decode_with_speaker(tokens, d)
    decode_s = best_time(lambda: decoder.decode_with_speaker(tokens, d), repeats, device)
    return {
        "audio_s": CTC_SECONDS,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "ctc_ms": round(ctc_s * 1000, 1),
        "emissions_ms": round(emissions_s * 1000, 1),
        "viterbi_ms": round((ctc_s - emissions_s) * 1000, 1),
        "bicodec_decode_ms": round(decode_s * 1000, 1),
        "ratio_to_decode": round(ctc_s / decode_s, 3),
    }


def render_accuracy(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Word timestamps ({meta['device']}, torch {meta['torch']}, threads {meta['threads']})",
        "",
        "Phrase-edge errors (ms) on espeak-ng speech, the estimate method aligned whole and streamed:",
        "",
        "| language | method | phrase set | espeak wpm | phrases | words | edges | p50 | p90 | max | within 60 ms | "
        "every word spanned, in order |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['language']} | {r['method']} | {r['set']} | {r['speed_wpm'] or 'voice'} | {r['phrases']} | "
            f"{r['words']} | "
            f"{r['edges']} | {r['p50_ms']} | {r['p90_ms']} | {r['max_ms']} | "
            f"{r['within_60ms']}/{r['edges']} | {'yes' if r['all_spanned'] and r['in_order'] else 'NO'} |"
        )
    return "\n".join(lines)


def render(rows: list[dict], estimate: dict, share: dict, ctc: dict, meta: dict) -> str:
    lines = [render_accuracy(rows, meta)]
    lines += [
        "",
        "| cost | value |",
        "|---|---|",
        f"| estimate, {estimate['audio_s']} s of speech | {estimate['estimate_ms']} ms "
        f"({estimate['estimate_ms_per_audio_s']} ms per audio second) |",
        f"| estimate / BiCodec decode of the same audio (released size) | {estimate['ratio_to_decode']} |",
        f"| estimate's share of a whole request's CPU time (demo checkpoint, {share['audio_s']} s audio) | "
        f"{share['share']} ({share['align_cpu_ms']} ms of {share['request_cpu_s']} s) |",
        f"| ctc ({ctc['params_m']} M-parameter random wav2vec2-base), {ctc['audio_s']} s | {ctc['ctc_ms']} ms "
        f"(emissions {ctc['emissions_ms']} ms, Viterbi {ctc['viterbi_ms']} ms) |",
        f"| ctc / BiCodec decode of the same audio (released size) | {ctc['ratio_to_decode']} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed runs")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: BiCodec and the CTC model")
    parser.add_argument(
        "--accuracy-only", action="store_true", help="the espeak-ng accuracy table alone (seconds)"
    )
    parser.add_argument(
        "--speed",
        type=int,
        action="append",
        help="espeak-ng words per minute (repeatable; default: each voice's own): the accuracy table at that speed",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "align.json")
    args = parser.parse_args()
    repeats = 2 if args.quick else 3
    started = time.perf_counter()
    rows = [row for speed in args.speed or [None] for row in accuracy_rows(speed)]
    if args.accuracy_only:
        meta = {
            "device": "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        table = render_accuracy(rows, meta)
        print(table)
        out = args.out.with_name("align_accuracy.json") if args.out.name == "align.json" else args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps({"meta": meta, "accuracy": rows, "table": table}, indent=2, ensure_ascii=False) + "\n"
        )
        print(f"\nwrote {out}")
        return
    decoder = build_decoder(MANIFEST, args.device)
    d = decoder.speaker_vector(
        torch.randint(0, decoder.global_codebook_size, (1, decoder.global_token_count))
    )
    with torch.inference_mode():
        estimate = estimate_cost(decoder, d, repeats, args.device)
        ctc = ctc_cost(decoder, d, repeats, args.device)
    share = request_share()
    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.machine()}, {os.cpu_count()} cores"
    )
    meta = {
        "device": f"{args.device} ({device_name})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    table = render(rows, estimate, share, ctc, meta)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "meta": meta,
                "accuracy": rows,
                "estimate": estimate,
                "request": share,
                "ctc": ctc,
                "table": table,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"\nwrote {args.out} ({meta['wall_s']} s)")


if __name__ == "__main__":
    main()
