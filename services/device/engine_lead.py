"""When admission may leave the codec's measured cost unread: while the engine gives every generating request well
over real time. Off by default (`Admission(engine_lead_pace=...)`, `bench.simulate --admission`): it trades held
streams in large bursts for first audio in moderate ones.

Admission's codec cost per stream (rule 3's cap, and the switch of newcomers to the exact first chunk) counts each
call from its dispatch to its end on a device shared with the engine: its own work plus the engine step it queued
behind. At the H200's graph costs (bench/cost_models/h200-graphs.json) that read 3.3x the codec's own device time
in a burst (`python -m bench.simulate --breakdown`, 250 arrivals within 5 s: 0.0155 against 0.0047 s per
stream-second), where the caps were calibrated at 1.8x (the H100 model). The excess is the engine's run-ahead: an
engine far ahead of real time takes whatever the device leaves, so the device reads full while a newcomer's short
first chunk still fits. At 2.2 (the LLM pace rule and the miss rule still hold) 64 arrivals within 2 s were all
admitted with the short first chunk, first audio p95 188 ms instead of 424, none underrunning; but 250 within 5 s
held 105 instead of 123 and 200 at 48 kHz 67 instead of 72, since the exact first chunk is what lets a large burst
in; and under sustained overload it let admitted streams run dry (`bench.sim_overload`, H100 model: 118 in 63 runs,
all but two at 48 kHz, against none with the default) (docs/benchmarks.md, "Predicted from H200 graph costs").
"""

from __future__ import annotations

import math

# Real-time multiples of the per-request pace above which the codec's measured cost is not read (inf: always read).
# 2.0 is where the exact first chunk pays off at all (`FirstChunkChoices.exact_needs_pace`, first_chunks.py); at
# 2.5, 7 of 64 arrivals within 2 s were refused as the pace dipped; at 2.2 none (bench.simulate, H200 graph costs,
# LLM 0.02 ms per row).
ENGINE_LEAD_PACE = math.inf
MEASURED_LEAD_PACE = 2.2


def engine_leads(pace: float | None, need_tokens_per_s: float, lead: float) -> bool:
    """Whether a measured `pace` (tokens per second per generating request; None: not measured) is at least `lead`
    times the real-time `need_tokens_per_s`."""
    return pace is not None and pace >= lead * need_tokens_per_s
