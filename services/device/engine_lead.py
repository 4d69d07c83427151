"""When admission may leave the codec's measured cost unread: while the engine gives every generating request well
over real time. Off by default (`Admission(engine_lead_pace=...)`, `python -m bench sim load --admission`): it trades held
streams in large bursts for first audio in moderate ones.

Admission's codec cost per stream (rule 3's cap, and the switch of newcomers to the exact first chunk) counts each
call from its dispatch to its end on a device shared with the engine: its own work plus the engine step it queued
behind. An engine far ahead of real time takes whatever the device leaves, so the device reads full while a
newcomer's short first chunk still fits; not reading the cost then keeps first audio short in a moderate burst. But
the exact first chunk is what lets a large burst in, and without the codec's read sustained 48 kHz overload runs
admitted streams dry, so the service reads it always (docs/decisions/codec-seconds-read.md).
"""

from __future__ import annotations

import math

# Real-time multiples of the per-request pace above which the codec's measured cost is not read (inf: always read).
# The measured lead sits just above admission's pace margin (2x real time): higher, a moderate burst's newcomers
# are refused as the pace dips before the lead is reached.
ENGINE_LEAD_PACE = math.inf
MEASURED_LEAD_PACE = 2.2


def engine_leads(pace: float | None, need_tokens_per_s: float, lead: float) -> bool:
    """Whether a measured `pace` (tokens per second per generating request; None: not measured) is at least `lead`
    times the real-time `need_tokens_per_s`."""
    return pace is not None and pace >= lead * need_tokens_per_s
