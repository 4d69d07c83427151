"""The docs check for lists that render as one run-on paragraph (scripts/docs_lists.py, an MkDocs hook): it passes
on this site's pages and fails `mkdocs build --strict` on a planted page whose list has no blank line before it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import markdown
from mkdocs.config import load_config

from scripts.docs_lists import run_on_lists

ROOT = Path(__file__).resolve().parents[3]
MKDOCS = Path(sys.executable).with_name("mkdocs")

BAD_PAGE = """# Planted

**Server → client:**
- `{"type":"started"}`
- binary frames

Steps:
1. one
2. two
"""

GOOD_PAGE = """# Fine

**Server → client:**

- `{"type":"started"}`
- binary frames

A sentence that wraps - with a dash inside it - is no list, and neither is a code block:

```text
- not a list item
```
"""


def _render(text: str) -> str:
    """The page as MkDocs renders it: the same Markdown library, extensions and their settings (mkdocs.yml)."""
    config = load_config(str(ROOT / "mkdocs.yml"))
    return markdown.Markdown(
        extensions=config["markdown_extensions"], extension_configs=config["mdx_configs"]
    ).convert(text)


def test_a_list_without_a_blank_line_before_it_is_found() -> None:
    assert run_on_lists(_render(BAD_PAGE)) == ['- {"type":"started"}', "- binary frames", "1. one", "2. two"]


def test_a_list_after_a_blank_line_and_a_dash_in_a_sentence_pass() -> None:
    assert run_on_lists(_render(GOOD_PAGE)) == []


def test_no_page_of_this_site_has_a_run_on_list() -> None:
    found = {}
    for page in sorted((ROOT / "docs").rglob("*.md")):
        if bad := run_on_lists(_render(page.read_text())):
            found[str(page.relative_to(ROOT))] = bad
    assert not found, found


def _site(tmp_path: Path, page: str) -> Path:
    site = tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    (site / "docs" / "index.md").write_text(page)
    shutil.copy(ROOT / "scripts" / "docs_lists.py", site / "docs_lists.py")
    config = (
        (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0].replace("scripts/docs_lists.py", "docs_lists.py")
    )
    (site / "mkdocs.yml").write_text(config + "\nnav:\n  - Home: index.md\n")
    return site


def _build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site / "out")],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_strict_build_fails_on_a_planted_run_on_list(tmp_path: Path) -> None:
    done = _build(_site(tmp_path, BAD_PAGE))
    assert done.returncode != 0
    assert "index.md: a list renders as a paragraph (add a blank line before it)" in done.stderr, done.stderr
    assert "'1. one'" in done.stderr


def test_the_strict_build_passes_the_same_page_with_blank_lines(tmp_path: Path) -> None:
    done = _build(_site(tmp_path, GOOD_PAGE))
    assert done.returncode == 0, done.stderr
