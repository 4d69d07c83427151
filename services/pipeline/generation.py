"""The job's generation step: one engine task per try of a text chunk (`ChunkGeneration`), which builds the chunk's
prompt in its speaker's voice, samples within the request's budgets, parses the ids as they come and hands the
semantic ids to the decoder (services/pipeline/synthesis.py) through a bounded `TokenQueue`; the generation guards
(chunk_guards.py) watch them and end a try with a `Trip`."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.guards import Trip
from core.llm import SamplingConfig
from core.llm.engine_pace import EnginePace
from core.tokens import NoSpeechError, TokenParser, TokenStreamError
from services.pipeline.chunk_guards import ChunkRun, retry_seed
from services.pipeline.text_plan import prompt_for
from services.pipeline.token_queue import TokenQueue
from shared import metrics

if TYPE_CHECKING:
    from core.voices import Voice
    from services.device.admission import Admission
    from services.pipeline.chunk_guards import GuardPolicy
    from services.pipeline.pipeline_stats import PipelineStats
    from services.pipeline.resources import PipelineResources
    from services.pipeline.spoken_tail import SpokenTail
    from services.pipeline.synthesis_request import Speaker, SynthesisRequest
    from services.pipeline.text_plan import TextPlan

logger = logging.getLogger("services.pipeline.synthesis")

# `max_tokens` counts semantic tokens (the public contract). Before them, a controllable/speaker generation
# spends ~39 ids on acoustic labels, the 32 global tokens and their markers; the engine's budget adds this.
PREAMBLE_TOKEN_ALLOWANCE = 64
# Parsed deltas waiting between one generation and its decoder (an engine delta is usually 1-8 ids): about a
# second of audio, so a held-up decoder stops generation soon rather than a whole text chunk later.
TOKEN_QUEUE_ITEMS = 64
END_OF_TOKENS = object()  # what a try puts on its queue after its last ids when no guard ended it


def draw_seed() -> int:
    """A fresh seed for a request that gave none. vLLM seeds unseeded requests from the engine seed, so without
    this every fresh container would repeat the same sequence of "random" voices
    (docs/reference/spark-tts.md#sampling)."""
    return secrets.randbelow(2**31)


class ChunkGeneration:
    """The generation half of a `SynthesisJob`: the job's state it reads is declared here, set by the job."""

    resources: PipelineResources
    request: SynthesisRequest
    plan: TextPlan
    admission: Admission | None
    guards: GuardPolicy
    stats: PipelineStats
    spoken: SpokenTail
    speaker: Speaker
    _speakers: dict[int, Speaker]
    _runs: dict[int, ChunkRun]
    _generation_tasks: dict[int, asyncio.Task[Any]]

    def speaker_of(self, index: int) -> Speaker:
        """The speaker of text chunk `index`: the request's voice unless a voice segment names another."""
        name = self.plan.chunk_voices[index] if index < len(self.plan.chunk_voices) else None
        voice = self.request.segment_voices.get(name) if name is not None else None
        return self.speaker if voice is None else self._speakers[id(voice)]

    def _sampling(self, prompt_len: int, run: ChunkRun, mode: str) -> SamplingConfig:
        s = self.request.sampling
        settings = self.resources.settings
        room = max(16, settings.llm.max_model_len - prompt_len)
        # Runaway cap: the model sometimes never emits its stop id; the length guard's limit, when higher, acts first.
        text_cap = max(
            int(len(run.text) * settings.guards.max_tokens_per_char) + 100, run.guards.length.limit + 1
        )
        preamble = 2 if mode == "clone" else PREAMBLE_TOKEN_ALLOWANCE
        budget = max(1, min(s.max_tokens + preamble, room, text_cap))
        seed = draw_seed() if s.seed is None else retry_seed(s.seed, run.attempt)
        return replace(
            s,
            max_tokens=budget,
            seed=seed,
            cache_salt=self.request.cache_scope,
            owner=self.request.key_id,
            work_class=self.request.work_class,
            pace=self._engine_pace(),
            stop_token_ids=tuple(self.resources.layout.stop_token_ids),
            # No allowed_token_ids: vLLM's GPU runner refuses more than 1,024 inside the engine step, which kills
            # the engine (docs/reference/modal-vllm.md#per-request-limits-of-the-gpu-runner). The clone-mode parser
            # drops every non-semantic id instead and counts them (veena3_tts_parser_ignored_tokens_total).
        )

    def _engine_pace(self) -> EnginePace | None:
        """Live requests whose audio is streamed are held near real time in the engine (TTS_LLM_PACE_LEAD_IDS);
        a job's or a request read whole (not streamed, or `read_whole`) runs free: nobody plays it as it comes."""
        llm = self.resources.settings.llm
        if llm.llm_pace_lead_ids <= 0 or not self.request.paced or self.request.work_class != "live":
            return None
        return EnginePace(llm.llm_pace_lead_ids, llm.llm_pace_rate).faster(self.request.time_stretch)

    async def _generate(self, run: ChunkRun, out: asyncio.Queue[Any]) -> None:
        """Run the LLM for one try of a text chunk, parse ids as they come, hand semantic ids to `out`; the guards
        watch them, and an acting `Trip` ends the try (it goes to `out` in place of the end).

        A continuation prompt (a cloned voice with its transcript) that ends before any speech is generated once
        more as the plain clone prompt (the same 32 global tokens, no reference): the model took the reference as
        the whole utterance. The demo checkpoint does this whenever the recording is longer than its transcript
        would take to say (it paces by the prompt's ratio of text to speech ids); nothing was sent for the chunk, so
        the retry is invisible to the client apart from the voice imitating less closely."""
        voice = self.speaker_of(run.index).voice
        try:
            try:
                trip = await self._run_engine(run, voice, out)
            except NoSpeechError:
                if not voice.continuation:
                    raise
                logger.warning(
                    "continuation_without_speech",
                    extra={
                        "event": "continuation_without_speech",
                        "request_id": self.request.request_id,
                        "text_chunk": run.index,
                    },
                )
                trip = await self._run_engine(
                    run, replace(voice, reference_text=None, reference_semantic=None), out
                )
            await out.put(END_OF_TOKENS if trip is None else trip)
        except asyncio.CancelledError:
            raise  # the consumer is cancelling this job; nobody reads `out` any more
        except Exception as exc:
            await out.put(exc)
            raise

    async def _run_engine(self, run: ChunkRun, voice: Voice, out: asyncio.Queue[Any]) -> Trip | None:
        resources = self.resources
        index, text = run.index, run.text
        speaker = self.speaker_of(index)
        use_globals = speaker.global_tokens
        # Unique per generation even when a client reuses an X-Request-ID for concurrent requests.
        request_id = f"{self.request.request_id}-{index}-{uuid.uuid4().hex[:8]}"
        # The request's speech limit (chunk_guards): what the text so far allows, less what earlier chunks kept.
        room = self.guards.speech_room(
            sum(len(c) for c in self.plan.chunks[: index + 1]),
            sum(r.tokens for i, r in self._runs.items() if i < index),
        )
        if room <= 0:
            return self.guards.limit_trip(run, 0)
        semantic_left = min(self.request.sampling.max_tokens, room)
        trip: Trip | None = None
        # Inside the caller's try: a prompt that cannot be built must reach the decoder waiting on `out` as an error.
        prompt_ids, mode = prompt_for(resources, text, voice, use_globals)
        parser = TokenParser(resources.layout, mode=mode)
        sampling = self._sampling(len(prompt_ids), run, mode)
        admission = self.admission
        background = resources.admission if self.request.work_class == "background" else None
        stats, guards, spoken = self.stats, self.guards, self.spoken
        # The token counter is a locked metric: counted once per try (at its end) rather than per engine delta.
        generated_at_start = stats.llm_tokens
        async with asyncio.timeout(resources.settings.limits.generation_timeout_s):
            stream = resources.engine.stream(prompt_ids, sampling, request_id)
            # The engine's count of generating requests includes a background one: admission's does not.
            if background is not None:
                background.background_generating += 1
            try:
                async for new_ids in stream:
                    count = len(new_ids)
                    stats.llm_tokens += count
                    if admission is not None:  # the LLM's pace, one of admission's measures
                        admission.note_tokens(count)
                    delta = parser.feed(new_ids)
                    if delta.global_tokens is not None:
                        speaker.learn(tuple(delta.global_tokens))
                    semantic = delta.semantic  # a new list per delta, owned by this loop from here on
                    if len(semantic) > semantic_left:
                        semantic = semantic[: max(0, semantic_left)]
                    if semantic:
                        if index == 0 and stats.preamble_ids is None:
                            stats.preamble_ids = stats.llm_tokens - len(semantic)
                        semantic_left -= len(semantic)
                        trip = guards.screen_tokens(run, semantic)
                        if trip is not None:  # an acting guard: nothing after its detection point goes on
                            semantic = semantic[: max(0, trip.token - run.tokens)]
                        run.tokens += len(semantic)
                        if speaker is self.speaker:  # continuity's tail: the request's own voice only
                            spoken.add(index, text, semantic)
                        stats.semantic_tokens += len(semantic)
                        # Bounded: when the decoder is held up by a slow reader, generation waits here too
                        # (the awaiting `put` only when full: no coroutine per delta otherwise).
                        if semantic:
                            try:
                                out.put_nowait(semantic)
                            except asyncio.QueueFull:
                                await out.put(semantic)
                    if semantic_left <= 0 or trip is not None:
                        break  # max_tokens reached or a guard tripped: closing the stream aborts the rest
            finally:
                metrics.LLM_TOKENS.inc(stats.llm_tokens - generated_at_start)
                await stream.aclose()
                if background is not None:
                    background.background_generating -= 1
                if admission is not None:
                    # The request left the engine: admission integrates its count of generating requests between its
                    # own calls, so it must look now, or the count it saw last (this request) would be integrated
                    # over the idle time up to the next request and read as an LLM making no tokens (a second
                    # stream within ~1 s of an idle spell was refused as overloaded).
                    admission.pace()
        if (
            trip is None
            and semantic_left <= 0
            and room < self.request.sampling.max_tokens
            and not parser.finished
        ):
            trip = self.guards.limit_trip(
                run, room
            )  # the speech limit, not the caller's max_tokens, ended it
        if trip is None and not (
            voice.continuation and run.tokens == 0
        ):  # that case: NoSpeechError, the fallback
            trip = self.guards.screen_end(run, stopped=parser.finished, capped=semantic_left <= 0)
        if trip is None:
            parser.finish()
        if parser.ignored_count:
            metrics.PARSER_IGNORED_TOKENS.labels(mode).inc(parser.ignored_count)
        if speaker.global_tokens is None and trip is None:
            raise TokenStreamError("generation ended before the 32 global tokens were complete")
        return trip

    def _start_generation(self, index: int, text: str, run: ChunkRun | None = None) -> TokenQueue:
        if run is None:  # a text chunk's first try (else its next)
            run = self._runs[index] = self.guards.new_run(index, text, stream=self.request.stream)
        out = TokenQueue(maxsize=TOKEN_QUEUE_ITEMS)
        task = asyncio.create_task(self._generate(run, out), name=f"gen-{self.request.request_id}-{index}")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # exceptions travel through `out`
        self._generation_tasks[index] = task
        return out
