"""Checkpoint doctor: what a model directory holds and how the service would serve it, without loading the LLM.

    python -m services.deployment.doctor MODEL_DIR [--sr-dir DIR] [--speakers Asha,Bittu]

Prints the layout (released or fine-tune) and the resolved paths, the voices with the exact prompt each one
sends, super-resolution availability, and every problem with its fix. Exit status 0 when the directory can be
served, 1 when it cannot. Cheap: reads configs, tensor headers and the tokenizer, never the LLM weights.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.checkpoint import CheckpointError, SparkCheckpoint, load_spark_checkpoint, load_sr_checkpoint
from core.voices import VoiceConfigError, VoiceRegistry
from processing.prompt import PromptError, build_prompt


def _voices(checkpoint: SparkCheckpoint, speakers: Sequence[str]) -> VoiceRegistry:
    if checkpoint.voices_file is not None:
        return VoiceRegistry.from_file(checkpoint.voices_file)
    if checkpoint.layout == "finetune":
        return VoiceRegistry.for_finetune(speakers)
    return VoiceRegistry.builtin()


def diagnose(
    model_dir: Path, sr_dir: Path | None = None, speakers: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """(report lines, problems with fixes)."""
    lines: list[str] = []
    problems: list[str] = []
    try:
        checkpoint = load_spark_checkpoint(model_dir)
    except CheckpointError as exc:
        return lines, [f"{exc}"]
    lines += [
        f"layout:      {checkpoint.layout}"
        + (" (demo checkpoint: random weights, noise)" if checkpoint.is_demo else ""),
        f"LLM:         {checkpoint.llm_dir}",
        f"BiCodec:     {checkpoint.bicodec_dir}",
        f"root config: {checkpoint.root_config_file or 'absent (16 kHz assumed)'}",
        f"wav2vec2:    {checkpoint.wav2vec2_dir or 'absent (voice cloning unavailable)'}",
        f"voices.json: {checkpoint.voices_file or 'absent'}",
    ]
    try:
        from core.bicodec import BiCodecDecoder

        BiCodecDecoder.from_pretrained(checkpoint.bicodec_dir)
        lines.append("BiCodec:     loads (decode tensors present, shapes match the config)")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        problems.append(f"BiCodec does not load: {exc}")
    try:
        voices = _voices(checkpoint, speakers)
    except VoiceConfigError as exc:
        problems.append(f"{exc} (fix voices.json; see the README's Voices section)")
        voices = None
    if voices is not None:
        if checkpoint.layout == "finetune" and checkpoint.voices_file is None and not speakers:
            problems.append(
                "fine-tune without voices.json and no speakers named: one unprefixed voice is served. If it was "
                "trained on several speakers, set TTS_FINETUNE_SPEAKERS=Name1,Name2 (recipe format 'Name: text')"
            )
        if checkpoint.layout == "finetune" and any(v.kind == "style" for v in voices.voices.values()):
            problems.append(
                "style (controllable) voices on a fine-tune: its recipe never trained that prompt; "
                "use prompt_prefix voices"
            )
        lines.append(f"voices ({len(voices)}; default {voices.default_voice_id}):")
        for voice in voices.voices.values():
            try:
                prompt, mode = build_prompt("{text}", voice)
            except PromptError as exc:
                problems.append(f"voice {voice.id!r}: {exc}")
                continue
            pinned = "pinned globals" if voice.global_tokens else "model emits globals"
            lines.append(f"  {voice.id:<16} {voice.kind:<14} {mode:<12} {pinned:<20} {prompt[:160]}")
        lines.append("OpenAI names: " + ", ".join(f"{k}->{v}" for k, v in voices.openai_voices.items()))
    sr_root = sr_dir if sr_dir is not None else checkpoint.root / "16kto48k"
    try:
        load_sr_checkpoint(sr_root)
        lines.append(f"AP-BWE:      {sr_root} (48 kHz super-resolution available)")
    except CheckpointError as exc:
        lines.append(
            f"AP-BWE:      unavailable ({exc}); 48 kHz output is resampled (health: degraded). "
            "Fix: TTS_SR_DIR=<dir with config.json + g_16kto48k> or python -m core.weights --sr DIR"
        )
    return lines, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.deployment.doctor", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument(
        "--sr-dir", type=Path, default=None, help="AP-BWE directory (default MODEL_DIR/16kto48k)"
    )
    parser.add_argument("--speakers", default="", help="comma list, as TTS_FINETUNE_SPEAKERS")
    args = parser.parse_args(argv)
    lines, problems = diagnose(
        args.model_dir, args.sr_dir, [s for s in args.speakers.split(",") if s.strip()]
    )
    print("\n".join(lines))
    if problems:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"  - {p}" for p in problems))
    else:
        print("\nno problems found")
    fatal = not lines or any(p.startswith("BiCodec does not load") for p in problems)
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
