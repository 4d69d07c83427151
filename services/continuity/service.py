"""Continuity: every synthesis is remembered for a while (its 32 global tokens and the end of its speech), so a later
request can continue it (request stitching: `previous_request_ids`) or keep its voice (`keep_voice_tokens`, used by
`POST /v1/audio/voices {"from_request_id"}`).

Stitching: the new request speaks with the previous request's exact globals, and its prompt is Spark's continuation
prompt (docs/reference/spark-tts.md#prompts) with the previous request's last `TTS_CONTINUITY_PREFIX_S` seconds as the
reference: those words before the new text in the content, their semantic ids after `<|start_semantic_token|>`. The
model goes on from there, so tempo and pitch carry over; only the new tokens are decoded. Several previous requests
(oldest first, at most 3) give their tails in order, cut to the same bound from the end. A previous request that is
unknown, expired, another key's, failed or still running is refused (404 / 409 naming `previous_request_ids`), never
skipped.

`previous_text` and `next_text` are accepted and never spoken: the Spark prompt has no slot for text that is not
spoken (all content text is read out), and text without its speech tokens cannot condition the continuation. With
`previous_request_ids`, the prefix's words are the stored ones, which match its ids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from services.continuity.records import ANONYMOUS, MAX_TAIL_CHARS, RecentRequest
from services.continuity.stores import RecentRequestStore, build_recent_store
from services.errors import ServiceError, SynthesisError
from services.pipeline.optional_steps import note_failure
from services.pipeline.spoken_tail import SEMANTIC_PER_SECOND, TailSegment, tail_of
from services.pipeline.text_plan import REFERENCE_TEXT_ROOM, prompt_for
from shared import metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.voices import Voice
    from services.database import DatabaseClients
    from services.pipeline.resources import ModelSource, PipelineResources
    from services.pipeline.synthesis import SynthesisJob
    from shared.settings import Settings

logger = logging.getLogger("services.continuity")

PARAM = "previous_request_ids"
MAX_PREVIOUS_REQUESTS = 3
STORE_WRITE_TIMEOUT_S = 2.0  # the write happens before the stream's end: bounded, and a failure only logs


def request_not_found(request_id: str, param: str, retention_s: float) -> ServiceError:
    shown = request_id if len(request_id) <= 80 else request_id[:80] + "..."
    return ServiceError(
        "REQUEST_NOT_FOUND",
        f"Invalid '{param}': no finished request {shown!r} for this API key. Use the X-Server-Request-ID of a "
        f"request this key completed in the last {retention_s / 3600:g} h (a failed request, another key's, or one "
        "still running on another server is not found).",
        param,
    )


class Continuity:
    """Remembers finished jobs (`track`), finds them for their key (`find`), and builds stitched voices."""

    def __init__(self, settings: Settings, models: ModelSource, store: RecentRequestStore) -> None:
        self.settings = settings
        self.models = models
        self.store = store
        self.retention = timedelta(seconds=settings.continuity.continuity_retention_s)
        self.prefix_tokens = int(settings.continuity.continuity_prefix_s * SEMANTIC_PER_SECOND)
        # Jobs of this process not yet remembered: a lookup for one of these says "still running" (409). A job that
        # never ran (its request failed after planning) counts as running for at most the request deadline.
        self._running: dict[str, tuple[str, SynthesisJob, float]] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, models: ModelSource, databases: DatabaseClients | None = None
    ) -> Continuity:
        return cls(settings, models, build_recent_store(settings, databases))

    async def close(self) -> None:
        await self.store.close()

    # ------------------------------------------------------------------ remember
    def track(self, job: SynthesisJob, key_id: str | None) -> None:
        """Remember `job` for `key_id` once all its audio is made (before its stream ends)."""
        for request_id in [r for r, (_, j, t) in self._running.items() if not self._is_running(j, t)]:
            del self._running[request_id]  # failed, cancelled or never run: never remembered
        owner = key_id or ANONYMOUS
        self._running[job.request.request_id] = (owner, job, time.monotonic())
        job.on_complete.append(partial(self._remember, owner))

    def record_of(self, job: SynthesisJob, owner: str) -> RecentRequest | None:
        if job.global_tokens is None:
            return None
        tail = tail_of(job.spoken.segments(), self.prefix_tokens)
        if tail is not None and len(tail.text) > MAX_TAIL_CHARS:
            tail = None  # not a transcript of a few seconds; keep the voice only
        now = datetime.now(UTC)
        return RecentRequest(
            request_id=job.request.request_id,
            owner_key_id=owner,
            voice_id=job.request.voice.id,
            global_tokens=tuple(job.global_tokens),
            tail_text=tail.text if tail else None,
            tail_semantic=tail.semantic if tail else None,
            created_at=now,
            expires_at=now + self.retention,
        )

    async def _remember(self, owner: str, job: SynthesisJob) -> None:
        request_id = job.request.request_id
        try:
            record = self.record_of(job, owner)
            if record is not None:
                await asyncio.wait_for(self.store.put(record), STORE_WRITE_TIMEOUT_S)
        except (
            ServiceError,
            TimeoutError,
            ValueError,
        ) as exc:  # the store is down or slow, or a bound refused it
            metrics.OPTIONAL_STEP_FAILURES.labels("continuity").inc()
            logger.warning(
                "recent request not remembered",
                extra={"request_id": request_id, "store": self.store.name, "error": type(exc).__name__},
            )
        except Exception as exc:  # noqa: BLE001 - a bug in the tail: the request's audio exists, it completes anyway
            note_failure("continuity", exc, request_id)
        finally:
            self._running.pop(request_id, None)

    def _is_running(self, job: SynthesisJob, tracked_at: float) -> bool:
        return not job.ended and time.monotonic() - tracked_at < self.settings.limits.request_deadline_s

    # ------------------------------------------------------------------ find
    async def find(self, request_id: str, key_id: str | None, param: str = PARAM) -> RecentRequest:
        running = self._running.get(request_id)
        if (
            running is not None
            and self._is_running(running[1], running[2])
            and running[0] == (key_id or ANONYMOUS)
        ):
            raise ServiceError(
                "REQUEST_NOT_FINISHED",
                f"Invalid '{param}': request {request_id!r} is still running; "
                "continue it once its audio has ended.",
                param,
            )
        record = await self.store.get(request_id)
        if record is None or not record.owned_by(key_id):
            raise request_not_found(request_id, param, self.settings.continuity.continuity_retention_s)
        return record

    async def keep_voice_tokens(self, request_id: str, key_id: str | None) -> tuple[int, ...]:
        """The 32 global tokens request `request_id` spoke with (404 for another key's)."""
        return (await self.find(request_id, key_id, "from_request_id")).global_tokens

    # ------------------------------------------------------------------ stitch
    async def stitched_voice(
        self,
        voice: Voice,
        previous_request_ids: Sequence[str],
        key_id: str | None,
        *,
        voice_named: bool,
        voice_field: str = "speaker",
    ) -> Voice:
        """`voice` continuing the previous requests (oldest first): their globals and the end of their speech."""
        if len(set(previous_request_ids)) != len(
            previous_request_ids
        ):  # every route's schema refuses this first
            raise SynthesisError(
                "VALIDATION_ERROR",
                f"Invalid '{PARAM}': a request is named twice; name each "
                "previous request once, oldest first.",
                PARAM,
            )
        records = [await self.find(request_id, key_id) for request_id in previous_request_ids]
        last = records[-1]
        for record in records[:-1]:
            if record.global_tokens != last.global_tokens:
                raise SynthesisError(
                    "VALIDATION_ERROR",
                    f"Invalid '{PARAM}': requests {record.request_id!r} and "
                    f"{last.request_id!r} spoke with different voices; stitch one voice's requests.",
                    PARAM,
                )
        if voice_named and voice.id != last.voice_id:
            raise SynthesisError(
                "VALIDATION_ERROR",
                f"Invalid '{voice_field}': request {last.request_id!r} spoke "
                f"with voice {last.voice_id!r}, not {voice.id!r}; name that voice or leave "
                f"'{voice_field}' out.",
                voice_field,
            )
        tails = [
            TailSegment(r.tail_text, r.tail_semantic) for r in records if r.tail_text and r.tail_semantic
        ]
        tail = tail_of(tails, self.prefix_tokens)
        stitched = dataclasses.replace(
            voice,
            kind="global_tokens",
            global_tokens=last.global_tokens,
            reference_text=tail.text if tail else None,
            reference_semantic=tail.semantic if tail else None,
        )
        check_prefix_fits(self.models.pipeline_resources(), stitched)
        return stitched


def check_prefix_fits(resources: PipelineResources, voice: Voice) -> None:
    """The stitched prefix alone must leave room to speak a sentence (only a small TTS_MAX_MODEL_LEN does not)."""
    ids, _ = prompt_for(resources, "", voice, voice.global_tokens)
    room = resources.settings.llm.max_model_len - len(ids)
    if room < REFERENCE_TEXT_ROOM:
        raise SynthesisError(
            "TEXT_TOO_LONG",
            f"Invalid '{PARAM}': the previous requests' words and speech take "
            f"{len(ids)} of the model's {resources.settings.llm.max_model_len} prompt tokens, leaving {room} "
            f"(at least {REFERENCE_TEXT_ROOM} are needed); stitch fewer requests.",
            PARAM,
        )
