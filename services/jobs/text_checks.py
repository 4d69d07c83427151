"""Text a job stores, checked before it reaches a database: PostgreSQL refuses NUL in text
(asyncpg's CharacterNotInRepertoireError, a 500 that also closes the kept-alive connection) and lone surrogates
cannot be encoded at all; other control characters are never speech. Tab, line breaks, form and vertical feeds (as
text extracted from a document holds them) pass."""

from __future__ import annotations

import re
from typing import Any

# C0 controls but \t \n \v \f \r, DEL, and lone surrogates.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")


def problem_in(text: str) -> str | None:
    """What is wrong with `text` (the first bad character and where), or None."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    char = match.group()
    kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return f"{kind} (U+{ord(char):04X}) at character {match.start()}"


def unstorable(value: Any, name: str | None = None) -> tuple[str, str] | None:
    """The first field (top-level name) of a JSON-like value holding text a job cannot store, with what is wrong;
    None when every string (keys included) is clean."""
    if isinstance(value, str):
        problem = problem_in(value)
        return None if problem is None else (name or "body", problem)
    if isinstance(value, dict):
        for key, item in value.items():
            field = name or str(key)
            found = unstorable(key, field) if isinstance(key, str) else None
            found = found or unstorable(item, field)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = unstorable(item, name)
            if found is not None:
                return found
    return None
