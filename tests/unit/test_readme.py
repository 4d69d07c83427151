"""The README is the front door: its first screen has the two set-up commands and its links resolve. The settings
tables of docs/operate/settings.md are generated from the settings class; they must not drift."""

from __future__ import annotations

from pathlib import Path

from scripts.settings_table import PAGE, page_with_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_is_current() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert page_with_table(text) == text, (
        "run: python scripts/settings_table.py --write docs/operate/settings.md"
    )


def test_settings_tables_group_every_setting_by_concern() -> None:
    from shared.settings import FIELD_GROUP, GROUPS

    text = PAGE.read_text(encoding="utf-8")
    assert len(GROUPS) >= 8
    assert all(f"## `{group}`" in text for group in GROUPS)
    assert all(text.count(f"| `TTS_{name.upper()}` |") == 1 for name in FIELD_GROUP)


def test_readme_is_a_front_door() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:20])
    assert "scripts/serve" in first_screen and "scripts/test" in first_screen


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings (lower case, punctuation dropped, spaces to hyphens, -1 -2 for
    repeats); fenced code is not searched."""
    import re

    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in strip_fences(markdown).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def strip_fences(markdown: str) -> str:
    import re

    return re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)


def test_every_readme_link_resolves() -> None:
    """Anchors name a heading; relative links name a file of the repository (and a heading in it, if they say)."""
    import re

    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"`[^`\n]*`", "", strip_fences(text))
    links = re.findall(r"!?\[[^\]\n]*\]\(([^)\s]+)\)", prose)
    assert len(links) > 10
    checked = 0
    for target in links:
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not reachable from a test
            continue
        path, _, anchor = target.partition("#")
        file = README if not path else README.parent / path
        assert file.exists(), f"README links to {target}: no such file"
        if anchor:
            assert file.suffix == ".md", target
            assert anchor in github_anchors(file.read_text(encoding="utf-8")), (
                f"README links to {target}: no heading"
            )
        checked += 1
    assert checked > 10
