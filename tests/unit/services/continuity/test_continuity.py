"""Continuity on the demo checkpoint, in-process: every synthesis is remembered per key (globals + the end of its
speech), `previous_request_ids` makes the next prompt continue it, `from_request_id` keeps its voice; every refusal
with its status and field; the tail's bounds; prompt room before any GPU work."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.continuity import MemoryRecentStore, RecentRequest
from services.continuity.service import Continuity
from services.deployment.runtime import ModelRuntime
from services.errors import ServiceError
from services.pipeline.spoken_tail import SpokenTail, TailSegment, cut_segment, tail_of
from shared.settings import Settings
from tests.audio_samples import assert_same_audio, voiced, wav_bytes
from tests.conftest import wait_in_portal

KEY_A, KEY_B = "cont-key-a", "cont-key-b"
A, B = {"Authorization": f"Bearer {KEY_A}"}, {"Authorization": f"Bearer {KEY_B}"}
GLOBALS = tuple(range(7, 39))


# --- the tail: bounded, whole words, in order ------------------------------------------------------------


def test_spoken_tail_keeps_only_the_chunks_the_bound_needs() -> None:
    tail = SpokenTail(max_tokens=10)
    tail.add(0, "One two.", [1] * 8)
    tail.add(1, "Three four.", [2] * 4)
    tail.add(1, "", [2] * 4)  # more ids of the same chunk
    tail.add(2, "Five six.", [3] * 12)
    segments = tail.segments()
    assert [s.text for s in segments] == ["Five six."] and len(segments[0].semantic) == 12


def test_a_cut_keeps_whole_words_and_proportional_ids() -> None:
    segment = TailSegment("alpha beta gamma delta", tuple(range(100)))
    part = cut_segment(segment, 40)
    assert part is not None and part.text == "delta" and part.semantic == tuple(range(100 - 23, 100))
    assert cut_segment(segment, 100) == segment
    assert cut_segment(TailSegment("word", (1, 2, 3)), 1) is None  # one word longer than the room
    cjk = cut_segment(TailSegment("你好世界再见", tuple(range(60))), 20)
    assert cjk is not None and cjk.text == "再见" and len(cjk.semantic) == 20


def test_tail_of_several_segments_joins_them_in_order_within_the_bound() -> None:
    segments = [TailSegment("First one.", (1,) * 30), TailSegment("Second.", (2,) * 20)]
    tail = tail_of(segments, 60)
    assert tail == TailSegment("First one. Second.", (1,) * 30 + (2,) * 20)
    cut = tail_of(segments, 35)
    assert (
        cut is not None
        and cut.text == "one. Second."
        and len(cut.semantic) <= 35
        and cut.semantic[-20:] == (2,) * 20
    )
    assert tail_of([], 10) is None


# --- the store and its refusals ----------------------------------------------------------------------------


def record(
    request_id: str,
    owner: str = "key_a",
    *,
    expires_in_s: float = 60.0,
    tail: int = 20,
    voice_id: str = "fixed",
    globals_: tuple[int, ...] = GLOBALS,
) -> RecentRequest:
    now = datetime.now(UTC)
    return RecentRequest(
        request_id=request_id,
        owner_key_id=owner,
        voice_id=voice_id,
        global_tokens=globals_,
        tail_text="the end of it." if tail else None,
        tail_semantic=tuple(range(tail)) if tail else None,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in_s),
    )


async def test_memory_store_forgets_after_retention_and_beyond_its_size() -> None:
    now = [datetime.now(UTC)]
    store = MemoryRecentStore(max_requests=2, clock=lambda: now[0])
    await store.put(record("r1"))
    assert (await store.get("r1")) is not None
    now[0] += timedelta(seconds=61)
    assert await store.get("r1") is None
    await store.put(record("r2", expires_in_s=3600))
    await store.put(record("r3", expires_in_s=3600))
    await store.put(record("r4", expires_in_s=3600))
    assert await store.get("r2") is None and await store.get("r4") is not None


def test_records_hold_no_more_than_the_bound() -> None:
    with pytest.raises(ValueError):
        record("big", tail=301)
    with pytest.raises(ValueError):
        RecentRequest(
            request_id="x",
            owner_key_id="k",
            voice_id="v",
            global_tokens=GLOBALS,
            tail_text="t",
            tail_semantic=None,
            created_at=datetime.now(UTC),
            expires_at=datetime.now(UTC),
        )


# --- over HTTP -------------------------------------------------------------------------------------------------


class RecordingEngine:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.prompts: list[list[int]] = []

    def stream(self, prompt_ids, sampling, request_id):
        self.prompts.append(list(prompt_ids))
        return self.engine.stream(prompt_ids, sampling, request_id)

    def __getattr__(self, name):
        return getattr(self.engine, name)


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys=f"{KEY_A},{KEY_B}",
        warmup=False,
        log_json=False,
        sr_enabled=False,
        voice_dir=tmp_path_factory.mktemp("voices"),
        default_max_tokens=60,
        rate_limit_per_minute=10_000,
        max_model_len=1024,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        runtime.engine = RecordingEngine(runtime.engine)
        yield test_client


def continuity(client: TestClient) -> Continuity:
    return client.app.state.services.speech.continuity


def prompts(client: TestClient) -> list[list[int]]:
    return client.app.state.runtime.engine.prompts


def generate(client: TestClient, text: str, headers: dict = A, **fields):
    body = {"text": text, "speaker": "fixed", "seed": 5, **fields}
    return client.post("/v1/tts/generate", json=body, headers=headers)


def remembered(client: TestClient, request_id: str) -> RecentRequest:
    found = client.portal.call(continuity(client).store.get, request_id)
    assert found is not None
    return found


def ids_of(client: TestClient, *tokens: str) -> list[int]:
    tok = client.app.state.runtime.tokenizer.convert_tokens_to_ids
    return [tok(t) for t in tokens]


def test_every_synthesis_is_remembered_with_its_globals_and_the_end_of_its_speech(client: TestClient) -> None:
    response = generate(client, "Hello there, this is the first part.")
    assert response.status_code == 200, response.text
    found = remembered(client, response.headers["X-Server-Request-ID"])
    voices = client.app.state.runtime.voices
    assert found.global_tokens == voices.resolve("fixed").global_tokens and found.voice_id == "fixed"
    assert found.tail_text and 0 < len(found.tail_semantic or ()) <= 200  # TTS_CONTINUITY_PREFIX_S=4: 200 ids
    assert found.tail_text in "Hello there, this is the first part."


def test_a_stitched_request_continues_the_previous_one(client: TestClient) -> None:
    first = generate(client, "Hello there, this is the first part.")
    previous = remembered(client, first.headers["X-Server-Request-ID"])
    before = len(prompts(client))
    second = generate(
        client,
        "And this is the second.",
        previous_request_ids=[previous.request_id],
        previous_text="ignored",
        next_text="not spoken",
    )
    assert second.status_code == 200, second.text
    prompt = prompts(client)[before]
    runtime = client.app.state.runtime
    start_content, end_content = ids_of(client, "<|start_content|>", "<|end_content|>")
    content = runtime.tokenizer.decode(prompt[prompt.index(start_content) + 1 : prompt.index(end_content)])
    assert content == f"{previous.tail_text} And this is the second."  # next_text is never in the prompt
    globals_ = ids_of(client, *(f"<|bicodec_global_{g}|>" for g in previous.global_tokens))
    assert globals_ == prompt[prompt.index(end_content) + 2 : prompt.index(end_content) + 34]
    tail = ids_of(
        client, "<|start_semantic_token|>", *(f"<|bicodec_semantic_{s}|>" for s in previous.tail_semantic)
    )
    assert prompt[-len(tail) :] == tail
    # The stitched request is remembered in turn, with the same voice: a chain keeps one voice.
    assert remembered(client, second.headers["X-Server-Request-ID"]).global_tokens == previous.global_tokens


def test_the_openai_route_takes_the_stitching_fields_as_extra_body(client: TestClient) -> None:
    first = generate(client, "Some words first.")
    before = len(prompts(client))
    response = client.post(
        "/v1/audio/speech",
        headers=A,
        json={
            "input": "Then more.",
            "voice": "fixed",
            "response_format": "wav",
            "previous_request_ids": [first.headers["X-Server-Request-ID"]],
            "next_text": "later",
        },
    )
    assert response.status_code == 200, response.text
    assert (
        prompts(client)[before][-1]
        == remembered(client, first.headers["X-Server-Request-ID"]).tail_semantic[-1]
        + ids_of(client, "<|bicodec_semantic_0|>")[0]
    )


def error_of(response) -> dict:
    return response.json()["error"]


def test_refusals_name_the_field_and_never_fall_back(client: TestClient) -> None:
    first = generate(client, "Mine alone.")
    request_id = first.headers["X-Server-Request-ID"]
    before = len(prompts(client))
    unknown = generate(client, "Next.", previous_request_ids=["0" * 32])
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "REQUEST_NOT_FOUND"
    assert error_of(unknown)["param"] == "previous_request_ids"
    other_key = generate(client, "Next.", headers=B, previous_request_ids=[request_id])
    assert other_key.status_code == 404 and error_of(other_key)["code"] == "REQUEST_NOT_FOUND"
    too_many = generate(client, "Next.", previous_request_ids=[request_id] * 4)
    assert too_many.status_code == 400 and error_of(too_many)["param"] == "previous_request_ids"
    bad_id = generate(client, "Next.", previous_request_ids=["../x y"])
    assert bad_id.status_code == 400 and error_of(bad_id)["param"] == "previous_request_ids"
    other_voice = generate(client, "Next.", speaker="male", previous_request_ids=[request_id])
    assert other_voice.status_code == 400 and error_of(other_voice)["param"] == "speaker"
    reference = client.post(
        "/v1/tts/generate",
        headers=A,
        json={
            "text": "Next.",
            "reference_audio": base64.b64encode(wav_bytes(voiced(2.0))).decode(),
            "previous_request_ids": [request_id],
        },
    )
    assert reference.status_code == 400 and error_of(reference)["param"] == "previous_request_ids"
    assert len(prompts(client)) == before  # no GPU work for any of them
    # Without a voice named, the previous request's voice is used.
    assert (
        client.post(
            "/v1/tts/generate", headers=A, json={"text": "Next.", "previous_request_ids": [request_id]}
        ).status_code
        == 200
    )


def test_requests_of_different_voices_are_not_stitched_together(client: TestClient) -> None:
    one = generate(client, "Fixed voice.")
    other = client.portal.call(
        continuity(client).store.put,
        record(
            "othervoice",
            owner=remembered(client, one.headers["X-Server-Request-ID"]).owner_key_id,
            globals_=tuple(range(1, 33)),
        ),
    )
    assert other is None
    response = generate(
        client, "Both?", previous_request_ids=["othervoice", one.headers["X-Server-Request-ID"]]
    )
    assert response.status_code == 400 and "different voices" in error_of(response)["message"]


def test_a_stitched_prompt_that_cannot_fit_is_refused_before_any_gpu_work(client: TestClient) -> None:
    owner = remembered(client, generate(client, "Owner probe.").headers["X-Server-Request-ID"]).owner_key_id
    client.portal.call(continuity(client).store.put, record("long-tail", owner=owner, tail=300))
    before = len(prompts(client))
    # 1024 tokens: the 4 s prefix (~220 prompt ids) fits, but beside 900 characters of text it does not, while the
    # text alone would: the refusal names previous_request_ids.
    response = generate(client, "x" * 900, chunking=False, previous_request_ids=["long-tail"])
    assert response.status_code == 413 and error_of(response)["param"] == "previous_request_ids"
    assert len(prompts(client)) == before


def test_keep_a_voice_from_a_request_speaks_with_exactly_its_globals(client: TestClient) -> None:
    text = "Keep this voice for me."
    original = generate(client, text, speaker="default")  # a style voice: the model invents the globals
    request_id = original.headers["X-Server-Request-ID"]
    invented = remembered(client, request_id).global_tokens
    kept = client.post("/v1/audio/voices", headers=A, json={"from_request_id": request_id, "name": "Liked"})
    assert kept.status_code == 201, kept.text
    voice = kept.json()
    assert voice["global_tokens"] == list(invented) and "semantic_tokens" not in voice
    before = len(prompts(client))
    again = generate(client, text, speaker=voice["id"])
    assert again.status_code == 200
    globals_ = ids_of(client, *(f"<|bicodec_global_{g}|>" for g in invented))
    assert prompts(client)[before][-34:-2] == globals_  # ... <|end_global_token|><|start_semantic_token|>
    # Another key cannot keep it; the request id is not theirs.
    refused = client.post("/v1/audio/voices", headers=B, json={"from_request_id": request_id, "name": "Mine"})
    assert refused.status_code == 404 and error_of(refused)["param"] == "from_request_id"


def test_a_kept_voice_gives_the_same_audio_as_the_original_with_the_same_seed(client: TestClient) -> None:
    text = "The same words again."
    original = generate(client, text)  # "fixed": a clone prompt with its globals
    kept = client.post(
        "/v1/audio/voices",
        headers=A,
        json={"from_request_id": original.headers["X-Server-Request-ID"], "name": "Same"},
    ).json()
    again = generate(client, text, speaker=kept["id"])
    assert again.status_code == 200 and again.content == original.content and len(original.content) > 44


# --- the service: running, expired ----------------------------------------------------------------------------


async def test_a_running_request_is_409_and_an_expired_one_404(demo_model_dir: Path) -> None:
    from services.pipeline.synthesis import SamplingOptions, SynthesisJob, SynthesisRequest

    settings = Settings(
        model_dir=demo_model_dir, warmup=False, auth_enabled=False, sr_enabled=False, log_json=False
    )
    runtime = ModelRuntime(settings)
    await runtime.start()
    try:
        now = [datetime.now(UTC)]
        service = Continuity(settings, runtime, MemoryRecentStore(clock=lambda: now[0]))
        voice = runtime.voices.resolve("fixed")
        job = SynthesisJob.planned(
            runtime.pipeline_resources(),
            SynthesisRequest(
                request_id="run1",
                text="Hello there.",
                voice=voice,
                sampling=SamplingOptions.with_defaults(settings, seed=1, max_tokens=30),
            ),
        )
        service.track(job, None)
        with pytest.raises(ServiceError) as running:
            await service.find("run1", None)
        assert running.value.code == "REQUEST_NOT_FINISHED" and running.value.param == "previous_request_ids"
        await job.collect()
        assert (await service.find("run1", None)).global_tokens == voice.global_tokens
        with pytest.raises(ServiceError) as other:
            await service.find("run1", "key_b")
        assert other.value.code == "REQUEST_NOT_FOUND"
        # From the real now: the record's expiry counts from when the job finished, which a loaded machine makes late.
        now[0] = datetime.now(UTC) + timedelta(seconds=settings.continuity.continuity_retention_s + 1)
        with pytest.raises(ServiceError) as expired:
            await service.find("run1", None)
        assert expired.value.code == "REQUEST_NOT_FOUND" and "2 h" in expired.value.message
        # A cancelled job is never remembered and stops reading as running.
        cancelled = SynthesisJob.planned(
            runtime.pipeline_resources(),
            SynthesisRequest(
                request_id="run2",
                text="Hello.",
                voice=voice,
                sampling=SamplingOptions.with_defaults(settings, seed=1),
            ),
        )
        service.track(cancelled, None)
        stream = cancelled.stream_bytes()
        await anext(stream)
        await stream.aclose()
        await asyncio.sleep(0)
        with pytest.raises(ServiceError) as gone:
            await service.find("run2", None)
        assert gone.value.code == "REQUEST_NOT_FOUND"
    finally:
        await runtime.shutdown()


def test_segments_of_one_websocket_utterance_keep_the_first_segments_voice(client: TestClient) -> None:
    """A WebSocket utterance is one incremental job (services.sessions.ws_session.Utterance): every segment after
    the first is prompted with the 32 globals the first one generated (a style voice invents them)."""
    from services.pipeline.synthesis import SamplingOptions, SynthesisJob, SynthesisRequest

    runtime = client.app.state.runtime
    request = SynthesisRequest(
        request_id="ws-utt",
        text="",
        voice=runtime.voices.resolve("default"),
        sampling=SamplingOptions.with_defaults(runtime.settings, seed=8, max_tokens=30),
    )

    async def run() -> SynthesisJob:
        job = SynthesisJob.fed(runtime.pipeline_resources(), request)
        job.feed_text("First segment arrives.")
        job.feed_text("Then the second one.")
        job.feed_text("And a third.")
        job.close_text()
        await job.collect()
        return job

    before = len(prompts(client))
    job = client.portal.call(run)
    sent = prompts(client)[before:]
    assert len(sent) == 3 and job.global_tokens is not None
    assert ids_of(client, "<|task_controllable_tts|>")[0] in sent[0]  # the first invents the voice
    globals_ = ids_of(client, *(f"<|bicodec_global_{g}|>" for g in job.global_tokens))
    for later in sent[1:]:
        assert later[-34:-2] == globals_
    assert len(set(job.stats.global_tokens_per_chunk)) == 1


def test_a_websocket_utterance_is_remembered_under_its_request_id(client: TestClient) -> None:
    with client.websocket_connect("/v1/tts/ws", headers=A) as ws:
        ws.send_json({"text": "Spoken over the socket.", "speaker": "fixed", "seed": 4})
        while True:
            message = ws.receive()
            if message.get("text") and '"done"' in message["text"]:
                done = json.loads(message["text"])
                break
    found = remembered(client, done["request_id"])
    assert found.voice_id == "fixed" and found.tail_text
    continued = generate(client, "And over HTTP.", previous_request_ids=[done["request_id"]])
    assert continued.status_code == 200, continued.text
    other = generate(client, "Not mine.", headers=B, previous_request_ids=[done["request_id"]])
    assert other.status_code == 404


def test_a_prefix_that_leaves_no_room_to_speak_is_413_naming_previous_request_ids() -> None:
    from core.voices import Voice
    from services.continuity.service import check_prefix_fits
    from services.errors import SynthesisError
    from tests.unit.services.pipeline.test_continuation_prompts import Runtime

    voice = Voice(
        id="fixed",
        name="f",
        kind="global_tokens",
        global_tokens=GLOBALS,
        reference_text="the end of it.",
        reference_semantic=tuple(range(200)),
    )
    with pytest.raises(SynthesisError) as info:
        check_prefix_fits(Runtime(Settings(max_model_len=400)), voice)  # type: ignore[arg-type]
    assert info.value.code == "TEXT_TOO_LONG" and info.value.param == "previous_request_ids"
    check_prefix_fits(Runtime(Settings(max_model_len=1024)), voice)  # type: ignore[arg-type]


def test_concurrent_continuations_of_one_request_equal_the_solo_one(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    request_id = generate(client, "One shared beginning.").headers["X-Server-Request-ID"]
    body = {"text": "Each goes on from here.", "previous_request_ids": [request_id], "seed": 12}
    solo = client.post("/v1/tts/generate", headers=A, json=body)
    assert solo.status_code == 200
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda _: client.post("/v1/tts/generate", headers=A, json=body), range(3)))
    assert [r.status_code for r in together] == [200, 200, 200]
    # The same continuation (voice, tail, seed) in every answer, within the codec's tolerance (`assert_same_audio`).
    for answer in together:
        assert_same_audio(answer.content, solo.content)
