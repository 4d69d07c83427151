"""The admission probe's cases reach the server: each case's settings are real TTS_ names that change the setting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]


def test_each_probe_case_sets_what_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.gpu.admission_probe import CASES
    from shared.settings import Settings

    default = Settings().codec
    for name, rate, levels, settings in CASES:
        assert rate in (16000, 48000) and levels and settings, name
        with monkeypatch.context() as env:
            for key, value in settings.items():
                env.setenv(key, value)
            codec = Settings().codec
        changed = {
            field
            for field in ("admission", "admission_max_wait_ms")
            if getattr(codec, field) != getattr(default, field)
        }
        assert changed, f"{name}: {settings} changes no admission setting"
