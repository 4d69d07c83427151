"""Command-line options the simulator's benches share: how the device is shared, the engine's pace, and an engine
step measured on a GPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.sim.sliced_device import DEVICE_SHARINGS
from bench.standin.cost_model import ENGINE_STEP_VARIANTS, Linear, engine_step_fit
from core.llm.engine_pace import EnginePace


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """`--device-sharing` (serial | sliced) and `--engine-pace` (JSON EnginePace fields; "" steps every request)."""
    parser.add_argument(
        "--device-sharing",
        choices=DEVICE_SHARINGS,
        default="serial",
        help="how the engine and the codec share the device (python -m bench sim load --device-sharing)",
    )
    parser.add_argument(
        "--engine-pace",
        default="",
        help="JSON EnginePace fields: hold each live request to a line ahead of real time, as the service does "
        "with TTS_LLM_PACE_LEAD_IDS (core/llm/engine_pace.py); empty: the engine steps every request",
    )


def engine_pace(text: str) -> EnginePace | None:
    """`--engine-pace`'s value read (a bad one fails here, before any worker starts)."""
    return EnginePace(**json.loads(text)) if text else None


def add_engine_step_option(parser: argparse.ArgumentParser) -> None:
    """`--engine-step FILE[:VARIANT]`: a GPU's `engine-step.json` (bench/gpu/engine_step.py) in place of the cost
    model's engine step, so the GPU's figure reaches the tables without a cost model edited by hand."""
    parser.add_argument(
        "--engine-step",
        default="",
        help="engine-step.json from bench/gpu/engine_step.py on a GPU, optionally :compiled (default) or :graph: "
        "its fit replaces the cost model's engine step",
    )


def engine_step(text: str) -> tuple[Linear, str] | None:
    """`--engine-step`'s value read (a bad one fails here, before any worker starts): the step and where it came
    from, or None to keep the cost model's."""
    if not text:
        return None
    path, _, variant = text.rpartition(":")
    if variant not in ENGINE_STEP_VARIANTS:  # no variant named: the whole text is the path
        path, variant = text, ENGINE_STEP_VARIANTS[0]
    return engine_step_fit(path, variant), f"{Path(path).name} {variant}"
