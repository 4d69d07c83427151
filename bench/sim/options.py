"""Command-line options the simulator's benches share: how the device is shared, and the engine's pace."""

from __future__ import annotations

import argparse
import json

from bench.sim.sliced_device import DEVICE_SHARINGS
from core.llm.engine_pace import EnginePace


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """`--device-sharing` (serial | sliced) and `--engine-pace` (JSON EnginePace fields; "" steps every request)."""
    parser.add_argument(
        "--device-sharing",
        choices=DEVICE_SHARINGS,
        default="serial",
        help="how the engine and the codec share the device (bench.simulate --device-sharing)",
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
