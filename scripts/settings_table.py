"""Print the README's settings table from the one settings class (python scripts/settings_table.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.settings import Settings  # noqa: E402


def settings_table() -> str:
    rows = ["| env var | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None or default == "" else f"`{default}`"
        rows.append(f"| `TTS_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
