"""JSON text that decodes to a lone UTF-16 surrogate (`"\\ud800"` with no low half after it): Python keeps it in a
`str`, but nothing downstream can encode it (PostgreSQL refuses it as text, UTF-8 cannot write it), so a voice
design's name carrying one was generated and charged before its row was refused. Refused as the body arrives
(api.middleware.BodySizeLimitMiddleware), in one pass over the escapes."""

from __future__ import annotations

import re

# An escaped backslash (consumed whole, so `\\\\ud800` is text, not an escape) or a surrogate's escape.
_ESCAPES = re.compile(rb"\\\\|\\u[dD]([89abAB]|[c-fC-F])[0-9a-fA-F]{2}")


def has_lone_surrogate(body: bytes) -> bool:
    """Whether JSON `body` escapes a surrogate that is not one half of a pair."""
    if b"\\u" not in body:
        return False
    waiting_at = -1  # where a high surrogate's escape ended: a low one must start exactly there
    for match in _ESCAPES.finditer(body):
        half = match.group(1)
        if waiting_at >= 0 and not (half is not None and half in b"cdefCDEF" and match.start() == waiting_at):
            return True  # a high surrogate not followed by a low one
        if half is None:
            waiting_at = -1
        elif half in b"89abAB":
            waiting_at = match.end()
        elif waiting_at < 0:
            return True  # a low surrogate with no high one before it
        else:
            waiting_at = -1
    return waiting_at >= 0
