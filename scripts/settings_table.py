"""Print the settings tables of docs/operate/settings.md: one per group of shared/settings/ and one for the Modal
deployment's TTS_MODAL_* variables (python scripts/settings_table.py; --write PAGE rewrites the page between its
markers)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.deployment.modal_deployment import ModalConfig  # noqa: E402
from shared.settings import GROUPS  # noqa: E402

PAGE = Path(__file__).resolve().parents[1] / "docs" / "operate" / "settings.md"
HEADER = ["| env var | default | meaning |", "|---|---|---|"]


def _shown(default: Any) -> str:
    if isinstance(default, tuple):  # ModalConfig's lists, as the variable spells them
        default = ",".join(default)
    return "(unset)" if default is None or default == "" else f"`{default}`"


def settings_table() -> str:
    sections = []
    for group, model in GROUPS.items():
        rows = [
            f"## `{group}`: {(model.__doc__ or '').strip().rstrip('.')}",
            "",
            f"Read in code as `settings.{group}.<name>`.",
            "",
            *HEADER,
        ]
        for name, field in model.model_fields.items():
            rows.append(f"| `TTS_{name.upper()}` | {_shown(field.default)} | {field.description or ''} |")
        sections.append("\n".join(rows))
    rows = [
        "## Modal deployment",
        "",
        "Read by `modal deploy app.py` on the machine that deploys (services/deployment/modal_deployment.py, "
        "`ModalConfig`) and handed to the container; the service's own settings above come from the Modal "
        "secret.",
        "",
        *HEADER,
    ]
    for field in dataclasses.fields(ModalConfig):
        rows.append(
            f"| `TTS_MODAL_{field.name.upper()}` | {_shown(field.default)} | "
            f"{field.metadata.get('description', '')} |"
        )
    sections.append("\n".join(rows))
    return "\n\n".join(sections)


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
