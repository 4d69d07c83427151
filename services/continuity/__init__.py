"""Continuity: recent syntheses remembered per API key, request stitching (`previous_request_ids`) and keeping a
voice (`from_request_id`).

- `records`: what is remembered of one request (globals, the end of its speech and its words; no audio);
- `stores`: PostgreSQL / Supabase (shared by containers) or a per-process cache;
- `service`: remember, find for a key, build the stitched voice and check its prefix's prompt room.
"""

from services.continuity.records import RecentRequest
from services.continuity.service import MAX_PREVIOUS_REQUESTS, Continuity
from services.continuity.stores import (
    MemoryRecentStore,
    PostgresRecentStore,
    RecentRequestStore,
    SupabaseRecentStore,
    build_recent_store,
)

__all__ = [
    "MAX_PREVIOUS_REQUESTS",
    "Continuity",
    "MemoryRecentStore",
    "PostgresRecentStore",
    "RecentRequest",
    "RecentRequestStore",
    "SupabaseRecentStore",
    "build_recent_store",
]
