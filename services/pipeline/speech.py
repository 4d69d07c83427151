"""The one entry point to synthesis for every transport: HTTP, OpenAI (bytes or SSE) and WebSocket.

A route turns its protocol model into a `SpeechRequest` (`to_speech_request`), then `SpeechService`:
1. `check_available()`: refuses while the GPU is faulted or the model is not ready, and refuses a new stream the
   codec scheduler has no headroom for (`services.device.admission`; 503 with Retry-After, every transport);
2. `voice()`: the voice by id or alias (`builtin_voice`), a custom voice the caller's key owns, or the request's
   own reference audio (per-request cloning), at the asked speed, with one error message for every route;
3. `open()`: reads the text once (`document`: a `SpeechDocument`), resolves every voice it speaks in once
   (`speaking_voices`), plans the document (normalise, tags, chunks, the per-request caps, prompt room) off the
   event loop, reserves credits for what the model will speak, and returns the job ready to run.
WebSocket utterances get their text in pieces, so they take steps 1-2 here and plan each piece as it arrives
(`services.sessions.ws_session`). What happens after (delivery, accounting) is `services.usage.accounting`'s.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from audio.time_stretch import MAX_SPEED, MIN_SPEED
from core.voices import UnknownVoiceError, Voice, is_custom_voice_id, time_stretch_for, voice_with_speed
from processing.lexicon import DictionaryLocator, Lexicon
from processing.voice_description import VoiceAttributes
from services.device.key_share import TextTurns, engine_step_gate
from services.errors import cloning_unavailable, voice_not_found
from services.pipeline.buffered import check_buffered
from services.pipeline.hooks import ContinuityHooks, CustomVoices, Payer, PronunciationLexicons
from services.pipeline.load_shed import BACKLOG
from services.pipeline.markup import plan_document, read_request_text, take_key_silence
from services.pipeline.segment_voices import (
    SpeakingVoices,
    check_voices_fit,
    is_private,
    resolve_segment_voices,
)
from services.pipeline.silence_quota import BREAK_SILENCE
from services.pipeline.synthesis import (
    NATIVE_RATE,
    SamplingOptions,
    SynthesisError,
    SynthesisJob,
    SynthesisRequest,
)
from services.pipeline.text_plan import TextPlan, check_words_speakable

if TYPE_CHECKING:
    from core.streaming import LatencyPreference
    from processing.speech_document import SpeechDocument
    from services.device.work_class import WorkClass
    from services.pipeline.gpu_faults import GpuFaultDetector
    from services.pipeline.resources import IdleGate, ModelSource
    from services.pipeline.timestamps import TimestampsKind
    from shared.settings import Settings

logger = logging.getLogger("services.pipeline.speech")
_UNSET: Any = object()

# Texts up to this long are planned on the event loop (~2.3 us per character: under 1 ms), longer ones (and any with
# alias rules: a first compile takes up to ~0.1 s) in a worker thread. A hop to a worker costs up to a GIL switch
# interval (5 ms) of first audio, more than a short plan; planning 50,000 characters on the loop stalls every stream.
INLINE_PLAN_CHARS = 400


@dataclass(frozen=True)
class SpeechRequest:
    """What any transport asks for, in the service's terms (protocol models build it with defaults merged)."""

    text: str
    voice: str | None
    audio_format: str
    sample_rate: int
    sampling: SamplingOptions
    # Compressed formats: bits per second (ElevenLabs' `mp3_44100_128`); None: the encoder's default for the rate.
    bitrate: int | None = None
    stream: bool = True
    read_whole: bool = False  # streamed as made, read whole before it plays: not paced (SynthesisRequest)
    normalize: bool = True
    chunking: bool = True
    speed: float | None = None
    normalize_verbose: bool = False
    latency: LatencyPreference | None = None  # None: the deployment's default (TTS_DEFAULT_LATENCY)
    reference_audio: bytes | None = (
        None  # per-request cloning: the reference file's bytes (never with `voice`)
    )
    reference_text: str | None = None  # its transcript (continuation prompt)
    # gender / pitch / speed_level: a voice created for this request from Spark-TTS's labels (`described_voice`).
    voice_attributes: VoiceAttributes | None = None
    timestamps: TimestampsKind | None = None  # "word" / "character": spans travel with the audio (opt-in)
    # Request stitching (services.continuity): continue these earlier requests of the same key (server request ids,
    # oldest first, at most 3). previous_text / next_text are accepted and never spoken (see services.continuity).
    previous_request_ids: tuple[str, ...] = ()
    previous_text: str | None = None
    next_text: str | None = None
    # How the protocol names these fields, for error messages (OpenAI: `input` and `voice`).
    text_field: str = "text"
    voice_field: str = "speaker"
    # Live (a listener waits) or background (long-form jobs: idle device time only; see services.device.work_class).
    work_class: WorkClass = "live"
    # SSML and pronunciation (services/pipeline/markup.py): `ssml` None reads the text as SSML when it looks like it
    # (processing/ssml.py:looks_like_ssml); alias rules from the key's dictionaries, then the request's own.
    ssml: bool | None = None  # on a socket (text comes later) None is False
    dictionaries: tuple[DictionaryLocator, ...] = ()
    lexicon: Lexicon | None = None

    @property
    def wants_bandwidth_extension(self) -> bool:
        """The one output-rate decision: above the codec's 16 kHz, AP-BWE makes 48 kHz (then resampled)."""
        return self.sample_rate > NATIVE_RATE


