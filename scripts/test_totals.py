"""The closing line of scripts/test: the totals of every pytest run, alone on its line.

    python3 scripts/test_totals.py var/pytest-main.log var/pytest-vllm.log

A library can print at interpreter exit without a trailing newline (after pytest's own summary), which glued its
message to the front of this line; a newline is printed first so the totals always start a line of their own.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_SUMMARY = re.compile(r"\d+ (passed|failed|error)")
_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?)")


def totals(logs: list[Path]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for path in logs:
        if not path.exists():
            continue
        lines = [line for line in path.read_text(errors="replace").splitlines() if _SUMMARY.search(line)]
        if not lines:
            continue
        for count, word in _COUNTS.findall(lines[-1]):
            counts["errors" if word.startswith("error") else word] += int(count)
    return counts


def closing_line(counts: dict[str, int]) -> str:
    return f"{counts['passed']} passed, {counts['failed'] + counts['errors']} failed, {counts['skipped']} skipped"


if __name__ == "__main__":
    sys.stdout.write("\n" + closing_line(totals([Path(name) for name in sys.argv[1:]])) + "\n")
