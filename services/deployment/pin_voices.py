"""Voice pinning: generate once per voice, keep its 32 global tokens, and write them into voices.json.

    python -m services.deployment.pin_voices MODEL_DIR [--voices Asha,Bittu] [--seed 0] [--out MODEL_DIR/voices.json]

A style or speaker-prefix voice lets the model choose the 32 global (timbre) tokens on every request, so its timbre
drifts between requests and every request waits ~34 decode steps for them. Pinned, the voice's prompt carries those
globals: for a fine-tuned speaker that is exactly the trained sequence
`<|task_tts|><|start_content|>Name: text<|end_content|><|start_global_token|>{32 globals}<|end_global_token|>`
(docs/reference/spark-tts.md#the-fine-tune-layout), one timbre on every request and no global-token steps. Uses the
engine the settings name (TTS_ENGINE; vLLM on a GPU, transformers on a CPU). Voices that already have globals are
left as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from core.voices import FORMAT_VERSION, VoiceRegistry
from services.deployment.runtime import ModelRuntime
from services.errors import ServiceError
from services.model_status import PinnedVoices
from services.pipeline.synthesis import (
    NATIVE_RATE,
    SamplingOptions,
    SynthesisJob,
    SynthesisRequest,
    warmup_pipeline,
)
from shared.settings import Settings

logger = logging.getLogger("services.deployment.pin_voices")

PIN_TEXT = "Hello, this is my voice."


async def pin(
    runtime: ModelRuntime, voice_ids: Sequence[str] | None = None, *, seed: int = 0, text: str = PIN_TEXT
) -> dict[str, tuple[int, ...]]:
    """Generate once per voice without stored globals; return {voice id: its 32 global tokens}."""
    pinned: dict[str, tuple[int, ...]] = {}
    for voice in runtime.voices.voices.values():
        if voice.global_tokens is not None or (voice_ids and voice.id not in voice_ids):
            continue
        request = SynthesisRequest(
            request_id=f"pin-{voice.id}",
            text=text,
            voice=voice,
            sampling=SamplingOptions.with_defaults(runtime.settings, max_tokens=64, seed=seed),
            audio_format="pcm",
            sample_rate=NATIVE_RATE,
            stream=False,
            normalize=False,
            chunking=False,
        )
        job = SynthesisJob.planned(runtime.pipeline_resources(), request)
        await job.collect()
        if job.global_tokens is None:
            raise RuntimeError(f"voice {voice.id!r}: the model produced no global tokens")
        pinned[voice.id] = tuple(job.global_tokens)
    return pinned


def pinned_voices_document(runtime: ModelRuntime, pinned: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    voices = []
    for voice in runtime.voices.voices.values():
        if voice.id in pinned:
            voice = dataclasses.replace(voice, global_tokens=pinned[voice.id])
        voices.append(voice.to_dict())
    document = {"format": FORMAT_VERSION, "default": runtime.voices.default_voice_id, "voices": voices}
    if runtime.voices.openai_overrides:
        document["openai_voices"] = runtime.voices.openai_overrides
    return document


async def warm_up_and_pin(runtime: ModelRuntime) -> None:
    """The warm-up step with TTS_PIN_VOICES_AT_START: warm up, then pin every voice without stored globals (seed 0,
    the same on every container) and serve the pinned voices, so no request waits for 32 global tokens."""
    await warm_up(runtime)
    pinned = await pin(runtime, seed=0)
    if pinned:
        runtime.voices = VoiceRegistry.from_dict(pinned_voices_document(runtime, pinned))
        logger.info("voices pinned at start", extra={"voices": sorted(pinned)})


async def warm_up(runtime: ModelRuntime) -> None:
    """One short request through the whole pipeline, so the first user request is not the slow one."""
    await warmup_pipeline(runtime.pipeline_resources())


def warmup_step_for(settings: Settings) -> Callable[[ModelRuntime], Awaitable[None]]:
    """What the runtime runs as its warm-up: the plain pipeline warm-up, or warm-up and pinning."""
    return warm_up_and_pin if settings.deployment.pin_voices_at_start else warm_up


def write_voices_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


class RuntimePinning:
    """`VoicePinning` on the running server (`POST /v1/tts/admin/voices/pin`): pins, switches the live voices to
    the pinned ones at once, and with `save` writes voices.json into the model directory."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime

    async def pin(self, voice_ids: Sequence[str] | None, *, seed: int, save: bool) -> PinnedVoices:
        runtime = self.runtime
        if not runtime.ready or runtime.voices is None:
            raise ServiceError(
                "MODEL_NOT_LOADED", "The model is not ready yet; retry shortly.", retry_after=5
            )
        unknown = [v for v in voice_ids or [] if v not in runtime.voices.voices]
        if unknown:
            raise ServiceError(
                "INVALID_SPEAKER",
                f"Unknown voice ids {unknown}; available: {runtime.voices.ids}",
                param="voices",
            )
        pinned = await pin(runtime, voice_ids, seed=seed)
        document = pinned_voices_document(runtime, pinned)
        runtime.voices = VoiceRegistry.from_dict(document)
        if not save:
            return PinnedVoices(pinned, document, None)
        if runtime.checkpoint is None:
            raise ServiceError("SERVICE_UNAVAILABLE", "Pinned in memory; no model directory to save into.")
        target = runtime.checkpoint.root / "voices.json"
        try:
            write_voices_json(target, document)
        except OSError as exc:
            raise ServiceError(
                "SERVICE_UNAVAILABLE",
                f"Pinned in memory, but {target} is not writable ({exc.strerror}).",
                retry_after=5,
            ) from exc
        return PinnedVoices(pinned, document, target)


async def _run(model_dir: Path, voice_ids: list[str], seed: int, out: Path) -> int:
    settings = Settings(
        model_dir=model_dir, warmup=False, sr_enabled=False, auth_enabled=False, log_json=False
    )
    runtime = ModelRuntime(settings)  # no warm-up: the pinning generation itself is the first request
    await runtime.start()
    if not runtime.ready:
        print(f"error: the model did not load: {runtime.error}", file=sys.stderr)
        return 1
    try:
        pinned = await pin(runtime, voice_ids or None, seed=seed)
        document = pinned_voices_document(runtime, pinned)
    finally:
        await runtime.shutdown()
    write_voices_json(out, document)
    for voice_id, tokens in pinned.items():
        print(f"pinned {voice_id}: {list(tokens)}")
    print(f"wrote {out} ({len(pinned)} voice(s) pinned); restart the service to use it")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.deployment.pin_voices", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument(
        "--voices", default="", help="comma list of voice ids (default: every unpinned voice)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the pinning generation")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write (default MODEL_DIR/voices.json)"
    )
    args = parser.parse_args(argv)
    voice_ids = [v.strip() for v in args.voices.split(",") if v.strip()]
    return asyncio.run(_run(args.model_dir, voice_ids, args.seed, args.out or args.model_dir / "voices.json"))


if __name__ == "__main__":
    sys.exit(main())
