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


START, END = "<!-- SETTINGS-TABLE -->", "<!-- /SETTINGS-TABLE -->"


def readme_with_table(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{settings_table()}\n{END}{tail}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        path = Path(sys.argv[2])
        path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(settings_table())
