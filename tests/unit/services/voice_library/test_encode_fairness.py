"""Encoding is bounded and fair: one key's encodes cannot fill the encoder queue, the queue is
bounded, and a wait for the encoder has a deadline. A held encoder (an event the test releases) stands in for a
slow hostile upload; everything else is the real References class with real decoding."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from core.clone import EncodeAbandoned
from services.errors import ServiceError
from services.voice_library.references import References
from tests.audio_samples import voiced, wav_bytes
from tests.unit.services.voice_library.test_voice_library import fake_tokens


class HeldEncoder:
    """Holds its first `held` calls until released; like the real encoder between its stages, a held call that
    sees `stop` set gives up (EncodeAbandoned). Records what each call saw."""

    def __init__(self, held: int = 10**6) -> None:
        self.release = threading.Event()
        self.started = 0
        self.held = held
        self.finished = 0
        self.stopped = 0

    def __call__(self, samples, *, semantic: bool = True, stop=None):
        self.started += 1
        if self.started <= self.held:
            while not self.release.wait(timeout=0.01):
                if stop is not None and stop.is_set():
                    self.stopped += 1
                    raise EncodeAbandoned("stopped between stages")
        self.finished += 1
        return fake_tokens(samples, semantic)


def references(encoder: HeldEncoder, **limits) -> References:
    runtime = SimpleNamespace(cloning_unavailable_reason=None, encode_reference=encoder)
    return References(runtime, max_concurrent=1, cache_size=8, **limits)  # type: ignore[arg-type]


def audio(seed: int) -> bytes:
    return wav_bytes(voiced(2.0, seed=seed))


async def refusal(call) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await call
    return caught.value


async def until(predicate) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_one_key_cannot_queue_a_second_encode_and_others_still_get_in_line() -> None:
    encoder = HeldEncoder()
    refs = references(encoder, max_per_key=1, max_waiting=1, wait_s=30)
    hostile = asyncio.create_task(refs.encode(audio(1), semantic=False, key_id="hostile"))
    await until(lambda: encoder.started == 1)
    second = await refusal(refs.encode(audio(2), semantic=False, key_id="hostile"))
    assert (second.code, second.retry_after) == ("TOO_MANY_CONCURRENT_REQUESTS", 5)  # 429 with Retry-After
    other = asyncio.create_task(refs.encode(audio(3), semantic=False, key_id="other"))  # waits its turn
    await until(lambda: refs._waiting == 1)  # noqa: SLF001 - queued behind the hostile encode
    third = await refusal(refs.encode(audio(4), semantic=False, key_id="third"))  # the queue (1) is full
    assert third.code == "SERVICE_UNAVAILABLE" and third.retry_after
    encoder.release.set()
    assert (await hostile).tokens and (await other).tokens
    assert encoder.started == 2
    # Finished encodes free their places: the hostile key may encode again.
    assert (await refs.encode(audio(5), semantic=False, key_id="hostile")).tokens


async def test_a_wait_for_the_encoder_has_a_deadline() -> None:
    encoder = HeldEncoder()
    refs = references(encoder, max_per_key=1, max_waiting=8, wait_s=0.2)
    busy = asyncio.create_task(refs.encode(audio(1), semantic=False, key_id="a"))
    await until(lambda: encoder.started == 1)
    late = await refusal(refs.encode(audio(2), semantic=False, key_id="b"))
    assert late.code == "SERVICE_UNAVAILABLE" and "busy" in late.message and late.retry_after
    encoder.release.set()
    await busy
    assert (
        await refs.encode(audio(2), semantic=False, key_id="b")
    ).tokens  # places given back after a refusal


def test_a_key_without_credits_never_reaches_the_encoder(demo_model_dir, tmp_path) -> None:
    """Credits are checked before a per-request reference or a voice upload is decoded or encoded (a zero-credit key
    ran the encoder and was refused only after it; voice creation did not look at credits at all)."""
    import base64

    from fastapi.testclient import TestClient

    from api import create_app
    from services.access import AccessServices, Authenticator, StaticKeyStore
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings
    from tests.conftest import wait_in_portal

    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        credits_enabled=True,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        rate_limit_per_minute=10_000,
        voice_dir=tmp_path,
    )
    store = StaticKeyStore()
    store.add_plain_key("broke-key", key_id="broke", credit_balance=0)
    store.add_plain_key("paying-key", key_id="paying", credit_balance=10_000)
    runtime = ModelRuntime(settings)
    calls = []
    runtime.encode_reference = lambda samples, semantic=True, stop=None: (
        calls.append(1) or fake_tokens(samples, semantic)
    )  # type: ignore[method-assign]
    access = AccessServices(settings, authenticator=Authenticator(store, ttl_s=30.0))
    body = {
        "text": "Good morning.",
        "reference_audio": base64.b64encode(audio(41)).decode(),
        "max_tokens": 30,
    }
    with TestClient(create_app(settings, runtime=runtime, access=access)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        refused = client.post("/v1/tts/generate", json=body, headers={"Authorization": "Bearer broke-key"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
        assert calls == []  # the encoder never ran for it
        upload = {"audio_sample": ("ref.wav", audio(42), "audio/wav")}
        refused = client.post(
            "/v1/audio/voices",
            files=upload,
            data={"name": "mine"},
            headers={"Authorization": "Bearer broke-key"},
        )
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
        assert calls == []
        served = client.post("/v1/tts/generate", json=body, headers={"Authorization": "Bearer paying-key"})
        assert served.status_code == 200, served.text
        assert calls == [1]
        created = client.post(
            "/v1/audio/voices",
            files=upload,
            data={"name": "mine"},
            headers={"Authorization": "Bearer paying-key"},
        )
        assert created.status_code == 201, created.text
        assert calls == [1, 1]


async def test_a_deadline_bounds_the_encode_itself_and_frees_the_slot_at_once() -> None:
    """A hostile upload whose encode never ends: 504 with Retry-After at the deadline, the slot goes to the next key
    at once (its encode runs while the abandoned thread is still finishing its stage), and the hostile key cannot
    stack a second thread until its first one stopped."""
    encoder = HeldEncoder(held=1)
    # 1 s, not less: the deadline also covers reading the upload before the encoder runs, and on two loaded cores
    # 0.3 s can pass first: the encoder then never runs for it, and the next key's encode is the one held.
    refs = references(encoder, max_per_key=1, wait_s=30, deadline_s=1.0)
    cut = await refusal(refs.encode(audio(1), semantic=False, key_id="hostile"))
    assert (cut.code, cut.retry_after) == ("GENERATION_TIMEOUT", 10)
    assert refs.abandoned == 1 and encoder.started == 1
    refs.deadline_s = 60  # the short bound was the hostile call's; the next key's encode must not race it
    assert (await refs.encode(audio(2), semantic=False, key_id="other")).tokens  # the slot was given back
    await until(lambda: encoder.stopped == 1)  # the abandoned thread stopped at its next stage check
    # Its thread gives the key's place back on the event loop just after the encoder returns: wait for that too.
    await until(lambda: refs.encodes_held("hostile") == 0)
    assert len(refs.cache) == 1  # the abandoned result was never kept
    assert (await refs.encode(audio(3), semantic=False, key_id="hostile")).tokens  # its place is free again


async def test_the_deadline_counts_the_wait_for_the_encoder() -> None:
    encoder = HeldEncoder(held=1)
    refs = references(encoder, max_per_key=1, wait_s=30, deadline_s=60)
    busy = asyncio.create_task(refs.encode(audio(1), semantic=False, key_id="a"))
    await until(lambda: encoder.started == 1)
    refs.deadline_s = 0.2  # the waiter's deadline passes long before the wait limit (30 s)
    late = await refusal(refs.encode(audio(2), semantic=False, key_id="b"))
    assert (late.code, late.retry_after) == ("SERVICE_UNAVAILABLE", 10) and "deadline" in late.message
    assert encoder.started == 1  # it never reached the encoder
    encoder.release.set()
    await busy


async def test_a_cancelled_caller_gives_its_slot_back_and_its_result_is_dropped() -> None:
    """What api/client_gone.py does when the client hangs up: cancel the encode. Waiting or running, its places go
    to the next caller at once; a running thread is told to stop."""
    encoder = HeldEncoder(held=1)
    refs = references(encoder, max_per_key=1, max_waiting=1, wait_s=30, deadline_s=60)
    running = asyncio.create_task(refs.encode(audio(1), semantic=False, key_id="a"))
    await until(lambda: encoder.started == 1)
    waiting = asyncio.create_task(refs.encode(audio(2), semantic=False, key_id="b"))
    await until(lambda: refs._waiting == 1)  # noqa: SLF001
    waiting.cancel()  # b hangs up while queued: its queue place is free for c
    running.cancel()  # a hangs up while encoding: the slot is free for c
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(asyncio.CancelledError):
        await running
    assert (await refs.encode(audio(3), semantic=False, key_id="c")).tokens
    await until(lambda: encoder.stopped == 1)
    assert encoder.finished == 1 and len(refs.cache) == 1 and refs.abandoned == 1
    assert (await refs.encode(audio(4), semantic=False, key_id="b")).tokens  # b's place was given back too


async def test_concurrent_callers_get_exactly_their_solo_tokens(demo_model_dir) -> None:
    """The real encoder (demo checkpoint) from several worker threads at once, through the queue, deadline and
    stop checks: each caller gets what its reference gives alone (model code is called from several threads)."""
    from core.clone import ReferenceEncoder

    encoder = ReferenceEncoder.from_pretrained(demo_model_dir)
    runtime = SimpleNamespace(cloning_unavailable_reason=None, encode_reference=encoder.encode)
    recordings = [wav_bytes(voiced(1.0 + 0.4 * i, seed=60 + i)) for i in range(4)]
    solo = References(runtime, max_concurrent=1, cache_size=0)  # type: ignore[arg-type]
    alone = [(await solo.encode(data, semantic=True)).tokens for data in recordings]
    assert len({tokens.semantic_tokens for tokens in alone}) == len(recordings)
    shared = References(runtime, max_concurrent=4, cache_size=0, max_per_key=4)  # type: ignore[arg-type]
    for _ in range(2):
        together = await asyncio.gather(
            *(shared.encode(data, semantic=True, key_id=f"key-{i}") for i, data in enumerate(recordings))
        )
        assert [result.tokens for result in together] == alone
