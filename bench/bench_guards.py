"""Generation guards: false-alarm calibration and cost, as ratios measured in one run.

    .venv/bin/python bench/bench_guards.py [--quick] [--model-dir DIR]

1. Audio detectors on real speech: espeak-ng (Debian package) speaks English, Hindi and Mandarin sentences at
   slow, normal and fast rates; per utterance: the longest silent run (20 ms frames below TTS_GUARD_SILENCE_DB)
   against the silence allowance, and the speech length against the length guard's range (ratio to the text's
   expected duration, core/guards/text_budget.py). A guard must not fire on any of them.
2. Token detectors on the demo engine's normal outputs: the demo model (transformers, CPU) generates each text at
   several seeds; per generation: the loop detector's worst repeated-4-gram share, the longest held id, the length
   ratio. None may trip.
3. Cost: CPU seconds the detectors take per second of audio (50 tokens + 16,000 samples), as a share of one second
   and of the pipeline's own CPU per audio second (the same SynthesisJob with the guards off), in one run.
Writes bench/results/guards.json and prints the tables. RUNBOOK "Generation guards" quotes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio.resample import resample  # noqa: E402
from core.guards import ChunkGuards, GuardConfig, speech_seconds  # noqa: E402
from core.guards.text_budget import SEMANTIC_TOKENS_PER_SECOND  # noqa: E402

if TYPE_CHECKING:
    from services.pipeline.resources import PipelineResources

# (espeak-ng voice, sentences): each language's text as the service would see it after normalisation.
SPEECH_TEXTS: dict[str, tuple[str, list[str]]] = {
    "en": (
        "en",
        [
            "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.",
            "Good morning. Your appointment is confirmed for Tuesday at three in the afternoon.",
            "Well... I am not sure that is what she meant, but we can ask her tomorrow.",
            "Please hold while I transfer your call to the next available representative.",
        ],
    ),
    "hi": (
        "hi",
        [
            "नमस्ते, आज मौसम बहुत अच्छा है और हम सब पार्क में घूमने जा रहे हैं।",
            "आपकी बुकिंग मंगलवार दोपहर तीन बजे के लिए पक्की हो गई है।",
            "कृपया लाइन पर बने रहें, हम आपकी कॉल अगले प्रतिनिधि को भेज रहे हैं।",
        ],
    ),
    "zh": (
        "cmn",
        [
            "今天天气很好，我们一起去公园散步吧。",
            "您的预约已经确认，时间是星期二下午三点。",
            "请稍等，我们正在为您转接下一位客服代表。",
        ],
    ),
}
RATES_WPM = (120, 175, 230)  # slow, espeak's default, fast


def espeak_speech(text: str, voice: str, wpm: int = 175) -> np.ndarray:
    """16 kHz float32 speech from espeak-ng."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text], check=True, capture_output=True
        )
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return resample(pcm, rate, 16_000).astype(np.float32)


def calibrate_speech(
    config: GuardConfig,
    texts: dict[str, tuple[str, list[str]]] = SPEECH_TEXTS,
    rates: tuple[int, ...] = RATES_WPM,
) -> list[dict]:
    """Per utterance: longest silence vs allowance, length ratio vs the guard's range, whether anything tripped."""
    rows = []
    for language, (voice, sentences) in texts.items():
        for wpm in rates:
            for text in sentences:
                audio = espeak_speech(text, voice, wpm)
                guards = ChunkGuards(text, config)
                tripped = [
                    t.guard for t in [guards.feed_audio(piece) for piece in np.array_split(audio, 7)] if t
                ]
                tokens = round(audio.size / 16_000 * SEMANTIC_TOKENS_PER_SECOND)
                ratio = tokens / guards.expected
                if tokens > guards.length.limit or (tokens < guards.length.floor):
                    tripped.append("length")
                rows.append(
                    {
                        "language": language,
                        "wpm": wpm,
                        "seconds": round(audio.size / 16_000, 2),
                        "expected_s": round(speech_seconds(text), 2),
                        "length_ratio": round(ratio, 2),
                        "longest_silence_s": round(guards.silence.longest * 0.02, 2),
                        "silence_allowed_s": round(guards.allowed_silence_s, 2),
                        "tripped": tripped,
                    }
                )
    return rows