@dataclass(frozen=True)
class OpenedSpeech:
    """A planned, paid-for job, not yet running (iterate `job.stream_bytes()` to run it)."""

    job: SynthesisJob
    plan: TextPlan
    voice: Voice
    wake_ms: float | None = None  # how long this request waited for the device to wake from idle sleep


class SpeechService:
    """Readiness, voices, planning and credits for one app instance; stateless per request."""

    def __init__(
        self,
        models: ModelSource,
        settings: Settings,
        gpu_faults: GpuFaultDetector | None = None,
        library: CustomVoices | None = None,
        continuity: ContinuityHooks | None = None,
        dictionaries: PronunciationLexicons | None = None,
    ) -> None:
        self.models = models
        self.settings = settings
        self.gpu_faults = gpu_faults
        self.library = library  # custom voices and per-request references; None: neither is offered
        self.continuity = continuity  # remembers finished requests and stitches; None: neither is offered
        self.dictionaries = dictionaries  # pronunciation dictionaries; None: none are offered
        # Idle sleep's gate, read once the models are ready (it is fixed from then on); _UNSET until then.
        self._idle: IdleGate | None = _UNSET
        # Long text is planned in a worker thread taking turns between keys with the engine's steps.
        self.text_turns = TextTurns(
            lambda: engine_step_gate(self.models.pipeline_resources().engine) if self.models.ready else None
        )

    async def check_available(
        self, *, admit: bool = True, key_id: str | None = None, live: bool = True, super_resolved: bool = True
    ) -> float | None:
        """Refuse while the GPU is faulted, the model not ready or first audio backlogged; wake the device from idle
        sleep (the request waits; nothing is refused for it); then, with `admit`, ask admission for a new stream of
        the key `key_id`. A check that starts no stream (a socket validating its voice at connect) passes
        `admit=False`: admission counts every stream it lets in, and its ramp refuses past 32 a second. A background
        request (`live=False`: a job's chapter) is never refused for load (no backlog shed, no admission): it waits
        for device time live streams leave (services/device/background.py). `super_resolved`: through AP-BWE
        (admission weighs it: carried.py). Returns the milliseconds waited for a wake (None: the device was awake)."""
        if self.gpu_faults is not None and self.gpu_faults.tripped:
            raise SynthesisError(
                "GPU_FAULT",
                "This container hit a GPU fault and is being replaced; retry the request.",
                retry_after=1,
            )
        if not self.models.ready:
            raise SynthesisError(
                "MODEL_NOT_LOADED",
                f"The model is not ready yet (state: {self.models.state_name}); retry shortly.",
                retry_after=5,
            )
        if live:
            BACKLOG.check(
                self.settings.access.shed_first_audio_s
            )  # SERVER_OVERLOADED before queueing behind a backlog
        wake_ms = None
        idle = self._idle
        if idle is _UNSET:
            idle = self._idle = self.models.pipeline_resources().idle
        if idle is not None:
            if idle.awake:
                idle.touch()
            else:
                wake_ms = await wake_device(idle)
        if admit and live:
            await self.admit(key_id, super_resolved=super_resolved)
        return wake_ms

    async def admit(self, key_id: str | None = None, *, super_resolved: bool = True) -> None:
        """Overload is refused, not spread: a new stream past the codec scheduler's measured headroom gets
        SERVER_OVERLOADED (503 with Retry-After; the dialects' own refusal on sockets) and every admitted stream keeps
        real time. Near a limit that passes by itself (spacing, the ramp) the caller waits up to
        TTS_ADMISSION_MAX_WAIT_MS instead (`Admission.admit`), before any credit is reserved. When the device is
        short, the key over its share is the one refused (`key_id`; services.device.admission, "Each key's share").
        A key's stream that continues one of its streams just closed or still playing (the next sentence of a reply
        sent one HTTP request per sentence) is admitted without asking (services/device/continuations.py)."""
        resources = self.models.pipeline_resources()
        admission, continuations = resources.admission, resources.continuations
        if admission is None:
            return
        if continuations is not None and continuations.take(key_id):
            # the key's next sentence within a reply: admitted like the stream it continues (continuations.py)
            logger.info("admission_continued", extra={"event": "admission_continued"})
            return
        decision = await admission.admit(key=key_id, super_resolved=super_resolved)
        if not decision.admit:
            # Every refusal with its rule (the metric counts them; the log says which stream and why).
            logger.warning(
                "admission_refused",
                extra={
                    "event": "admission_refused",
                    "rule": decision.rule,
                    "reason": decision.reason,
                    "retry_after_s": decision.retry_after_s,
                },
            )
            raise SynthesisError(
                "SERVER_OVERLOADED",
                f"This server is at capacity ({decision.reason}); retry shortly or on another server.",
                retry_after=max(1, int(decision.retry_after_s)),
            )

    def check_text_length(self, text: str) -> None:
        """The deployment's per-request limit (TTS_MAX_TEXT_CHARS), before anything else is looked at."""
        limit = self.settings.limits.max_text_chars
        if len(text) > limit:
            raise SynthesisError(
                "TEXT_TOO_LONG",
                f"Invalid 'text': at most {limit} characters per request on this "
                f"deployment, got {len(text)}; split the text.",
                "text",
            )

    def builtin_voice(self, name: str | None, field: str) -> Voice:
        """A built-in voice by id or alias (None: the default); INVALID_SPEAKER naming `field`."""
        voices = self.models.pipeline_resources().voices
        try:
            return voices.resolve(name or voices.default_voice_id)
        except UnknownVoiceError as exc:
            raise SynthesisError("INVALID_SPEAKER", f"Invalid '{field}': {exc}", field) from exc

    async def voice(self, speech: SpeechRequest, key_id: str | None) -> Voice:
        """The voice a request asked for, for the key `key_id`, at its speed: the request's own reference audio, a
        custom voice that key owns (404 VOICE_NOT_FOUND for any other key), or a built-in voice; with voice
        attributes, a voice created from them (`described_voice`)."""
        attributes = speech.voice_attributes
        if attributes is not None and attributes.named:
            base = await self.voice(dataclasses.replace(speech, voice_attributes=None, speed=None), key_id)
            voice = described_voice(base, attributes)
            # With a speed level named, `speed` is only the time-stretch; otherwise it picks the label as for any
            # style voice.
            speed = None if attributes.speed_level is not None else speech.speed
        else:
            voice, speed = await self.named_voice(speech, key_id), speech.speed
        return voice_with_speed(voice, speed)

    async def named_voice(self, speech: SpeechRequest, key_id: str | None) -> Voice:
        """The voice the request names (or its reference audio), at its own speed."""
        if speech.reference_audio is not None:
            if self.library is None:
                raise cloning_unavailable("this server has no voice library")
            return await self.library.reference_voice(
                speech.reference_audio, speech.reference_text, key_id=key_id
            )
        name = speech.voice
        resources = self.models.pipeline_resources()
        if name and not resources.voices.defines(name):
            # TTS_OPENAI_VOICE_MAP may point an OpenAI name (all Pipecat can send) at a custom voice id.
            name = resources.openai_custom_voices.get(name.casefold(), name)
        if name and is_custom_voice_id(name) and name not in resources.voices:
            if self.library is None:
                raise voice_not_found(name, speech.voice_field)
            return await self.library.voice_for(name, key_id, speech.voice_field)
        return self.builtin_voice(name, speech.voice_field)

    async def speaking_voices(
        self, speech: SpeechRequest, document: SpeechDocument, key_id: str | None
    ) -> SpeakingVoices:
        """Every voice the request speaks in, resolved (or refused) before planning: its own, stitched to
        `previous_request_ids` when asked, each `[voice:NAME]` marker's; and the time-stretch its speed leaves."""
        unstitched = voice = await self.voice(speech, key_id)
        if speech.previous_request_ids:
            voice = await self.stitched(speech, voice, key_id)
        segments = await self.segment_voices(speech, document, voice, key_id)
        return SpeakingVoices(
            voice,
            time_stretch=stretch_for(speech, voice),
            unstitched=unstitched if voice is not unstitched else None,
            segments=segments,
        )

    async def segment_voices(
        self, speech: SpeechRequest, document: SpeechDocument, voice: Voice, key_id: str | None
    ) -> dict[str, Voice]:
        """The voices the text's `[voice:NAME]` markers name, each resolved as the request's own (`voice`) was."""

        async def resolve(name: str) -> Voice:
            return await self.voice(
                replace(speech, voice=name, reference_audio=None, reference_text=None), key_id
            )

        written = (
            speech.text_field != "inputs"
        )  # ElevenLabs' dialogue writes its markers from inputs' voice_id
        field = speech.text_field if written else None
        return await resolve_segment_voices(document, voice, speech.voice, resolve, field)

    async def stitched(self, speech: SpeechRequest, voice: Voice, key_id: str | None) -> Voice:
        """`voice` continuing `speech.previous_request_ids` (services.continuity)."""
        if self.continuity is None:
            raise SynthesisError(
                "VALIDATION_ERROR",
                "Invalid 'previous_request_ids': this server keeps no recent requests.",
                "previous_request_ids",
            )
        if speech.reference_audio is not None:
            raise SynthesisError(
                "VALIDATION_ERROR",
                "Invalid 'previous_request_ids': a stitched request speaks with "
                "the previous request's voice; leave out the reference audio.",
                "previous_request_ids",
            )
        return await self.continuity.stitched_voice(
            voice,
            speech.previous_request_ids,
            key_id,
            voice_named=speech.voice is not None,
            voice_field=speech.voice_field,
        )

    def synthesis_request(
        self, speech: SpeechRequest, voices: SpeakingVoices, request_id: str, key_id: str | None = None
    ) -> SynthesisRequest:
        """The job's request; a voice built from the key's own recordings (custom, reference, a stitched tail) has its
        prompts cached under that key only (`cache_scope`)."""
        voice, segment_voices = voices.voice, voices.segments
        private = is_private(voice) or any(is_private(v) for v in segment_voices.values())
        return SynthesisRequest(
            request_id=request_id,
            text=speech.text,
            voice=voice,
            sampling=speech.sampling,
            audio_format=speech.audio_format,
            sample_rate=speech.sample_rate,
            bitrate=speech.bitrate,
            want_sr=speech.wants_bandwidth_extension,
            stream=speech.stream,
            read_whole=speech.read_whole,
            normalize=speech.normalize,
            chunking=speech.chunking,
            latency=speech.latency or self.settings.stream.default_latency,
            normalize_verbose=speech.normalize_verbose,
            time_stretch=voices.time_stretch,
            timestamps=speech.timestamps,
            lexicon=speech.lexicon,
            ssml=bool(speech.ssml),
            cache_scope=f"key:{key_id}" if private and key_id else None,
            key_id=key_id,
            segment_voices=segment_voices,
            work_class=speech.work_class,
        )

    async def document(self, speech: SpeechRequest, key_id: str | None) -> SpeechDocument:
        """The request's text read once, with the alias rules of its dictionaries and its own."""
        lexicon = await self.lexicon(speech, key_id)
        return read_request_text(speech.text, lexicon, ssml=speech.ssml, text_field=speech.text_field)

    async def lexicon(self, speech: SpeechRequest, key_id: str | None) -> Lexicon | None:
        """The alias rules of the request's dictionaries (404 for one the key does not own), then its own."""
        lexicon = speech.lexicon
        if speech.dictionaries:
            if self.dictionaries is None:
                raise SynthesisError(
                    "VALIDATION_ERROR",
                    "Invalid 'pronunciation_dictionary_locators': this server keeps no pronunciation dictionaries.",
                    "pronunciation_dictionary_locators",
                )
            stored = await self.dictionaries.lexicon_for(speech.dictionaries, key_id)
            lexicon = stored if lexicon is None else stored + lexicon
        return lexicon

    def plan(
        self,
        speech: SpeechRequest,
        document: SpeechDocument,
        voices: SpeakingVoices,
        *,
        buffered: bool,
        how_to_stream: str | None = None,
        pause: Callable[[], None] = lambda: None,
    ) -> TextPlan:
        """Blocking (normalising and tokenising 50,000 characters takes a while): run it as a text step
        (`text_turns`), which passes `pause`."""
        settings = self.settings
        plan = plan_document(
            document, settings, normalize=speech.normalize, chunking=speech.chunking, pause=pause
        )
        check_voices_fit(self.models.pipeline_resources(), plan, voices)
        check_words_speakable(plan)
        if buffered:
            audio = (speech.audio_format, speech.sample_rate)
            check_buffered(len(speech.text), len(plan.text), audio, settings.limits, how_to_stream)
        return plan

    async def open(
        self,
        speech: SpeechRequest,
        payer: Payer | None = None,
        *,
        request_id: str,
        buffered: bool = False,
        how_to_stream: str | None = None,
    ) -> OpenedSpeech:
        """Gate, resolve (for the payer's key), plan and pay (the payer reserves credits for the planned text; None:
        nobody pays, no key); SynthesisError (with the protocol's field names) or ServiceError when refused."""
        key_id = None if payer is None else payer.key_id
        try:
            self.check_text_length(speech.text)
        except SynthesisError as exc:
            raise _renamed(exc, speech.text_field) from None
        wake_ms = await self.check_available(
            key_id=key_id, live=speech.work_class == "live", super_resolved=speech.wants_bandwidth_extension
        )
        document = await self.document(speech, key_id)
        if document.rate is not None:  # a <prosody rate> around all the text: its speed
            speed = min(max((speech.speed or 1.0) * document.rate, MIN_SPEED), MAX_SPEED)
            speech = replace(speech, speed=None if speed == 1.0 else speed)
        if speech.reference_audio is not None and payer is not None:
            await payer.check_balance()  # a key without credits never reaches the decoder or the encoder
        voices = await self.speaking_voices(speech, document, key_id)
        plan_args = (speech, document, voices)
        try:
            if len(speech.text) <= INLINE_PLAN_CHARS and document.lexicon is None:
                plan = self.plan(*plan_args, buffered=buffered, how_to_stream=how_to_stream)
            else:
                plan = await self.text_turns.run(
                    key_id,
                    lambda pause: self.plan(
                        *plan_args, buffered=buffered, how_to_stream=how_to_stream, pause=pause
                    ),
                )
        except SynthesisError as exc:
            raise _renamed(exc, speech.text_field) from exc.__cause__
        if plan.pauses:  # SSML breaks within the key's silence per minute (processing/ssml.py)
            plan = take_key_silence(plan, BREAK_SILENCE.of(key_id or ""))
        if payer is not None:
            # Credits count what the model is asked to speak (normalised text: "1,000" costs "one thousand").
            await payer.check_credits(len(plan.text))
        request = self.synthesis_request(speech, voices, request_id, key_id)
        job = SynthesisJob(self.models.pipeline_resources(), request, plan)
        if self.continuity is not None:
            self.continuity.track(job, key_id)
        return OpenedSpeech(job=job, plan=plan, voice=voices.voice, wake_ms=wake_ms)


