"""Lay the demo checkpoint out the way fine-tunes are saved (docs/reference/spark-tts.md#the-fine-tune-layout): the HF
LLM files at the root, `BiCodec/` beside them, optionally no root `config.yaml` and no `BiCodec/config.yaml`, no
voices.json."""

from __future__ import annotations

import shutil
from pathlib import Path


def finetune_layout(
    demo_dir: Path,
    target: Path,
    *,
    root_config: bool = True,
    voices: bool = False,
    bicodec_config: bool = True,
) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for source in (demo_dir / "LLM").iterdir():
        shutil.copy2(source, target / source.name)
    shutil.copytree(demo_dir / "BiCodec", target / "BiCodec")
    if not bicodec_config:
        (target / "BiCodec" / "config.yaml").unlink()
    if root_config:
        shutil.copy2(demo_dir / "config.yaml", target / "config.yaml")
    if voices:
        shutil.copy2(demo_dir / "voices.json", target / "voices.json")
    return target
