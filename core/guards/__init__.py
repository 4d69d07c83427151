"""Generation guards: detectors that notice runaway, looping, silent or empty generation of a text chunk.

Pure functions and classes over semantic token ids and numpy audio (no service imports). The pipeline feeds
`ChunkGuards` as tokens and audio arrive and decides what a `Trip` means (retry, cut, count): see
services/pipeline/chunk_guards.py."""

from core.guards.alignment import AlignmentVerdict, check_alignment
from core.guards.audio_guards import SilenceDetector
from core.guards.chunk import ChunkGuards, Trip
from core.guards.config import GUARD_MODES, GUARD_NAMES, GuardConfig, GuardMode, GuardName
from core.guards.text_budget import (
    expected_tokens,
    longest_spaced_word,
    requested_pause_seconds,
    speech_seconds,
)
from core.guards.token_guards import HeldToken, LengthLimit, LoopDetector

__all__ = [
    "GUARD_MODES",
    "GUARD_NAMES",
    "AlignmentVerdict",
    "ChunkGuards",
    "GuardConfig",
    "GuardMode",
    "GuardName",
    "HeldToken",
    "LengthLimit",
    "LoopDetector",
    "SilenceDetector",
    "Trip",
    "check_alignment",
    "expected_tokens",
    "longest_spaced_word",
    "requested_pause_seconds",
    "speech_seconds",
]
