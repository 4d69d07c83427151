"""Reference audio -> tokens, for saved voices and per-request cloning alike.

Decoding (`core.clone.decode_reference_audio`) and encoding (`ReferenceEncoding.encode_reference`, the runtime's)
are blocking: both run in a worker thread, at most `TTS_CLONE_MAX_CONCURRENT_ENCODES` at a time per process (the
rest wait their turn), each within `TTS_CLONE_ENCODE_DEADLINE_S` (queue wait and encode together); an encode whose caller is cancelled (its
client left) gives its slot back at once and its thread stops at the next stage boundary.
Results are kept in a bounded LRU keyed by the API key, the SHA-256 of the uploaded bytes and whether semantic
tokens were needed, so a client that sends the same reference with every request pays for one encode, and no key's
request answers faster because another key sent the same recording (a hit would tell it someone had).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from core.clone import (
    CloningUnavailable,
    EncodeAbandoned,
    ReferenceAudioError,
    ReferenceTokens,
    decode_reference_audio,
)
from core.voices import GLOBAL_CODEBOOK_SIZE, NUM_GLOBAL_TOKENS
from services.errors import ServiceError, cloning_unavailable
from shared import metrics

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedReference:
    """What one uploaded file encodes to, with the facts a voice record keeps about it."""

    tokens: ReferenceTokens
    seconds: float
    sha256: str


def audio_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ReferenceCache:
    """Bounded LRU of encoded references, private to each API key (`owner`; "" for internal callers). Touched only
    from the event loop thread (no lock needed)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str, bool], EncodedReference] = OrderedDict()

    def get(self, owner: str, sha256: str, semantic: bool) -> EncodedReference | None:
        """An entry with semantic tokens also answers a request that needs only the globals."""
        for key in ((owner, sha256, semantic), (owner, sha256, True)):
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        return None

    def put(self, owner: str, semantic: bool, value: EncodedReference) -> None:
        if self.capacity <= 0:
            return
        key = (owner, value.sha256, semantic)
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class _Place:
    """One encode's place in its key's count. It is held by the encode's turn and, while one runs, by its worker
    thread: a thread abandoned mid-stage (client gone, deadline passed) keeps its key's place until it stops, so
    hanging up and retrying cannot stack encoder threads. Touched only on the event loop thread."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.holders = 1
        self.running = False  # a worker thread was started for this encode


class ReferenceEncoding(Protocol):
    """What encodes a reference on this server (the runtime: wav2vec2 + BiCodec's encoders, loaded on first use)."""

    @property
    def cloning_unavailable_reason(self) -> str | None: ...

    def encode_reference(
        self, samples: np.ndarray, *, semantic: bool = True, stop: threading.Event | None = None
    ) -> ReferenceTokens: ...


class References:
    """Encodes references for one app: a per-process limit on concurrent encodes and the LRU above."""

    def __init__(
        self,
        encoder: ReferenceEncoding,
        *,
        max_concurrent: int,
        cache_size: int,
        max_per_key: int = 1,
        max_waiting: int = 8,
        wait_s: float = 30.0,
        deadline_s: float = 60.0,
    ) -> None:
        self.encoder = encoder
        self.cache = ReferenceCache(cache_size)
        self._slots = asyncio.Semaphore(max_concurrent)
        self.max_per_key = max_per_key
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self.deadline_s = deadline_s
        self._per_key: dict[str, int] = {}  # encodes running or waiting, per API key
        self._waiting = 0
        self.encodes = 0  # encoder calls made (tests and logs)
        self.abandoned = 0  # encodes whose caller left or whose deadline passed while they ran

    def encodes_held(self, key_id: str) -> int:
        """Encodes this key holds: waiting, running, or abandoned with their thread still finishing its stage."""
        return self._per_key.get(key_id, 0)

    def check_available(self) -> None:
        """501 CLONING_UNAVAILABLE when this checkpoint cannot encode references."""
        reason = self.encoder.cloning_unavailable_reason
        if reason is not None:
            raise cloning_unavailable(reason)

    async def encode(
        self, data: bytes, *, semantic: bool, param: str | None = None, key_id: str | None = None
    ) -> EncodedReference:
        """Tokens of an uploaded file; ServiceError with the public code (naming `param`) when it cannot be a
        reference, or when the encoder is not this key's to use now (429: its own encodes; 503: the queue).

        `deadline_s` bounds the wait for the encoder and the encode together: 503 when it passes in the queue, 504
        GENERATION_TIMEOUT when it passes while encoding. Cancelling the caller (its client left: see
        api/client_gone.py) gives the slot back at once; the worker thread stops at its next stage and its
        result is dropped."""
        digest = audio_sha256(data)
        owner = key_id or ""  # "": no key named (internal callers): only the global limits apply
        metrics.REFERENCE_REQUESTS.inc()
        cached = self.cache.get(owner, digest, semantic)
        if cached is not None:
            return cached
        self.check_available()
        place = _Place(owner)
        try:
            async with asyncio.timeout(self.deadline_s):
                async with self._turn(place):
                    cached = self.cache.get(owner, digest, semantic)  # encoded by this key while it waited
                    if cached is not None:
                        return cached
                    self.encodes += 1
                    started = time.perf_counter()
                    result = await self._run(data, digest, semantic, param, place)
                    # Logged, not a metric: encoder-only timings on /metrics would reveal cache hits.
                    logger.info(
                        "reference encoded", extra={"seconds": round(time.perf_counter() - started, 3)}
                    )
                    self.cache.put(owner, semantic, result)
                    return result
        except TimeoutError:
            if place.running:
                raise ServiceError(
                    "GENERATION_TIMEOUT",
                    f"Encoding the reference took longer than {self.deadline_s:g}"
                    " s (TTS_CLONE_ENCODE_DEADLINE_S); retry shortly or send a shorter recording.",
                    retry_after=10,
                ) from None
            raise ServiceError(
                "SERVICE_UNAVAILABLE",
                f"The reference encoder stayed busy past the {self.deadline_s:g} s deadline; retry shortly.",
                retry_after=10,
            ) from None

    async def _run(
        self, data: bytes, digest: str, semantic: bool, param: str | None, place: _Place
    ) -> EncodedReference:
        """`_encode` in a thread of its own (never queued behind abandoned ones in a pool, and it always reports
        back, so the key's place is always freed); cancelling this abandons it (`_Place`, `ReferenceEncoder.encode`)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[EncodedReference] = loop.create_future()
        stop = threading.Event()

        def work() -> None:
            try:
                result, error = self._encode(data, digest, semantic, param, stop), None
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request below
                result, error = None, exc

            def deliver() -> None:
                self._free(place)
                if answer.done():  # abandoned: the result is dropped
                    return
                if error is not None:
                    answer.set_exception(error)
                else:
                    answer.set_result(result)  # type: ignore[arg-type]

            with contextlib.suppress(RuntimeError):  # the loop closed first (shutdown): nothing left to free
                loop.call_soon_threadsafe(deliver)

        place.holders += 1
        place.running = True
        context = contextvars.copy_context()  # the request id in the thread's log lines
        threading.Thread(target=context.run, args=(work,), name="reference-encode", daemon=True).start()
        try:
            return await answer
        except asyncio.CancelledError:  # the client left, or the deadline passed
            stop.set()
            self.abandoned += 1
            raise

    @contextlib.asynccontextmanager
    async def _turn(self, place: _Place) -> AsyncIterator[None]:
        """An encoder slot, fairly: one key cannot hold more than `max_per_key` encodes running or waiting (so a
        hostile upload blocks only its own key), the queue is bounded, and no one waits past `wait_s`."""
        owner = place.owner
        if owner and self._per_key.get(owner, 0) >= self.max_per_key:
            raise ServiceError(
                "TOO_MANY_CONCURRENT_REQUESTS",
                f"This key already has {self.max_per_key} reference "
                "recording(s) being encoded; wait for it to finish.",
                retry_after=5,
            )
        if self._slots.locked() and self._waiting >= self.max_waiting:
            raise ServiceError(
                "SERVICE_UNAVAILABLE", "The reference encoder is busy; retry shortly.", retry_after=10
            )
        self._per_key[owner] = self._per_key.get(owner, 0) + 1
        self._waiting += 1
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self.wait_s)
            except TimeoutError:
                raise ServiceError(
                    "SERVICE_UNAVAILABLE",
                    f"The reference encoder stayed busy for {self.wait_s:g} s; retry shortly.",
                    retry_after=10,
                ) from None
            finally:
                self._waiting -= 1
            try:
                yield
            finally:
                self._slots.release()  # at once, even when an abandoned thread is still finishing its stage
        finally:
            self._free(place)

    def _free(self, place: _Place) -> None:
        place.holders -= 1
        if place.holders > 0:
            return
        left = self._per_key.pop(place.owner, 1) - 1
        if left > 0:
            self._per_key[place.owner] = left

    def _encode(
        self, data: bytes, digest: str, semantic: bool, param: str | None, stop: threading.Event
    ) -> EncodedReference:
        try:
            audio = decode_reference_audio(data)
        except ReferenceAudioError as exc:
            shown = f"'{param}'" if param else "reference audio"
            raise ServiceError(exc.code, f"Invalid {shown}: {exc.message}.", param) from None
        if stop.is_set():  # abandoned while decoding: the model never runs for it
            raise EncodeAbandoned("the encode was abandoned")
        try:
            tokens = self.encoder.encode_reference(audio.samples, semantic=semantic, stop=stop)
        except CloningUnavailable as exc:
            raise cloning_unavailable(str(exc)) from None
        tokens = check_tokens(tokens, semantic)
        return EncodedReference(tokens=tokens, seconds=round(audio.duration_s, 3), sha256=digest)


def check_tokens(tokens: ReferenceTokens, semantic: bool) -> ReferenceTokens:
    """The encoder's output as plain ints, checked to be what a prompt needs (a broken encoder must not make
    unusable voices)."""
    globals_ = tuple(int(g) for g in tokens.global_tokens)
    if len(globals_) != NUM_GLOBAL_TOKENS or not all(0 <= g < GLOBAL_CODEBOOK_SIZE for g in globals_):
        raise RuntimeError(
            f"the reference encoder returned {len(globals_)} global tokens, not {NUM_GLOBAL_TOKENS}"
        )
    if semantic and tokens.semantic_tokens is None:
        raise RuntimeError("the reference encoder returned no semantic tokens")
    semantic_ = None if tokens.semantic_tokens is None else tuple(int(s) for s in tokens.semantic_tokens)
    return ReferenceTokens(global_tokens=globals_, semantic_tokens=semantic_)
