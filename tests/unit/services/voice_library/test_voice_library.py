"""The voice library service on the file store, with a fake encoder (a deterministic function of the samples):
ownership, the LRU of encoded references, the per-process encode limit, the TTL of synthesis lookups, and that a
failure at any step leaves nothing behind."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.clone import ReferenceTokens, decode_reference_audio
from core.demo.checkpoint import build_tokenizer
from core.voices import VoiceRegistry
from services.errors import ServiceError
from services.voice_library import Caller, NewVoice, VoiceLibrary, new_voice_id
from services.voice_library.file_store import FileVoiceStore
from services.voice_library.references import References
from shared.settings import Settings
from tests.audio_samples import voiced, wav_bytes

A, B = Caller("key_a"), Caller("key_b")
ADMIN = Caller(None, admin=True)
TOKENIZER = build_tokenizer()


def fake_tokens(samples: np.ndarray, semantic: bool) -> ReferenceTokens:
    """Deterministic in the samples: the same audio gives the same voice; ~50 semantic ids a second."""
    seed = int(np.abs(samples).sum() * 1000) % 100_000
    globals_ = tuple((seed + 37 * i) % 4096 for i in range(32))
    ids = tuple((seed + i) % 8192 for i in range(samples.size // 320)) if semantic else None
    return ReferenceTokens(globals_, ids)


@dataclass
class FakeRuntime:
    """What the library uses of ModelRuntime (a ModelSource and a ReferenceEncoding); `encode_reference` is the fake
    above, counting its calls. `pipeline_resources()` is itself: it carries what the prompt checks read."""

    settings: Settings = field(default_factory=Settings)
    tokenizer: Any = TOKENIZER
    added_token_ids: Any = None
    voices: VoiceRegistry = field(default_factory=VoiceRegistry.builtin)
    ready: bool = True
    state_name: str = "ready"
    cloning_unavailable_reason: str | None = None
    calls: list[bool] = field(default_factory=list)
    delay_s: float = 0.0
    running: int = 0
    most_running: int = 0
    fail: Exception | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pipeline_resources(self) -> FakeRuntime:
        return self

    def encode_reference(self, samples: np.ndarray, *, semantic: bool = True, stop=None) -> ReferenceTokens:
        with self.lock:
            self.calls.append(semantic)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(self.delay_s)
            if self.fail is not None:
                raise self.fail
            return fake_tokens(samples, semantic)
        finally:
            with self.lock:
                self.running -= 1


def make_library(directory: Path, runtime: FakeRuntime | None = None, **settings: Any) -> VoiceLibrary:
    runtime = runtime or FakeRuntime()
    runtime.settings = Settings(voice_dir=directory, **settings)
    return VoiceLibrary.from_settings(runtime.settings, runtime, runtime)  # type: ignore[arg-type]


def audio(seconds: float = 3.0, seed: int = 0) -> bytes:
    return wav_bytes(voiced(seconds, seed=seed))


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_create_encodes_once_and_stores_the_voice_for_its_key(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    data = audio()
    record = await library.create(
        NewVoice(" Mine ", "Hello there, this is my voice.", "I agreed."), data, "key_a"
    )
    assert record.name == "Mine" and record.owner_key_id == "key_a" and record.continuation
    assert record.reference_seconds == 3.0 and len(record.semantic_tokens or ()) == 150
    assert record.global_tokens == fake_tokens(decode_reference_audio(data).samples, True).global_tokens
    assert files(tmp_path) == [f"{record.voice_id}.json"]
    assert await library.get(record.voice_id, A) == record
    plain = await library.create(NewVoice("No transcript"), audio(seed=1), "key_a")
    assert (
        plain.semantic_tokens is None and plain.transcript is None
    )  # semantic ids only when they will be used
    assert library.models.calls == [True, False]  # type: ignore[attr-defined]


async def test_other_keys_get_404_and_the_admin_sees_and_deletes_everything(tmp_path: Path) -> None:
    library = make_library(tmp_path)
    mine = await library.create(NewVoice("a"), audio(), "key_a")
    theirs = await library.create(NewVoice("b"), audio(seed=2), "key_b")
    for call in (
        library.get(mine.voice_id, B),
        library.delete(mine.voice_id, B),
        library.voice_for(mine.voice_id, "key_b"),
    ):
        with pytest.raises(ServiceError) as info:
            await call
        assert info.value.code == "VOICE_NOT_FOUND"  # never 403: the id's existence does not leak
    assert [r.voice_id for r in await library.list(A)] == [mine.voice_id]
    assert {r.voice_id for r in await library.list(ADMIN)} == {mine.voice_id, theirs.voice_id}
    assert await library.list(Caller(None)) == []
    assert (await library.voice_for(mine.voice_id, "key_a")).global_tokens == mine.global_tokens
    await library.delete(theirs.voice_id, ADMIN)
    assert files(tmp_path) == [f"{mine.voice_id}.json"]


async def test_a_repeated_reference_costs_one_encode_and_the_lru_is_bounded(tmp_path: Path) -> None:
    library = make_library(tmp_path, clone_reference_cache_size=2)
    calls = library.models.calls  # type: ignore[attr-defined]
    first = await library.reference_voice(audio(), "Hello there, this is me.")
    again = await library.reference_voice(audio(), "Hello there, this is me.")
    assert first == again and first.continuation and first.id.startswith("ref_") and calls == [True]
    # Globals only: the cached entry with semantic ids answers too (no second encode).
    assert (await library.reference_voice(audio(), None)).global_tokens == first.global_tokens and calls == [
        True
    ]
    await library.reference_voice(audio(seed=1), None)
    await library.reference_voice(audio(seed=2), None)  # evicts the oldest (seed 0)
    assert len(library.references.cache) == 2
    await library.reference_voice(audio(), None)
    assert calls == [True, False, False, False]
    # A saved voice made from bytes its key sent before reuses the encoding as well.
    await library.reference_voice(audio(seed=3), None, key_id="key_a")
    await library.create(NewVoice("x"), audio(seed=3), "key_a")
    assert len(calls) == 5


async def test_one_keys_request_never_hits_another_keys_cached_reference(tmp_path: Path) -> None:
    """The cache is private to each key: key B sending a recording key A already used is encoded afresh (a hit
    would answer faster and tell B that someone on this server had used that recording)."""
    library = make_library(tmp_path)
    calls = library.models.calls  # type: ignore[attr-defined]
    first = await library.reference_voice(audio(), "Hello there, this is me.", key_id="key_a")
    assert calls == [True]
    theirs = await library.reference_voice(audio(), "Hello there, this is me.", key_id="key_b")
    assert calls == [True, True] and theirs.global_tokens == first.global_tokens
    await library.create(NewVoice("b's"), audio(), "key_b")  # B's own entry now answers B
    await library.reference_voice(audio(), None)  # an internal caller (no key) has its own entries too
    assert calls == [True, True, False]
    assert len(library.references.cache) == 3


async def test_encodes_run_in_threads_at_most_n_at_a_time(tmp_path: Path) -> None:
    runtime = FakeRuntime(delay_s=0.2)
    library = make_library(tmp_path, runtime, clone_max_concurrent_encodes=2)
    ticks = 0

    async def ticker() -> None:  # the event loop keeps running while encodes block their threads
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(library.reference_voice(audio(seed=s), None) for s in range(6)))
    task.cancel()
    assert len(runtime.calls) == 6 and runtime.most_running == 2 and ticks > 30


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("not audio", "INVALID_AUDIO"),
        ("too short", "AUDIO_TOO_SHORT"),
        ("too long", "AUDIO_TOO_LONG"),
        ("silent", "AUDIO_SILENT"),
        ("encoder fails", None),
        ("store fails", "SERVICE_UNAVAILABLE"),
        ("blank name", "VALIDATION_ERROR"),
        ("long transcript", "VALIDATION_ERROR"),
        ("unavailable", "CLONING_UNAVAILABLE"),
        ("not ready", "MODEL_NOT_LOADED"),
    ],
)
async def test_a_failure_at_any_step_leaves_nothing_behind(
    tmp_path: Path, monkeypatch, case: str, code: str
) -> None:
    runtime = FakeRuntime()
    library = make_library(tmp_path / "voices", runtime)
    data, new = audio(), NewVoice("ok", "Hello there.")
    if case == "not audio":
        data = b"this is not audio at all"
    elif case == "too short":
        data = audio(0.5)
    elif case == "too long":
        data = audio(31.0)
    elif case == "silent":
        data = wav_bytes(np.zeros(48_000, dtype=np.float32))
    elif case == "encoder fails":
        runtime.fail = RuntimeError("boom")
    elif case == "store fails":
        monkeypatch.setattr(
            "shared.files.os.replace",
            lambda *_: (_ for _ in ()).throw(OSError(28, "No space left on device")),
        )
    elif case == "blank name":
        new = NewVoice("   ")
    elif case == "long transcript":
        new = NewVoice("ok", "x" * 1001)
    elif case == "unavailable":
        runtime.cloning_unavailable_reason = "wav2vec2-large-xlsr-53: missing"
    elif case == "not ready":
        runtime.ready = False
    with pytest.raises((ServiceError, RuntimeError)) as info:
        await library.create(new, data, "key_a")
    if code is not None:
        assert isinstance(info.value, ServiceError) and info.value.code == code, info.value
    assert files(tmp_path / "voices") == []  # no record, no temporary file
    if case in ("blank name", "long transcript", "unavailable", "not ready"):
        assert runtime.calls == []  # refused before any encoding


async def test_import_needs_no_encoder_and_checks_the_tokens(tmp_path: Path) -> None:
    runtime = FakeRuntime(cloning_unavailable_reason="no wav2vec2 here")
    library = make_library(tmp_path, runtime)
    tokens = ReferenceTokens(tuple(range(32)), tuple(range(100)))
    record = await library.import_voice(
        NewVoice("moved", "Hello there, moved voice."),
        tokens,
        "key_a",
        reference_seconds=2.0,
        audio_sha256="0" * 64,
    )
    assert record.continuation and record.global_tokens == tuple(range(32)) and runtime.calls == []
    with pytest.raises(ServiceError) as info:
        await library.import_voice(NewVoice("bad"), ReferenceTokens((5000,) * 32), "key_a")
    assert (info.value.code, info.value.param) == ("VALIDATION_ERROR", "global_tokens")
    assert files(tmp_path) == [f"{record.voice_id}.json"]


async def test_synthesis_sees_creates_at_once_and_deletes_within_the_ttl(tmp_path: Path, monkeypatch) -> None:
    here = make_library(tmp_path, voice_cache_ttl_s=5.0)
    there = make_library(tmp_path, voice_cache_ttl_s=5.0)  # another container on the same store
    missing = new_voice_id()
    with pytest.raises(ServiceError):
        await there.voice_for(missing, "key_a")
    record = await here.create(NewVoice("v"), audio(), "key_a")
    assert (await there.voice_for(record.voice_id, "key_a")).id == record.voice_id  # absences are not cached
    clock = [time.monotonic()]
    monkeypatch.setattr("services.voice_library.library.time.monotonic", lambda: clock[0])
    assert (await there.voice_for(record.voice_id, "key_a")).id == record.voice_id
    await here.delete(record.voice_id, A)
    with pytest.raises(ServiceError):  # the deleting container: at once
        await here.voice_for(record.voice_id, "key_a")
    clock[0] += 4.9
    assert (
        await there.voice_for(record.voice_id, "key_a")
    ).id == record.voice_id  # the other: within the TTL
    clock[0] += 0.2
    with pytest.raises(ServiceError) as info:
        await there.voice_for(record.voice_id, "key_a", "voice")
    assert (info.value.code, info.value.param) == ("VOICE_NOT_FOUND", "voice")


async def test_with_no_ttl_every_lookup_reads_the_store(tmp_path: Path) -> None:
    here, there = make_library(tmp_path, voice_cache_ttl_s=0), make_library(tmp_path, voice_cache_ttl_s=0)
    record = await here.create(NewVoice("v"), audio(), "key_a")
    await there.voice_for(record.voice_id, "key_a")
    await here.delete(record.voice_id, A)
    with pytest.raises(ServiceError):
        await there.voice_for(record.voice_id, "key_a")


def test_references_start_with_the_settings_limits() -> None:
    references = References(FakeRuntime(), max_concurrent=3, cache_size=7)  # type: ignore[arg-type]
    assert references.cache.capacity == 7 and references._slots._value == 3
    assert isinstance(make_library(Path("/nonexistent")).store, FileVoiceStore)


async def test_a_deployment_that_stores_no_voices_refuses_before_encoding_and_still_clones_per_request(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime()
    library = make_library(tmp_path, runtime, voice_store="none")
    with pytest.raises(ServiceError) as refused:
        await library.create(NewVoice(name="Asha"), audio(), owner="key_a")
    assert refused.value.code == "VOICE_LIBRARY_UNAVAILABLE" and "TTS_DATABASE_URL" in refused.value.message
    assert runtime.calls == []  # refused before the expensive encode
    assert await library.list(A) == [] and list(tmp_path.iterdir()) == []
    voice = await library.reference_voice(audio(), None)
    assert voice.source == "reference" and runtime.calls == [False]
