"""The synthesis pipeline: text -> normalised text -> text chunks -> per chunk prompt, token stream, streaming
BiCodec decode -> crossfade between chunks -> optional AP-BWE -> resample -> steady frames -> encoded bytes.

One `SynthesisJob` per request. A producer task runs the pipeline and puts encoded bytes into a bounded queue;
the HTTP (or WebSocket) layer drains it. A slow reader fills the queue, which pauses the producer, which stops
pulling tokens (backpressure). Closing the consumer cancels the producer, which aborts the LLM request and
schedules no more decode work. The job never calls a codec model: it plans decode and super-resolution windows
(core.streaming.DecodePlanner, core.sr_planner) and awaits them on its `StreamHandle` in the codec scheduler
(services/device), which runs every stream's windows earliest-deadline-first in a few batched device calls, ordered
by the job's playback clock (`PlaybackClock`, which the job keeps): a streaming job waits (`pace`) while it is more
than `stream_max_ahead_s` of audio ahead of what its client can have played, so an abandoned reply wastes at most
that.

Long text keeps one voice: the first chunk's 32 global tokens condition every later chunk (clone prompt), and
the next chunk's generation starts as soon as the current chunk's generation is done, while its audio is still
being decoded and sent.

Longer than 500 lines because each text chunk's flow (generation, the generation guards' retry and cut, decode,
timestamps, continuity's spoken tail) shares the job's state and order; the guards' decisions live in
chunk_guards.py, generation in generation.py and the decode's pacing in decode_pacing.py, what is left here are the
hooks into that flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from core.align.units import load_segmenter
from core.guards import Trip
from core.streaming import DecodePlanner, PlannedWindow, StreamingConfig
from core.tokens import TokenStreamError
from services.device.playback import PlaybackClock
from services.errors import SynthesisError
from services.pipeline.audio_output import BWE_RATE, NATIVE_RATE, AudioOutput
from services.pipeline.chunk_guards import ChunkRun, GuardPolicy, stop_task
from services.pipeline.decode_pacing import PACE_PIECE_S, DecodePacing
from services.pipeline.generation import END_OF_TOKENS, ChunkGeneration
from services.pipeline.gpu_faults import (
    GPU_ERROR_MESSAGES,
    GPU_FAULT,
    GPU_OOM,
    FaultKind,
    classify_gpu_error,
)
from services.pipeline.optional_steps import run_optional
from services.pipeline.pipeline_stats import PipelineStats
from services.pipeline.spoken_tail import SEMANTIC_PER_SECOND, SpokenTail
from services.pipeline.synthesis_request import SamplingOptions, Speaker, SynthesisRequest
from services.pipeline.text_plan import TextPlan, plan_for
from services.pipeline.timestamps import TimestampsEvent, TimestampTrack
from services.pipeline.token_queue import TokenQueue

if TYPE_CHECKING:
    from services.device.scheduler import StreamHandle
    from services.pipeline.resources import PipelineResources

logger = logging.getLogger("services.pipeline.synthesis")

SR_RATE = BWE_RATE  # kept for callers (bench, tests): the 48 kHz AP-BWE output rate
# A streamed word's time goes out by the time playback is this close to it (core.align.due), settled or not: the next
# piece's words are settled within about a piece of pacing after this one (`_emit`), plus the time to send them.
TIMING_DUE_S = 1.5


def classify_failure(exc: BaseException) -> SynthesisError:
    """Map an exception from the model stack to a public error code."""
    if isinstance(exc, SynthesisError):
        return exc
    if isinstance(exc, TimeoutError):
        return SynthesisError("GENERATION_TIMEOUT", "Generation did not finish within the time limit.")
    if isinstance(exc, TokenStreamError):
        return SynthesisError("GENERATION_FAILED", f"The model produced an invalid token stream: {exc}")
    kind = classify_gpu_error(exc)
    if kind is not None:
        code = GPU_OOM if kind is FaultKind.OOM else GPU_FAULT
        return SynthesisError(code, GPU_ERROR_MESSAGES[code])
    return SynthesisError("GENERATION_FAILED", f"Generation failed ({exc.__class__.__name__}).")


def buffers_only(decoder: DecodePlanner, new_tokens: int) -> bool:
    """Whether pushing `new_tokens` only buffers them (no window is due). Most engine deltas do."""
    return decoder.pending_tokens + new_tokens < decoder.tokens_needed


class SynthesisJob(ChunkGeneration, DecodePacing):
    """One request's pipeline. Iterate `stream_bytes()`; read `stats`, `plan`, `sr_applied` for headers/metrics."""

    @classmethod
    def planned(cls, resources: PipelineResources, request: SynthesisRequest) -> SynthesisJob:
        """A job for a request planned as plain text by its own options (`plan_for`): warm-up, voice pinning,
        benchmarks. Requests from a route come planned by the speech service."""
        return cls(resources, request, plan_for(request, resources.settings))

    @classmethod
    def fed(cls, resources: PipelineResources, request: SynthesisRequest) -> SynthesisJob:
        """A job whose text arrives in pieces (`feed_text`, `close_text`): a socket's utterance."""
        return cls(resources, request, TextPlan(text="", chunks=[], chunked=False), incremental=True)

    def __init__(
        self,
        resources: PipelineResources,
        request: SynthesisRequest,
        plan: TextPlan,
        *,
        incremental: bool = False,
    ) -> None:
        """`plan`: what the request's text asks the model to speak (the speech service's, or `planned`'s);
        `incremental=True`: text chunks arrive later through feed_text()/close_text() (WebSocket: `fed`)."""
        self.resources = resources
        self.request = request
        settings = resources.settings
        self.plan = replace(plan, chunks=list(plan.chunks))  # the job takes chunks off its own list
        self.stats = PipelineStats(text_chunks=len(self.plan.chunks))
        # The job's place in the codec scheduler: opened when the producer starts (with this arrival time), closed
        # when it ends, whatever the outcome.
        self.scheduler = resources.scheduler
        self.arrival = self.scheduler.clock()
        self.handle: StreamHandle | None = None
        self.playback: PlaybackClock | None = (
            None  # the client's playback: the handle's deadlines, and pacing
        )
        self._d_vector: Any = None  # the d-vector of the text chunk being decoded (its speaker's)
        self.stream_config = StreamingConfig.from_settings(settings)
        # The latency preference shapes the stream's first chunk only (its first text chunk): that is the audio the
        # listener waits for. Later text chunks, and every non-streaming response, decode with the exact schedule.
        latency = request.latency if request.stream else "exact"
        # Admission measures and steers live streams only: a background job is neither counted nor steered by it.
        admission = resources.admission if request.work_class == "live" else None
        self.admission = admission
        # A seeded request's audio must not depend on the load it meets: admission does not steer its schedule, and
        # no window is cut for a listener about to run dry (decode_pacing.py).
        reproducible = request.sampling.seed is not None
        if reproducible:
            self.stream_config = replace(self.stream_config, cut_runway_s=None)
        if (
            admission is not None
        ):  # under load a newcomer's first chunk waits for the full look-ahead (admission.py)
            latency = admission.first_chunk_schedule(latency, reproducible=reproducible)
        # At 48 kHz a short first chunk's held overlap may stand in as the first AP-BWE window's right context
        # (core.sr_planner, the lead window), while the engine is far enough ahead (Admission.sr_lead).
        sr_lead = (
            request.stream
            and request.want_sr
            and latency != "exact"
            and resources.sr is not None
            and (admission is None or admission.sr_lead(reproducible=reproducible))
        )
        self.chain = AudioOutput(
            resources,
            audio_format=request.audio_format,
            sample_rate=request.sample_rate,
            bitrate=request.bitrate,
            stream=request.stream,
            want_bwe=request.want_sr,
            stats=self.stats,
            time_stretch=request.time_stretch,
            sr_lead=sr_lead,
        )
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.stream.stream_queue_chunks)
        # The request's voice, and one speaker per other voice of its `[voice:NAME]` segments.
        self.speaker = Speaker(request.voice)
        self._speakers = {id(request.voice): self.speaker}
        for voice in request.segment_voices.values():
            self._speakers.setdefault(id(voice), Speaker(voice))
        self._generation_tasks: dict[int, asyncio.Task[Any]] = {}  # text chunk index -> its current try
        self.guards = GuardPolicy(settings, self.stats, request.request_id)
        self._runs: dict[int, ChunkRun] = {}
        self._prefetch_task: asyncio.Task[Any] | None = None
        self.error: SynthesisError | None = None
        self._samples_queued = 0
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        self._text_closed = False
        # text chunk index -> seconds of silence before it (SSML breaks; a planned request's come with its plan)
        self._pauses: dict[int, float] = dict(self.plan.pauses)
        # Timestamps (opt-in) never hold audio: the 16 kHz audio going into the chain is handed to the track, and
        # after each piece is queued the words it settles are queued behind it (services.pipeline.timestamps).
        self.timestamps: TimestampTrack | None = None
        self._last_open = False  # the last text chunk's words wait for the chain's true end
        if request.timestamps is not None:
            self.timestamps = TimestampTrack(
                overlap_samples=self.chain.joiner.overlap,
                ctc=resources.aligner,
                time_stretch=request.time_stretch,
                rates=resources.speaking_rates,
                voice=request.voice.rate_key,
                owner=request.key_id,
            )
            if not incremental:
                written = self.plan.written if self.plan.written is not None else request.text
                self.timestamps.add_text(written, " ".join(self.plan.chunks))
        # The first chunk's schedule (`latency`, as admission left it), decided once the job's parts stand: it is read
        # only when the producer runs.
        self.first_stream_config = self.stream_config.for_latency(latency)
        # Continuity (services.continuity): the end of what this job spoke, and hooks awaited once all audio is
        # made, before the stream ends, so a client that has the whole stream can continue it at once.
        self.spoken = SpokenTail(int(settings.continuity.continuity_prefix_s * SEMANTIC_PER_SECOND))
        self.on_complete: list[Callable[[SynthesisJob], Awaitable[None]]] = []
        self.ended = False  # the producer has stopped (any outcome)
        for chunk in self.plan.chunks:
            self._texts.put_nowait(chunk)
        if not incremental:
            self.close_text()

    @property
    def global_tokens(self) -> tuple[int, ...] | None:
        """The request's own voice's global tokens (continuity remembers them)."""
        return self.speaker.global_tokens

    @property
    def sr_applied(self) -> bool:
        return self.chain.bwe_applied

    @property
    def content_type(self) -> str:
        return self.chain.encoder.content_type

    # ------------------------------------------------------------------ decode + audio chain
    async def _decode_push(self, run: ChunkRun, planner: DecodePlanner, semantic: list[int]) -> None:
        windows = planner.push(semantic)
        if not windows and self._cut_due(planner):
            windows = self._cut(planner)
        await self._decode_planned(run, planner, windows)

    async def _decode_planned(
        self, run: ChunkRun, planner: DecodePlanner, windows: list[PlannedWindow]
    ) -> None:
        if not windows:  # most engine deltas only buffer: nothing to await, decode or send
            return
        decoded = await self._decode_windows(planner, windows)
        if decoded and self.stats.first_audio_engine_ids is None:
            self.stats.first_audio_engine_ids = (self.stats.preamble_ids or 0) + planner.tokens_in
        await self._chain_chunks(run, [chunk for chunk, _ in decoded], [ahead for _, ahead in decoded])

    async def _decode_finish(self, run: ChunkRun, planner: DecodePlanner, *, fade: bool = False) -> None:
        chunks = [chunk for chunk, _ in await self._decode_windows(planner, planner.finish())]
        # Faded when the chunk is cut at a token guard's detection point.
        await self._chain_chunks(run, self.guards.fade_last(chunks) if fade else chunks)

    async def _chain_chunks(
        self, run: ChunkRun, chunks: list[np.ndarray], aheads: list[np.ndarray | None] | None = None
    ) -> None:
        """Send the chunks' kept audio. `aheads`: per chunk, the decode planner's held overlap right after it (the
        guess of what follows it)."""
        for i, chunk in enumerate(chunks):
            if run.stop is not None:
                break
            chunk = self.guards.screen_audio(run, chunk)
            self.stats.decoded_chunks += 1
            self.stats.decoded_samples += int(chunk.size)
            self.stats.decoded_samples_per_chunk[-1] += int(chunk.size)
            kept = run.keep_or_hold(chunk)
            if kept is not None and kept.size:
                follows = (
                    aheads[i] if aheads is not None and run.stop is None else None
                )  # a cut piece ends here
                await self._send_kept(kept, follows)

    async def _send_kept(self, audio: np.ndarray, ahead: np.ndarray | None = None) -> None:
        """Kept 16 kHz audio on through the chain and out; a paced stream's in pieces of at most `PACE_PIECE_S`,
        each once the client has room for it (the rest of the audio is the exact `ahead` of the pieces before it)."""
        step = len(audio)
        if self._paced:
            step = max(1, int(PACE_PIECE_S * NATIVE_RATE * self.request.time_stretch))
        for start in range(0, len(audio), step):
            piece = audio[start : start + step]
            follows = ahead if start + step >= len(audio) else audio[start + step :]
            await self._pace(len(piece) / NATIVE_RATE / self.request.time_stretch)
            if self.timestamps is not None:
                self.timestamps.on_audio(piece)
            await self._emit(await self.chain.push(piece, follows))

    async def _release_held(self, run: ChunkRun) -> None:
        """The held audio of a chunk that passed every guard, on through the chain."""
        held, run.held = run.held, []
        for audio in held:
            await self._send_kept(audio)

    async def _recover(self, run: ChunkRun, trip: Trip, decoder: DecodePlanner | None) -> TokenQueue | None:
        """After an acting trip: the next try's token queue (retried), or None (cut: the chunk ends here)."""
        action = run.action or self.guards.decide(run, trip)
        await stop_task(self._generation_tasks.get(run.index))
        if action == "failed":
            raise self.guards.failure(run, trip)
        if action == "cut":
            if decoder is not None and run.action is None:
                await self._decode_finish(run, decoder, fade=True)
            await self._release_held(run)  # held: a limit cut keeps it
            self.guards.account_cut(run)
            return None
        self.guards.next_try(run)
        self.spoken.restart(run.index)  # what the discarded try spoke is not what the request spoke
        return self._start_generation(run.index, run.text, run)

    async def _emit(self, data: bytes) -> None:
        if not data:
            return
        # Output samples produced since the last item: the audio this item carries (for playback cadence).
        samples = self.stats.output_samples - self._samples_queued
        self._samples_queued = self.stats.output_samples
        await self._emit_now(data, samples)
        if self.timestamps is not None and self.request.stream and self.timestamps.has_audio:
            # After the audio: it never waits for the aligner.
            await self._timings(self.timestamps.settle, self._timing_due())

    def _timing_due(self) -> float | None:
        """Output seconds the client can have played before the next piece's words are settled (None: nobody plays
        this job as it comes)."""
        playback = self.playback
        if not self.request.paced or playback is None or not playback.started:
            return None
        return playback.audio_seconds - playback.buffered_seconds() + TIMING_DUE_S

    async def _emit_now(self, data: bytes, samples: int) -> None:
        if self.playback is not None:  # the audio leaves: the playback clock (deadlines, pacing) counts it
            self.playback.note_audio(samples / self.request.sample_rate)
        if self.queue.full():
            self.stats.producer_waits += 1
        await self.queue.put((data, samples))
        self.stats.max_queue_depth = max(self.stats.max_queue_depth, self.queue.qsize())

    async def _decode_text_chunk(self, index: int, tokens: TokenQueue) -> None:
        run: TokenQueue | None = tokens
        self.stats.decoded_samples_per_chunk.append(0)
        while run is not None:  # one pass per try; a retried try hands over the next try's tokens
            run = await self._decode_try(self._runs[index], run)
        if self.timestamps is not None and self._runs[index].last:
            # Ended with the chain's tail: a time-stretch may end a few ms short of its ratio.
            self._last_open = True
        elif self.timestamps is not None:
            await self._timings(self.timestamps.end_segment)
        self.stats.text_chunks_done += 1

    async def _decode_try(self, run: ChunkRun, tokens: TokenQueue) -> TokenQueue | None:
        index = run.index
        # The parser refuses semantic ids before the 32 global tokens, so once anything arrives on this queue the
        # voice is known (controllable mode learns it from the model) or the generation has failed.
        item = await tokens.get()
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Trip):
            return await self._recover(run, item, None)
        speaker = self.speaker_of(index)
        if speaker.global_tokens is None:
            raise TokenStreamError("generation ended before the 32 global tokens were complete")
        if not run.started:
            run.started = True
            self.stats.global_tokens_per_chunk.append(speaker.global_tokens)
            run.last = self._text_closed and index == len(self.plan.chunks) - 1
            self.chain.start_segment(last=run.last)
            if self.timestamps is not None:
                self.timestamps.start_segment(self.plan.chunks[index], voice=speaker.voice.rate_key)
            await self._silence(index)
        # Once per speaker, cached per voice; a miss is a model call the scheduler runs on the device, between codec
        # calls.
        if speaker.d_vector is None:
            speakers = self.resources.speaker_vectors
            speaker.d_vector = speakers.cached(speaker.global_tokens)
            if speaker.d_vector is None:
                speaker.d_vector = await self.scheduler.run_model_call(
                    "speaker", partial(speakers.compute, speaker.global_tokens)
                )
        self._d_vector = speaker.d_vector  # chunks decode one at a time: this chunk's windows use it
        codec = self.resources.bicodec
        decoder = DecodePlanner(
            self.first_stream_config if index == 0 else self.stream_config,
            hop=codec.hop_length,
            codebook_size=codec.semantic_codebook_size,
        )
        while True:
            semantic: list[int] = []
            done = False
            # Take what is already waiting (fewer, larger decode calls), but at most one decode chunk's worth,
            # so one queue item of audio stays bounded.
            while True:
                if item is END_OF_TOKENS:
                    done = True
                    break
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Trip):  # the try ends here: what came before it is still decoded
                    done = True
                    break
                semantic.extend(item)
                if tokens.empty() or len(semantic) >= self.stream_config.max_chunk_tokens:
                    break
                item = tokens.get_nowait()
            if semantic:  # planning is cheap bookkeeping; only a due window awaits the scheduler
                await self._decode_push(run, decoder, semantic)
            if run.stop is not None:  # the audio guard tripped
                return await self._recover(run, run.stop, None)
            if isinstance(item, Trip):
                return await self._recover(run, item, decoder)
            if done:
                break
            # Woken when the planner can make a window or the try ends, not for every delta (token_queue.py), or
            # when the listener is about to run dry with a shorter window's ids at hand.
            while await self._wait_for_window(decoder, tokens):
                await self._decode_planned(run, decoder, self._cut(decoder))
                if run.stop is not None:
                    return await self._recover(run, run.stop, None)
            item = await tokens.get()
        await self._decode_finish(run, decoder)
        if run.stop is not None:
            return await self._recover(run, run.stop, None)
        await self._release_held(run)  # a held chunk passed: on it goes
        return None

    async def _timings(self, step: Callable[..., TimestampsEvent | None], *args: Any) -> None:
        """Run one step of the timestamp track off the event loop and queue what it settles. A failure here is
        logged and counted and the audio goes on (the track marks its answer); it never fails the request."""
        try:
            event = await asyncio.to_thread(step, *args)
        except Exception as exc:  # noqa: BLE001 - the track guards itself; this is the last line
            assert self.timestamps is not None
            self.timestamps._failed("track", exc)
            return
        if event is not None:
            await self.queue.put(event)

    # ------------------------------------------------------------------ text input
    def feed_text(self, text: str) -> None:
        """Add one more text chunk (already normalised and cut). The WebSocket path feeds text as it arrives."""
        if self._text_closed:
            raise RuntimeError("text input already closed")
        self.plan.chunks.append(text)
        self.stats.text_chunks += 1
        self._texts.put_nowait(text)
        if self.resources.idle is not None:
            self.resources.idle.touch()  # a socket still talking keeps the idle timer from running out

    def add_pause(self, seconds: float) -> None:
        """Silence before the next text chunk fed (or at the end, if none is): an SSML break. It is real zeros in
        the chain, where that chunk's audio starts, so the previous chunk fades out into it."""
        index = len(self.plan.chunks)
        self._pauses[index] = self._pauses.get(index, 0.0) + seconds

    async def _silence(self, index: int) -> None:
        seconds = self._pauses.pop(index, 0.0)
        if seconds <= 0:
            return
        # Taken before the time-stretch, which shortens it by the speed: so many seconds of output silence.
        samples = int(round(seconds * NATIVE_RATE * self.request.time_stretch))
        await self._send_kept(np.zeros(samples, np.float32))

    def close_text(self) -> None:
        """No more text will come; the job finishes after the chunks already fed."""
        if not self._text_closed:
            self._text_closed = True
            self._texts.put_nowait(None)

    async def _next_text(self) -> str | None:
        return await self._texts.get()

    async def _prefetch(self, index: int) -> TokenQueue | None:
        """Start chunk `index`'s generation once chunk index-1 has finished generating and the voice is known,
        so it overlaps with chunk index-1's decode and delivery. None when no more text will come."""
        await asyncio.gather(self._generation_tasks[index - 1], return_exceptions=True)
        speaker = self.speaker_of(index)
        # A voice heard before speaks with the global tokens it had; a voice new here has none to wait for.
        if any(self.speaker_of(i) is speaker for i in range(index - 1, -1, -1)):
            await speaker.ready.wait()
        await self._pace()  # no generation far ahead of playback
        text = await self._next_text()
        return None if text is None else self._start_generation(index, text)

    def _open_handle(self) -> None:
        self.playback = PlaybackClock(self.arrival, clock=self.scheduler.clock)
        if not self.request.paced:  # no client plays it as it comes: deadlines as if it played from arrival
            self.playback.start_playback(self.arrival)
        self.handle = self.scheduler.open_stream(
            self.playback,
            owner=self.request.key_id,
            work_class=self.request.work_class,
            super_resolved=self.request.want_sr,
        )
        self.chain.handle = self.handle

    async def _produce(self) -> None:
        try:
            self._open_handle()  # inside: a stream the scheduler cannot open fails the job, never hangs its reader
            idle = self.resources.idle
            if idle is not None and not idle.awake:  # a socket utterance whose text came after the idle time
                await idle.wake()
            async with asyncio.timeout(self.resources.settings.limits.request_deadline_s):
                await self._produce_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure reaches the consumer as a SynthesisError
            self.error = classify_failure(exc)
            if self.error is not exc:
                self.error.__cause__ = exc  # the GPU-fault detector looks at the original exception
            if not isinstance(exc, SynthesisError):
                logger.warning("synthesis failed", exc_info=exc, extra={"error_code": self.error.code})
            await self.queue.put(self.error)
        finally:
            self.ended = True
            if self.handle is not None:
                self.handle.close()  # windows not yet run are dropped
            prefetch = self._prefetch_task
            if prefetch is not None and not prefetch.done():
                prefetch.cancel()
            for task in self._generation_tasks.values():
                if not task.done():
                    task.cancel()
            pending = [t for t in (prefetch, *self._generation_tasks.values()) if t is not None]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _produce_all(self) -> None:
        """Every text chunk in order, each one's generation overlapping the previous chunk's decode."""
        text = await self._next_text()
        current = None if text is None else self._start_generation(0, text)
        index = 0
        while current is not None:
            self._prefetch_task = asyncio.create_task(
                self._prefetch(index + 1), name=f"prefetch-{self.request.request_id}-{index + 1}"
            )
            await self._decode_text_chunk(index, current)
            current = await self._prefetch_task
            index += 1
        self.stats.generation_done = True
        self.stats.decode_done = True
        await self._silence(index)  # a break after the last text
        await self._emit(await self.chain.finish())
        if (
            self.timestamps is not None
        ):  # the last chunk's words (and any left), now that the true end is known
            await self._timings(
                self.timestamps.end_segment, self.stats.output_samples / self.request.sample_rate
            )
        for hook in self.on_complete:  # optional: a failing hook is logged and counted, the request completes
            await run_optional("on_complete", partial(hook, self), self.request.request_id)
        await self.queue.put(END_OF_TOKENS)

    # ------------------------------------------------------------------ consumer side
    async def stream_bytes(self) -> AsyncGenerator[bytes, None]:
        """Encoded audio as it is produced. Raises SynthesisError on failure. Closing it cancels all work."""
        async with contextlib.aclosing(self.stream_events()) as events:
            async for item in events:
                if isinstance(item, bytes):
                    yield item

    async def stream_events(self) -> AsyncGenerator[bytes | TimestampsEvent, None]:
        """`stream_bytes` with, when the request asked for timestamps, TimestampsEvent items behind the audio: each
        holds the words the audio sent so far settles (a stream) or a text chunk's words (a complete answer)."""
        producer = asyncio.create_task(self._produce(), name=f"synth-{self.request.request_id}")
        try:
            while True:
                item = await self.queue.get()
                if item is END_OF_TOKENS:
                    self.stats.send_done = True
                    return
                if isinstance(item, SynthesisError):
                    raise item
                if isinstance(item, TimestampsEvent):
                    yield item
                    continue
                data, samples = item
                self.stats.sent_chunks += 1
                self.stats.sent_bytes += len(data)
                self.stats.sent_samples += samples
                yield data
        finally:
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def collect(self) -> bytes:
        """The whole file (non-streaming responses)."""
        parts = [part async for part in self.stream_bytes()]
        return b"".join(parts)


async def warmup_pipeline(resources: PipelineResources) -> None:
    """One short request through every stage (LLM, parser, decoder, SR if loaded, encoder)."""
    voice = resources.voices.resolve(resources.voices.default_voice_id)
    settings = resources.settings
    request = SynthesisRequest(
        request_id="warmup",
        text="Hello.",
        voice=voice,
        sampling=SamplingOptions.with_defaults(
            settings, max_tokens=min(settings.sampling.default_max_tokens, 200), seed=0
        ),
        audio_format="wav",
        sample_rate=SR_RATE if resources.sr is not None else NATIVE_RATE,
        want_sr=resources.sr is not None,
        stream=True,
    )
    await SynthesisJob.planned(resources, request).collect()
    # Chinese word timestamps' segmenter: a request's first text chunk starts its timestamp track on the event loop,
    # so the dictionary loads here rather than stalling every stream at the first Chinese request.
    await asyncio.to_thread(load_segmenter)