async def demo_generations(
    model_dir: Path, texts: list[str], seeds: list[int]
) -> list[tuple[str, list[int], bool]]:
    """(text, semantic ids, stopped) for each text and seed, from the demo model's normal generation."""
    from core.tokens import TokenParser
    from services.deployment.runtime import ModelRuntime
    from services.pipeline.text_plan import prompt_for
    from shared.settings import Settings

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
    await runtime.start()
    # the runtime stands in for the pipeline's resources: it has the tokenizer and added ids prompt_for reads
    resources = cast("PipelineResources", runtime)
    out: list[tuple[str, list[int], bool]] = []
    try:
        voice = runtime.voices.resolve("fixed")
        for text in texts:
            for seed in seeds:
                from core.llm import SamplingConfig

                prompt, mode = prompt_for(resources, text, voice, tuple(voice.global_tokens))
                sampling = SamplingConfig(
                    temperature=0.8,
                    top_k=50,
                    top_p=1.0,
                    max_tokens=4000,
                    seed=seed,
                    repetition_penalty=1.05,
                    stop_token_ids=runtime.layout.stop_token_ids,
                )
                parser = TokenParser(runtime.layout, mode=mode)
                async for ids in runtime.engine.stream(prompt, sampling, f"cal-{seed}-{len(out)}"):
                    parser.feed(ids)
                out.append((text, list(parser.semantic), parser.finished))
    finally:
        await runtime.shutdown()
    return out


def calibrate_tokens(config: GuardConfig, generations: list[tuple[str, list[int], bool]]) -> list[dict]:
    rows = []
    for text, semantic, stopped in generations:
        guards = ChunkGuards(text, config)
        tripped = [
            t.guard
            for t in [guards.feed_tokens(semantic[i : i + 8]) for i in range(0, len(semantic), 8)]
            if t
        ]
        end = guards.finish(stopped=stopped, semantic=len(semantic))
        if end is not None:
            tripped.append(end.guard)
        rows.append(
            {
                "chars": len(text),
                "tokens": len(semantic),
                "length_ratio": round(len(semantic) / guards.expected, 2),
                "loop_worst_share": round(guards.loop.worst_share, 3),
                "longest_held": guards.held.longest,
                "tripped": tripped,
            }
        )
    return rows


