"""Voice records and the stores that keep them: the local file store on disk. The Supabase store at its HTTP
boundary is in tests/integration/test_voice_store_server.py, the PostgreSQL store against the real server in
tests/integration/test_voice_store_pg.py; `check_store` is shared with both."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.voice_library import VoiceRecord, VoiceRecordError, is_custom_voice_id, new_voice_id
from services.voice_library.file_store import FileVoiceStore
from services.voice_library.store import VoiceStore, VoiceStoreUnavailable

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def record(
    owner: str = "key_a", *, minutes: int = 0, transcript: str | None = "Hello there.", **fields
) -> VoiceRecord:
    values = {
        "voice_id": new_voice_id(),
        "name": "My voice",
        "owner_key_id": owner,
        "global_tokens": tuple(range(32)),
        "created_at": T0 + timedelta(minutes=minutes),
        "semantic_tokens": (1, 2, 8191) if transcript else None,
        "transcript": transcript,
        "consent": "Recorded by me, of me.",
        "reference_seconds": 3.25,
        "audio_sha256": "ab" * 32,
        **fields,
    }
    return VoiceRecord(**values)


# --- records -------------------------------------------------------------------------------------------


def test_ids_are_random_hex_and_skip_taken_names() -> None:
    ids = {new_voice_id() for _ in range(100)}
    assert len(ids) == 100 and all(is_custom_voice_id(i) and len(i) == 38 for i in ids)
    assert (
        not is_custom_voice_id("default")
        and not is_custom_voice_id("voice_../../etc")
        and not is_custom_voice_id(None)
    )

    class Taken:
        calls = 0

        def __contains__(self, name: object) -> bool:
            Taken.calls += 1
            return Taken.calls == 1  # the first draw clashes with a built-in name

    assert is_custom_voice_id(new_voice_id(Taken())) and Taken.calls == 2


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"global_tokens": tuple(range(31))}, "global_tokens"),
        ({"global_tokens": (4096,) * 32}, "global_tokens"),
        ({"semantic_tokens": (8192,)}, "semantic_tokens"),
        ({"transcript": "x" * 1001}, "transcript"),
        ({"voice_id": "voice_nothex"}, "id"),
        ({"audio_sha256": "XYZ"}, "audio_sha256"),
        ({"owner_key_id": ""}, "owner_key_id"),
    ],
)
def test_records_refuse_bad_fields_naming_them(fields: dict, field: str) -> None:
    with pytest.raises(VoiceRecordError) as info:
        record(**fields)
    assert info.value.field == field


def test_records_round_trip_through_rows_and_become_voices() -> None:
    rec = record()
    assert (
        VoiceRecord.from_row(rec.to_row())
        == rec
        == VoiceRecord.from_row(json.loads(json.dumps(rec.to_json_row())))
    )
    voice = rec.to_voice()
    assert voice.id == rec.voice_id and voice.global_tokens == rec.global_tokens and voice.continuation
    assert voice.reference_text == "Hello there." and voice.reference_semantic == (1, 2, 8191)
    plain = record(transcript=None).to_voice()
    assert plain.kind == "global_tokens" and not plain.continuation and plain.parse_mode == "clone"


# --- the contract every store keeps ---------------------------------------------------------------------


async def check_store(store: VoiceStore, other: VoiceStore | None = None) -> None:
    """Insert, read, list by owner (oldest first), delete with and without an owner; `other` is a second
    instance on the same backend (another container): it sees creates and deletes at once."""
    other = other or store
    a1, a2, b1 = (
        record("key_a", minutes=1),
        record("key_a", minutes=0, transcript=None),
        record("key_b", minutes=2),
    )
    for rec in (a1, a2, b1):
        await store.insert(rec)
    assert await other.get(a1.voice_id) == a1
    assert await other.get(new_voice_id()) is None
    assert [r.voice_id for r in await other.list("key_a")] == [a2.voice_id, a1.voice_id]
    assert [
        r.voice_id for r in await other.list(None) if r.voice_id in {a1.voice_id, a2.voice_id, b1.voice_id}
    ] == [a2.voice_id, a1.voice_id, b1.voice_id]
    assert await other.list("key_nobody") == []
    assert not await other.delete(a1.voice_id, "key_b")  # not b's voice: nothing deleted
    assert await store.get(a1.voice_id) == a1
    assert await other.delete(a1.voice_id, "key_a")
    assert await store.get(a1.voice_id) is None
    assert not await store.delete(a1.voice_id, "key_a")  # already gone
    assert await store.delete(b1.voice_id, None)  # the admin deletes any voice
    assert await store.delete(a2.voice_id, None)
    assert await store.list("key_a") == [] and await store.get(b1.voice_id) is None


async def test_file_store_keeps_the_contract(tmp_path: Path) -> None:
    await check_store(FileVoiceStore(tmp_path / "voices"), FileVoiceStore(tmp_path / "voices"))


async def test_file_store_writes_whole_files_only_and_never_leaves_temporaries(
    tmp_path: Path, monkeypatch
) -> None:
    store = FileVoiceStore(tmp_path)
    rec = record()
    await store.insert(rec)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{rec.voice_id}.json"]
    assert json.loads((tmp_path / f"{rec.voice_id}.json").read_text())["global_tokens"] == list(range(32))

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("shared.files.os.replace", disk_full)
    with pytest.raises(VoiceStoreUnavailable) as info:
        await store.insert(record())
    assert info.value.code == "SERVICE_UNAVAILABLE" and info.value.retry_after
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{rec.voice_id}.json"]  # no half-written record


async def test_file_store_ignores_foreign_names_and_skips_unreadable_files(tmp_path: Path) -> None:
    store = FileVoiceStore(tmp_path)
    (tmp_path / "passwd.json").write_text("{}")
    assert await store.get("../passwd") is None and await store.get("passwd") is None
    assert not await store.delete("../passwd", None) and (tmp_path / "passwd.json").exists()
    (tmp_path / f"{new_voice_id()}.json").write_text("{not json")
    rec = record()
    await store.insert(rec)
    assert await store.list(None) == [rec]
    assert await FileVoiceStore(tmp_path / "missing").list(None) == []
