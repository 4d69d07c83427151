"""Encoding is bounded and fair (issue 27 item 4): one key's encodes cannot fill the encoder queue, the queue is
bounded, and a wait for the encoder has a deadline. A held encoder (an event the test releases) stands in for a
slow hostile upload; everything else is the real References class with real decoding."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from services.errors import ServiceError
from services.voice_library.references import References
from tests.audio_samples import voiced, wav_bytes
from tests.unit.test_voice_library import fake_tokens


class HeldEncoder:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def __call__(self, samples, *, semantic: bool = True):
        self.started += 1
        self.release.wait(timeout=30)
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
    assert (await refs.encode(audio(2), semantic=False, key_id="b")).tokens  # places given back after a refusal


def test_a_key_without_credits_never_reaches_the_encoder(demo_model_dir) -> None:
    """Credits are checked before a per-request reference is decoded or encoded (a zero-credit key ran the encoder
    and was refused only after it)."""
    import base64

    from fastapi.testclient import TestClient

    from api import create_app
    from services.access import AccessServices, Authenticator, StaticKeyStore
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings
    from tests.conftest import wait_in_portal

    settings = Settings(model_dir=demo_model_dir, auth_enabled=True, credits_enabled=True, warmup=False,
                        log_json=False, sr_enabled=False, rate_limit_per_minute=10_000)
    store = StaticKeyStore()
    store.add_plain_key("broke-key", key_id="broke", credit_balance=0)
    store.add_plain_key("paying-key", key_id="paying", credit_balance=10_000)
    runtime = ModelRuntime(settings)
    calls = []
    runtime.encode_reference = lambda samples, semantic=True: calls.append(1) or fake_tokens(samples, semantic)  # type: ignore[method-assign]
    access = AccessServices(settings, authenticator=Authenticator(store, ttl_s=30.0))
    body = {"text": "Good morning.", "reference_audio": base64.b64encode(audio(41)).decode(), "max_tokens": 30}
    with TestClient(create_app(settings, runtime=runtime, access=access)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        refused = client.post("/v1/tts/generate", json=body, headers={"Authorization": "Bearer broke-key"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
        assert calls == []  # the encoder never ran for it
        served = client.post("/v1/tts/generate", json=body, headers={"Authorization": "Bearer paying-key"})
        assert served.status_code == 200, served.text
        assert calls == [1]