def detector_cost(config: GuardConfig, seconds: float = 60.0, repeats: int = 3) -> float:
    """CPU seconds the detectors take per audio second (tokens in engine-sized deltas, audio in decode-sized pieces)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 8192, int(seconds * SEMANTIC_TOKENS_PER_SECOND)).tolist()
    audio = (rng.standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        guards = ChunkGuards("x " * 400, config)
        started = time.process_time()
        for i in range(0, len(tokens), 4):
            guards.feed_tokens(tokens[i : i + 4])
        for i in range(0, audio.size, 16_000):  # about one decode call's audio per second (50-200 tokens)
            guards.feed_audio(audio[i : i + 16_000])
        best = min(best, time.process_time() - started)
    return best / seconds


async def pipeline_cost(model_dir: Path, text: str, mode: str) -> float:
    """CPU seconds per audio second of one non-streamed SynthesisJob on the demo model, guards in `mode`."""
    from services.deployment.runtime import ModelRuntime
    from services.pipeline.synthesis import SamplingOptions, SynthesisJob, SynthesisRequest
    from shared.settings import Settings

    runtime = ModelRuntime(
        Settings(
            model_dir=model_dir,
            warmup=False,
            auth_enabled=False,
            device="cpu",
            sr_enabled=False,
            log_json=False,
            guard_mode=mode,
        )
    )
    await runtime.start()
    try:
        voice = runtime.voices.resolve("fixed")
        request = SynthesisRequest(
            request_id=f"cost-{mode}",
            text=text,
            voice=voice,
            stream=False,
            sampling=SamplingOptions(max_tokens=4000, seed=1),
        )
        started = time.process_time()
        job = SynthesisJob.planned(runtime.pipeline_resources(), request)
        await job.collect()
        return (time.process_time() - started) / (job.stats.decoded_samples / 16_000)
    finally:
        await runtime.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rates and seeds")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "var" / "bench-demo-model")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "guards.json")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)")
        return 2
    from core.demo.checkpoint import build_demo_checkpoint

    model_dir = build_demo_checkpoint(args.model_dir, seed=0)
    config = GuardConfig()
    speech = calibrate_speech(config, rates=RATES_WPM[1:2] if args.quick else RATES_WPM)
    print(
        f"{'lang':4} {'wpm':>4} {'secs':>5} {'expect':>6} {'ratio':>5} {'silence':>7} {'allowed':>7} tripped"
    )
    for r in speech:
        print(
            f"{r['language']:4} {r['wpm']:>4} {r['seconds']:>5} {r['expected_s']:>6} {r['length_ratio']:>5} "
            f"{r['longest_silence_s']:>7} {r['silence_allowed_s']:>7} {','.join(r['tripped']) or '-'}"
        )
    texts = [s for _, sentences in SPEECH_TEXTS.values() for s in sentences]
    seeds = [1, 2] if args.quick else [1, 2, 3, 4, 5]
    generations = asyncio.run(demo_generations(model_dir, texts, seeds))
    tokens = calibrate_tokens(config, generations)
    print(f"\n{'chars':>5} {'tokens':>6} {'ratio':>5} {'loop':>5} {'held':>4} tripped")
    for r in tokens:
        print(
            f"{r['chars']:>5} {r['tokens']:>6} {r['length_ratio']:>5} {r['loop_worst_share']:>5} "
            f"{r['longest_held']:>4} {','.join(r['tripped']) or '-'}"
        )
    per_audio_s = detector_cost(config)
    text = " ".join(SPEECH_TEXTS["en"][1])
    pipeline_off = asyncio.run(pipeline_cost(model_dir, text, "off"))
    pipeline_act = asyncio.run(pipeline_cost(model_dir, text, "act"))
    cost = {
        "detector_cpu_s_per_audio_s": per_audio_s,
        "share_of_one_core": per_audio_s,
        "pipeline_cpu_s_per_audio_s_guards_off": pipeline_off,
        "pipeline_cpu_s_per_audio_s_guards_on": pipeline_act,
        "detector_share_of_pipeline": per_audio_s / pipeline_off,
    }
    print(
        f"\ndetectors: {per_audio_s * 1000:.3f} ms CPU per audio second = {per_audio_s:.4%} of a core; "
        f"pipeline (guards off) {pipeline_off:.3f} s CPU per audio second: detectors add "
        f"{per_audio_s / pipeline_off:.3%} (whole job with guards on: {pipeline_act:.3f} s)"
    )
    summary = {
        "speech_false_alarms": sum(bool(r["tripped"]) for r in speech),
        "speech_utterances": len(speech),
        "speech_length_ratio_range": [
            min(r["length_ratio"] for r in speech),
            max(r["length_ratio"] for r in speech),
        ],
        "speech_longest_silence_s": max(r["longest_silence_s"] for r in speech),
        "demo_false_alarms": sum(bool(r["tripped"]) for r in tokens),
        "demo_generations": len(tokens),
        "demo_length_ratio_range": [
            min(r["length_ratio"] for r in tokens),
            max(r["length_ratio"] for r in tokens),
        ],
        "demo_loop_worst_share": max(r["loop_worst_share"] for r in tokens),
        "demo_longest_held": max(r["longest_held"] for r in tokens),
    }
    print("\n" + json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"summary": summary, "cost": cost, "speech": speech, "demo": tokens}, indent=1)
    )
    return 0 if summary["speech_false_alarms"] == summary["demo_false_alarms"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
