"""What continuity remembers of one finished synthesis (`RecentRequest`), and its rows in the stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.tokens import GLOBAL_CODEBOOK_SIZE, NUM_GLOBAL_TOKENS, SEMANTIC_CODEBOOK_SIZE

ANONYMOUS = "-"  # the owner of requests made with authentication off
MAX_TAIL_TOKENS = 300  # 6 s: the most TTS_CONTINUITY_PREFIX_S allows (and the table's check)
MAX_TAIL_CHARS = 1000
COLUMNS = (
    "request_id",
    "owner_key_id",
    "voice_id",
    "global_tokens",
    "tail_text",
    "tail_semantic",
    "created_at",
    "expires_at",
)


@dataclass(frozen=True)
class RecentRequest:
    """One finished synthesis: its voice (32 global tokens) and the end of its speech (`tail_semantic`, 50 ids a
    second) with the words that end speaks (`tail_text`); both tail fields or neither. No audio, no other text."""

    request_id: str
    owner_key_id: str
    voice_id: str
    global_tokens: tuple[int, ...]
    tail_text: str | None
    tail_semantic: tuple[int, ...] | None
    created_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        if len(self.global_tokens) != NUM_GLOBAL_TOKENS or not all(
            0 <= g < GLOBAL_CODEBOOK_SIZE for g in self.global_tokens
        ):
            raise ValueError(f"a recent request needs {NUM_GLOBAL_TOKENS} global tokens in 0..4095")
        if (self.tail_text is None) != (self.tail_semantic is None):
            raise ValueError("tail_text and tail_semantic come together")
        if self.tail_semantic is not None and (
            not 0 < len(self.tail_semantic) <= MAX_TAIL_TOKENS
            or not all(0 <= s < SEMANTIC_CODEBOOK_SIZE for s in self.tail_semantic)
        ):
            raise ValueError(f"tail_semantic must be 1..{MAX_TAIL_TOKENS} ids in 0..8191")
        if self.tail_text is not None and not 0 < len(self.tail_text) <= MAX_TAIL_CHARS:
            raise ValueError(f"tail_text must be 1..{MAX_TAIL_CHARS} characters")

    def owned_by(self, key_id: str | None) -> bool:
        return self.owner_key_id == (key_id or ANONYMOUS)

    def to_row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "owner_key_id": self.owner_key_id,
            "voice_id": self.voice_id,
            "global_tokens": list(self.global_tokens),
            "tail_text": self.tail_text,
            "tail_semantic": None if self.tail_semantic is None else list(self.tail_semantic),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }

    def to_json_row(self) -> dict[str, Any]:
        """For PostgREST (Supabase): timestamps as ISO 8601."""
        row = self.to_row()
        row["created_at"] = self.created_at.isoformat()
        row["expires_at"] = self.expires_at.isoformat()
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RecentRequest:
        def when(value: Any) -> datetime:
            return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

        semantic = row.get("tail_semantic")
        return cls(
            request_id=row["request_id"],
            owner_key_id=row["owner_key_id"],
            voice_id=row["voice_id"],
            global_tokens=tuple(int(g) for g in row["global_tokens"]),
            tail_text=row.get("tail_text"),
            tail_semantic=None if semantic is None else tuple(int(s) for s in semantic),
            created_at=when(row["created_at"]),
            expires_at=when(row["expires_at"]),
        )
