"""Print the settings tables of docs/operate/settings.md from the one settings class, one table per concern
(python scripts/settings_table.py; --write PAGE rewrites the page between its markers)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.settings import Settings  # noqa: E402

SETTINGS_SOURCE = Path(__file__).resolve().parents[1] / "shared" / "settings.py"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "operate" / "settings.md"


def concerns() -> dict[str, str]:
    """Each field's concern: the `# --- name ---` comment above it in shared/settings.py (its parenthesis dropped)."""
    found: dict[str, str] = {}
    concern = "other"
    for line in SETTINGS_SOURCE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^\s+# -{3} (.+?) -{3,}\s*$", line)
        if heading:
            concern = re.sub(r"\s*\(.*\)\s*", "", heading.group(1)).strip()
            continue
        field = re.match(r"^    (\w+)\s*:", line)
        if field and field.group(1) in Settings.model_fields:
            found[field.group(1)] = concern
    return found


def settings_table() -> str:
    groups: dict[str, list[str]] = {}
    where = concerns()
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None or default == "" else f"`{default}`"
        row = f"| `TTS_{name.upper()}` | {shown} | {field.description or ''} |"
        groups.setdefault(where.get(name, "other"), []).append(row)
    parts = []
    for concern, rows in groups.items():
        parts.append(f"## {concern[0].upper()}{concern[1:]}\n\n| env var | default | meaning |\n|---|---|---|\n"
                     + "\n".join(rows))
    return "\n\n".join(parts)


START, END = "<!-- SETTINGS-TABLE -->", "<!-- /SETTINGS-TABLE -->"


def page_with_table(page: str) -> str:
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{settings_table()}\n{END}{tail}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        path = Path(sys.argv[2])
        path.write_text(page_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(settings_table())