async def wake_device(idle: IdleGate) -> float | None:
    """Wait for the device to wake from idle sleep; a failed wake is a 503 the client may retry at once (the next
    request tries the wake again)."""
    try:
        return await idle.wake()
    except RuntimeError as exc:
        raise SynthesisError(
            "SERVICE_UNAVAILABLE", f"The device did not wake from idle sleep ({exc}); retry.", retry_after=1
        ) from exc


def described_voice(base: Voice, attributes: VoiceAttributes) -> Voice:
    """A style voice (a controllable prompt) from `attributes`; what they leave out comes from `base` where it has
    labels (its gender; its levels when it is a style voice), else female and moderate. Its id names the labels
    (`described:male:low:moderate`), so metrics and logs stay bounded and readable."""
    style = base.kind == "style"
    gender = attributes.gender or base.gender or "female"
    pitch = attributes.pitch or (base.pitch if style else "moderate")
    speed = attributes.speed_level or (base.speed if style else "moderate")
    return Voice(
        id=f"described:{gender}:{pitch}:{speed}",
        name=f"Described voice ({gender}, pitch {pitch}, speed {speed})",
        kind="style",
        gender=gender,
        pitch=pitch,
        speed=speed,
    )


def stretch_for(speech: SpeechRequest, voice: Voice) -> float:
    """The time-stretch of a request: the whole `speed` when the request named a speed level (the label is then
    the request's, not one picked from `speed`), else `time_stretch_for`."""
    attributes = speech.voice_attributes
    if attributes is not None and attributes.speed_level is not None:
        return speech.speed or 1.0
    return time_stretch_for(voice, speech.speed)


def _renamed(exc: SynthesisError, text_field: str) -> SynthesisError:
    """The same refusal, naming the text field as this protocol does."""
    if text_field == "text" or exc.param not in (None, "text"):
        return exc
    return SynthesisError(
        exc.code, exc.message.replace("'text'", f"'{text_field}'"), text_field, retry_after=exc.retry_after
    )
