"""One utterance of a streaming session (a native `start ... end`, an ElevenLabs context, a Cartesia context_id):
the text buffer cut at sentence ends, the one incremental `SynthesisJob` (one voice, crossfaded joins), and the
counts and timings of its audio."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from audio.encoders import create_encoder
from core.guards.chunk import SAMPLES_PER_TOKEN
from core.guards.text_budget import SEMANTIC_TOKENS_PER_SECOND, expected_tokens, longest_spaced_word
from processing.segmenter import TextSegmenter
from processing.ssml import BreakBudget, SsmlReader
from services.pipeline.chunk_guards import delivered_chars
from services.pipeline.silence_quota import BREAK_SILENCE
from services.pipeline.synthesis import SynthesisError, SynthesisJob, SynthesisRequest
from services.pipeline.text_plan import MAX_WORD_LETTERS, plan_text
from services.usage.accounting import EndStatus, RequestAccounting, RequestReport, Transport

if TYPE_CHECKING:
    from services.pipeline.resources import PipelineResources


# Seconds of silence a dialect's context with nothing to speak (emoji, punctuation) gets before its end marker:
# Pipecat counts a context that ends without audio as a failure (three in a row disable the service), and over HTTP
# punctuation alone gets about this much audio.
NOTHING_TO_SPEAK_S = 0.3


class UtteranceGate(Protocol):
    """Limits and settlement per utterance (services.access.AccessGate implements it with the access services)."""

    key_id: str | None  # the key the connection authenticated with (logged with each utterance)

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        """Before text is accepted (credits). Raise SynthesisError to refuse the piece."""

    async def admit(self, utterance_id: str) -> None:
        """Before synthesis starts (rate limit, concurrency slot). Raise SynthesisError to refuse."""

    def settle(self, utterance_id: str, report: RequestReport | None, billable_characters: int = 0) -> None:
        """Exactly once per utterance, whatever happened (report None: it was never admitted, nothing was
        synthesised); must not raise and must not block. `billable_characters`: the normalised text the model was
        asked to speak, what HTTP charges for the same text (the pieces were held at their raw length)."""


class OpenGate:
    """No limits, no settlement (tests; servers without access services)."""

    key_id: str | None = None

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        return None

    async def admit(self, utterance_id: str) -> None:
        return None

    def settle(self, utterance_id: str, report: RequestReport | None, billable_characters: int = 0) -> None:
        return None


class Utterance:
    """One start ... end: the text buffer, the incremental job, and the timings and counts of its audio."""

    def __init__(
        self,
        resources: PipelineResources,
        request: SynthesisRequest,
        *,
        max_text_chars: int,
        context_id: str | None = None,
        transport: Transport = "websocket",
    ) -> None:
        settings = resources.settings
        self.transport: Transport = transport  # what the request log says carried it
        self.request = request
        self.id = request.request_id
        self.context_id = context_id  # the dialect's name for it (ElevenLabs contextId, Cartesia context_id)
        self.wire_state: dict[
            str, Any
        ] = {}  # per-utterance state a wire format keeps (offsets, pending timings)
        self.model_version = resources.model_version
        self.max_text_chars = max_text_chars
        # Smaller text chunks than HTTP's: the LLM generates a whole chunk however far its audio is ahead of
        # playback, so the chunk bounds how far an abandoned reply's generation runs ahead (settings).
        self.threshold = min(settings.text.chunking_threshold_chars, settings.text.stream_chunk_max_chars)
        self.target = min(settings.text.chunk_target_chars, settings.text.stream_chunk_max_chars)
        self.segmenter = TextSegmenter(threshold=self.threshold, target=self.target)
        self.job = SynthesisJob.fed(resources, request)
        # Cartesia's max_buffer_delay_ms: text held for a sentence end is spoken anyway once it has waited this long
        # (None: held until a sentence end, a flush or the end, as our WebSocket and ElevenLabs do).
        self.buffer_delay_s: float | None = None
        # SSML read before the cuts (processing/ssml.py), breaks silent: the native socket's `ssml`, ElevenLabs'
        # enable_ssml_parsing, always on Cartesia (those two dialects call `read_ssml`)
        self.ssml_reader = SsmlReader()
        self.breaks = (
            BreakBudget(  # per gap and per request; per key per minute (services/pipeline/silence_quota.py)
                settings.limits.ssml_max_total_break_s
            )
        )
        self.read_ssml(request.ssml)
        self._buffer_due: asyncio.TimerHandle | None = None
        self.text_parts: list[str] = []
        self._word_tail = ""  # the text's last MAX_WORD_LETTERS + 1 characters: a word may span pieces
        self.characters = 0
        self.spoken_characters = 0  # normalised, as fed to the model: what credits count
        self.text_open = True
        self.cancelled = False
        self.last_message_at = 0.0  # the session's clock at the client's latest message about this utterance
        self.opened_at = 0.0  # ... at its first message
        self.first_audio_at: float | None = None  # ... when its first audio chunk went to the outbox
        # cancelled | disconnected | ended_by_server | server_error | superseded | abandoned | interrupted | refused,
        # set before the task is cancelled; `stop_error`: the code its row carries when the stop is a failure
        self.stop_reason: str | None = None
        self.stop_error: SynthesisError | None = None
        self.has_work = asyncio.Event()  # set once text was fed or the utterance ended
        self.admitted_at: float | None = None
        self.paused = (
            False  # admitted, caught up with its text: its concurrency slot went back until more comes
        )
        self.accounting: RequestAccounting | None = None  # from admission on
        self.audio_bytes = 0  # handed to the outbox
        self.chunks = 0
        self.sent_bytes = 0  # on the wire (after a cancel, queued frames are dropped)
        self.sent_chunks = 0
        self.delivered_s = 0.0  # seconds of its audio (output time) whose frames the socket took
        self.max_s_per_char = settings.limits.max_audio_s_per_char
        self.last_audio_span = (0.0, 0.0)
        self.status: str | None = (
            None  # completed | failed | cancelled | disconnected | refused, once finished
        )
        self.report: RequestReport | None = None

    # ------------------------------------------------------------------ text
    def add_text(self, piece: str) -> int:
        """Buffer a piece; feed the parts that are ready. Returns how many text chunks were fed."""
        self.check_room(len(piece))
        self.text_parts.append(piece)
        self.characters += len(piece)
        fed = (
            self._feed_ssml(self.ssml_reader.push(piece))
            if self.ssml
            else self._feed(self.segmenter.push(piece))
        )
        self._arm_buffer_delay(restart=fed > 0)
        return fed

    def check_room(self, characters: int) -> None:
        if self.characters + characters > self.max_text_chars:
            raise SynthesisError(
                "TEXT_TOO_LONG",
                f"Invalid 'text': an utterance holds at most {self.max_text_chars} characters "
                f"({self.characters} received so far); send 'end' and start a new utterance.",
                "text",
            )

    def check_text(self, piece: str) -> None:
        """Refuse a piece before it is charged: over the utterance's length (`check_room`) or holding a word no try
        can speak (`check_words`)."""
        self.check_room(len(piece))
        self.check_words(piece)

    def check_words(self, piece: str) -> None:
        """Refuse, before it is charged or spoken, text holding a word no try can speak (VALIDATION_ERROR), as HTTP
        does per request (`check_words_speakable`): per utterance, across its pieces. Read on the text as sent: a
        word longer than the bound needs that many letters in a row, so the tail kept is enough."""
        joined = self._word_tail + piece
        longest = longest_spaced_word(joined)
        if longest > MAX_WORD_LETTERS:
            raise SynthesisError(
                "VALIDATION_ERROR",
                f"Invalid 'text': it holds a word of {longest} letters or more, "
                f"which the model cannot speak; at most {MAX_WORD_LETTERS} letters per word "
                "(separate words with spaces).",
                "text",
            )
        self._word_tail = joined[-(MAX_WORD_LETTERS + 1) :]

    def flush(self) -> int:
        """Synthesise everything buffered now, sentence end or not."""
        self._disarm_buffer_delay()
        fed = self._feed_ssml(self.ssml_reader.flush()) if self.ssml else 0
        return fed + self._feed(self.segmenter.flush())

    def _arm_buffer_delay(self, *, restart: bool) -> None:
        """After text arrived: what the segmenter still holds is flushed `buffer_delay_s` after its first piece
        (`restart`: a cut just took the older text, so the clock starts again for the rest)."""
        if self.buffer_delay_s is None:
            return
        if restart or not self.segmenter.pending.strip():
            self._disarm_buffer_delay()
        if self.segmenter.pending.strip() and self._buffer_due is None:
            self._buffer_due = asyncio.get_running_loop().call_later(
                self.buffer_delay_s, self._buffer_delay_due
            )

    def _buffer_delay_due(self) -> None:
        self._buffer_due = None
        if self.text_open and not self.cancelled:
            self.flush()

    def _disarm_buffer_delay(self) -> None:
        if self._buffer_due is not None:
            self._buffer_due.cancel()
            self._buffer_due = None

    def end(self) -> None:
        self.flush()
        self.text_open = False
        self.job.close_text()
        self.has_work.set()

    @property
    def text_chunks(self) -> int:
        return len(self.job.plan.chunks)

    def read_ssml(self, on: bool) -> None:
        """Read SSML in this utterance's text (or not); its breaks draw on the key's silence per minute."""
        self.ssml = on
        self.breaks.window = BREAK_SILENCE.of(self.request.key_id or "") if on else None

    def _feed_ssml(self, items: list[str | float]) -> int:
        """SSML's text goes to the segmenter; a break first sends the text before it, then its silence."""
        fed = 0
        for item in items:
            if isinstance(item, float):
                fed += self._feed(self.segmenter.flush())
                pause = self.breaks.take(item)
                if pause > 0:
                    self.job.add_pause(pause)  # silence before the next text, or at the end
            else:
                self.breaks.note_text(item)
                fed += self._feed(self.segmenter.push(item))
        return fed

    def _feed(self, parts: list[str]) -> int:
        fed = sum(self._feed_text(part) for part in parts)
        if fed:
            self.has_work.set()
        return fed

    def _feed_text(self, part: str) -> int:
        try:
            plan = plan_text(
                part,
                normalize=self.request.normalize,
                chunking=self.request.chunking,
                threshold=self.threshold,
                target=self.target,
                unknown_tags=self.request.unknown_tags,
                lexicon=self.request.lexicon,
            )
        except SynthesisError as exc:
            if exc.param == "lexicon":
                raise  # the alias rules' cost bound: refused, not taken for silence
            return 0  # nothing speakable in this part (only tags or emoji)
        if not any(ch.isalnum() for ch in plan.text):
            return 0  # punctuation only ("...", "!"): the vendors speak nothing for it, nor do we
        if self.job.timestamps is not None:
            self.job.timestamps.add_text(part, " ".join(plan.chunks))
        self.spoken_characters += len(plan.text)
        for chunk in plan.chunks:
            self.job.feed_text(chunk)
        return len(plan.chunks)

    def silence(self) -> bytes:
        """`NOTHING_TO_SPEAK_S` of silence in the output format (a context that had nothing to speak)."""
        encoder = create_encoder(self.request.audio_format, self.request.sample_rate, streaming=True)
        try:
            samples = np.zeros(round(NOTHING_TO_SPEAK_S * self.request.sample_rate), np.float32)
            return encoder.push(samples) + encoder.flush()
        finally:
            encoder.close()

    # ------------------------------------------------------------------ audio accounting
    def admit(self, gate: UtteranceGate) -> None:
        """Synthesis may start: from here on the accounting counts it and settles it through the gate."""
        self.admitted_at = time.perf_counter()
        self.accounting = RequestAccounting(
            self.job,
            transport=self.transport,
            clock_origin=self.admitted_at,
            settle=lambda report: gate.settle(self.id, report, self.billable_characters()),
            begin=getattr(gate, "begin_hook", lambda _id: None)(self.id),
        )

    def note_audio(self, data: bytes) -> None:
        """Count one audio chunk handed to the outbox."""
        self.chunks += 1
        self.audio_bytes += len(data)
        # Seconds from the start of the utterance's audio that this chunk covers (wire formats place timings with it).
        end = self.job.stats.sent_samples / float(self.request.sample_rate)
        self.last_audio_span = (self.last_audio_span[1], end)
        if self.accounting is not None:
            self.accounting.first_audio()
            self.accounting.audio_sent()

    def delivered(self, size: int) -> None:
        self.sent_bytes += size
        self.sent_chunks += 1

    def reached(self, seconds: float) -> None:
        self.delivered_s = max(self.delivered_s, seconds)

    def billable_characters(self) -> int:
        """What it is charged before the guard-cut share: its normalised text, what HTTP charges; when the socket
        ended under it (the server ended it, `ended_by_server`; the client closed it, `disconnected`: a clean close
        and a reset after the same audio cost the same) or a context was `refused` mid-way, only the characters the
        audio that reached the socket covers, by the cut-chunk rule (services.pipeline.chunk_guards.delivered_chars):
        text whose audio never got there is free. Ended by our own failure (`server_error`): nothing, as a 5xx."""
        if self.stop_reason == "server_error":
            return 0
        if self.stop_reason not in ("ended_by_server", "disconnected", "refused"):
            return self.spoken_characters
        stats = self.job.stats
        chunks = [
            (len(text), expected_tokens(text), samples / SAMPLES_PER_TOKEN)
            for text, samples in zip(self.job.plan.chunks, stats.decoded_samples_per_chunk, strict=False)
        ]
        # Output seconds -> generated (16 kHz) seconds: `speed` shortened the audio by its time-stretch.
        tokens = self.delivered_s * stats.time_stretch * SEMANTIC_TOKENS_PER_SECOND
        covered = delivered_chars(chunks, stats.text_chunks_done, tokens, self.max_s_per_char)
        return min(self.spoken_characters, covered)

    @property
    def audio_seconds(self) -> float:
        return self.job.stats.output_samples / float(self.request.sample_rate)

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.accounting is None else self.accounting.ttfb_ms

    def finish(self, status: str, error: SynthesisError | None) -> None:
        """Freeze the outcome once (the job's request and plan get the whole text for the request log); an
        admitted utterance is accounted and settled through its accounting."""
        if self.status is not None:
            return
        self._disarm_buffer_delay()
        self.status = status
        text = "".join(self.text_parts)
        self.job.request = replace(self.job.request, text=text)
        self.job.plan = replace(self.job.plan, text=text, chunked=self.text_chunks > 1)
        if self.accounting is not None:
            end: EndStatus = (
                "completed"
                if status == "completed"
                else "failed"
                if status == "failed"
                else "cancelled"
                if status == "cancelled"
                else "disconnected"
            )
            self.report = self.accounting.finish(
                end,
                error.code if error else None,
                chunks_sent=self.chunks,
                bytes_sent=self.audio_bytes,
            )
