"""The README's settings table is generated from the settings class; it must not drift."""

from __future__ import annotations

from pathlib import Path

from scripts.settings_table import readme_with_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text) == text, "run: python scripts/settings_table.py --write README.md"


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:20])
    assert "scripts/serve" in first_screen and "scripts/test" in first_screen
