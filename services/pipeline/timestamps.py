"""Timestamps beside the audio, never ahead of it: a text chunk's audio flows as it is decoded while the words it
settles follow it in the job's output queue, each well before it has finished playing.

`TimestampTrack` is one request's state: the written->spoken map (`processing.spoken_map`), the crossfaded timeline
(where each text chunk's audio starts in the output), the chunk being aligned incrementally
(`core.align.incremental`), and the spoken spans not yet claimed by a written group. Per text chunk:
`start_segment`, then `on_audio` with each piece of its 16 kHz audio (cheap: it is only kept) and `settle` after the
piece went out (blocking: run it in a worker thread), then `end_segment` once the chunk's audio is complete.

An event holds whole written groups with the spoken words said for them, so its `words` and `normalized` cover the
same time (the ElevenLabs codec sends both fields together). With the `ctc` method a chunk is aligned at its end
(the model needs the whole piece): its words come after its audio. Nothing here raises into the pipeline: a failing
aligner logs, counts (`veena3_tts_timing_failures_total`) and falls back to the estimate, then to an even spread;
`fallbacks` says what happened, for the answer.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.align import SAMPLE_RATE, WordSpan, align, character_spans
from core.align.due import place_due
from core.align.incremental import IncrementalEstimate, spread
from core.align.types import clamped
from core.align.units import script_language
from processing.spoken_map import spoken_map, spoken_words_of
from shared import metrics

if TYPE_CHECKING:
    from core.align import CharSpan
    from core.align.ctc import CtcAligner
    from core.align.rates import SpeakingRates
    from processing.spoken_map import TokenGroup

logger = logging.getLogger("services.pipeline.timestamps")

TimestampsKind = Literal["word", "character"]


@dataclass(frozen=True, slots=True)
class TimestampsEvent:
    """Spans for one aligned piece, seconds from the start of the request's audio. `words`: the text as sent (a
    normalised token once, covering what was said for it); `normalized`: the words the model spoke."""

    words: tuple[WordSpan, ...]
    normalized: tuple[WordSpan, ...]

    @property
    def characters(self) -> tuple[CharSpan, ...]:
        return character_spans(self.words)

    @property
    def normalized_characters(self) -> tuple[CharSpan, ...]:
        return character_spans(self.normalized)

    def to_json(self, kind: TimestampsKind = "word") -> dict[str, Any]:
        out: dict[str, Any] = {
            "words": [w.to_json() for w in self.words],
            "normalized_words": [w.to_json() for w in self.normalized],
        }
        if kind == "character":
            out["characters"] = [c.to_json() for c in self.characters]
            out["normalized_characters"] = [c.to_json() for c in self.normalized_characters]
        return out


class TimestampTrack:
    """One request's timestamps: `add_text` for each piece of written text with what is spoken for it, then per text
    chunk in order `start_segment`, `on_audio`/`settle` as its audio is decoded, `end_segment` at its end."""

    def __init__(
        self,
        *,
        overlap_samples: int = 0,
        ctc: Mapping[str, CtcAligner] | None = None,
        time_stretch: float = 1.0,
        rates: SpeakingRates | None = None,
        voice: str = "",
        owner: str | None = None,
    ) -> None:
        """`ctc`: models by language ("*" for any); a chunk whose language has none uses the estimate method.
        `time_stretch`: the tempo change the audio chain applies after the crossfade (`speed`): times divide by it.
        `rates`: each voice's speaking rate measured on its earlier output (`voice`'s, keyed by `Voice.rate_key`,
        starts this request's first chunk, and this request's chunks add to it), as the request's API key (`owner`)
        heard it."""
        self.rates = rates
        self.voice = voice
        self.owner = owner
        self.ctc = ctc or {}
        self.time_scale = 1.0 / time_stretch
        self.overlap = overlap_samples
        self.fallbacks: list[str] = []  # what failed and was replaced (stage: reason), for the answer
        self._groups: deque[TokenGroup] = deque()
        self._spoken: deque[WordSpan] = deque()  # aligned spoken words no group has claimed yet
        self._produced = 0  # samples of the crossfaded output so far (the fold's length)
        self._last_end = 0.0  # end of the last written group handed out
        self._spoken_end = 0.0  # end of the last spoken word aligned
        self._rate: float | None = None  # the speaking rate the last chunk measured (units per voiced second)
        self._lock = threading.Lock()  # on_audio (decode thread) and settle (another worker) may overlap
        self._pending: list[np.ndarray] = []
        self._segment: _Segment | None = None

    @property
    def status(self) -> Literal["ok", "fallback"]:
        return "fallback" if self.fallbacks else "ok"

    def add_text(self, written: str, spoken: str) -> None:
        try:
            self._groups.extend(spoken_map(written, spoken).groups)
        except Exception as exc:  # noqa: BLE001 - the map is best effort: unmatched words become one group
            self._failed("map", exc)
            self._groups.append(_fallback_group(written, spoken))

    # ------------------------------------------------------------------ per text chunk
    def start_segment(self, chunk_text: str, voice: str | None = None) -> None:
        """A text chunk's audio begins (its words: what the model is asked to say for it); `voice`: the chunk's, where
        a voice segment names another than the request's (the last chunk's rate then does not carry over)."""
        if voice is not None and voice != self.voice:
            self.voice, self._rate = voice, None
        fade = min(self.overlap, self._produced)
        offset = (self._produced - fade) / SAMPLE_RATE
        try:
            words = spoken_words_of(chunk_text)
            language = script_language(chunk_text)
            model = self.ctc.get(language) or self.ctc.get("*")
            # The voice's earlier output measured it: a prior only (this text may be spoken faster or slower).
            prior = (
                self.rates.get(self.owner, self.voice, language)
                if self._rate is None and self.rates
                else None
            )
            inc = IncrementalEstimate(words, rate=self._rate, prior=prior, offset=offset)
            self._segment = _Segment(words, offset, model, inc, language)
        except Exception as exc:  # noqa: BLE001 - the chunk's words are spread at its end
            self._failed("track", exc)
            self._segment = _Segment(chunk_text.split(), offset, None, IncrementalEstimate([]), broken=True)
        with self._lock:
            self._pending = []

    def on_audio(self, audio16: np.ndarray) -> None:
        """A piece of the current chunk's 16 kHz audio, as it goes into the output chain. Only kept here."""
        with self._lock:
            self._pending.append(audio16)

    @property
    def has_audio(self) -> bool:
        return bool(self._pending)

    def settle(self, due: float | None = None) -> TimestampsEvent | None:
        """The words the chunk's audio so far settles (blocking; run it in a worker thread). `due`: where (output
        seconds) the client's playback can be before the next piece is settled: a word beginning before then goes now,
        as the estimate stands (`core.align.due`), rather than late."""
        segment = self._segment
        with self._lock:
            pending, self._pending = self._pending, []
        if segment is None or not pending:
            return None
        segment.audio += pending
        if segment.model is not None or segment.broken:
            return None  # ctc aligns the whole chunk at its end; a broken chunk is spread at its end
        spans: list[WordSpan] = []
        try:
            for piece in pending:
                spans += segment.inc.feed(piece)
            if due is not None:
                spans += place_due(segment.inc, due / self.time_scale - segment.offset)
        except Exception as exc:  # noqa: BLE001 - the audio goes on; this chunk's words are spread at its end
            self._failed("align", exc)
            segment.broken = True
        return self._event(spans, segment)

    def end_segment(self, end: float | None = None) -> TimestampsEvent | None:
        """The chunk's words not sent yet, now that its audio is complete. `end` (the last chunk): the output's true
        length, which no span passes."""
        segment = self._segment
        if segment is not None:
            with self._lock:
                pending, self._pending = self._pending, []
            segment.audio += pending
            try:
                for piece in pending:  # kept for the search at the end (no settling of its own)
                    segment.inc.feed(piece, settle=False)
            except Exception as exc:  # noqa: BLE001
                self._failed("align", exc)
                segment.broken = True
        segment = segment or _Segment([], self._produced / SAMPLE_RATE, None, IncrementalEstimate([]))
        self._segment = None
        audio = np.concatenate(segment.audio) if segment.audio else np.zeros(0, np.float32)
        length = int(audio.size)
        self._produced += length - min(self.overlap, self._produced, length)
        spans = self._finish(segment, audio)
        if segment.inc.placed and segment.inc.measured and segment.model is None and not segment.broken:
            self._rate = segment.inc.rate
            if self.rates is not None and segment.inc.voiced_s:
                self.rates.observe(
                    self.owner, self.voice, segment.language, segment.inc.rate, segment.inc.voiced_s
                )
        return self._event(spans, segment, end=end, last=True)

    def align_chunk(self, audio16: np.ndarray, chunk_text: str, end: float | None = None) -> TimestampsEvent:
        """A whole text chunk at once (no streaming): its words, in output time. Blocking."""
        self.start_segment(chunk_text)
        self.on_audio(audio16)
        return self.end_segment(end) or TimestampsEvent((), ())

    # ------------------------------------------------------------------ internals
    def _finish(self, segment: _Segment, audio: np.ndarray) -> list[WordSpan]:
        inc = segment.inc
        if segment.model is not None:
            try:
                return list(align(audio, segment.words, method="ctc", ctc=segment.model).words)
            except Exception as exc:  # noqa: BLE001 - the estimate of the whole chunk instead
                self._failed("ctc", exc)
        if not segment.broken:
            try:
                return inc.finish()
            except Exception as exc:  # noqa: BLE001
                self._failed("align", exc)
        start = inc._floor if inc.placed else 0.0
        return spread(segment.words[inc.placed :], start, max(start, length_s(audio)))

    def _event(
        self, spans: list[WordSpan], segment: _Segment, *, end: float | None = None, last: bool = False
    ) -> TimestampsEvent | None:
        """Chunk-relative spans -> output time; the written groups they complete, with their spoken words."""
        try:
            out = [s.shifted(segment.offset) for s in spans]
            if self.time_scale != 1.0:
                out = [
                    WordSpan(
                        s.text,
                        round(s.start * self.time_scale, 3),
                        round(s.end * self.time_scale, 3),
                        s.score,
                    )
                    for s in out
                ]
            # Monotonic across the crossfade, and inside the output's true end where that is known; never before what
            # was already sent (with `speed` the stretcher may end a few ms short of the spans sent while it ran).
            ceiling = None if end is None else max(end, self._spoken_end)
            normalized = clamped(out, self._spoken_end, ceiling)
            if normalized:
                self._spoken_end = normalized[-1].end
            self._spoken.extend(normalized)
            words, said = self._claim(flush=last and end is not None)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not end the request either
            self._failed("track", exc)
            return None
        if not words and not said:
            return None
        return TimestampsEvent(tuple(words), tuple(said))

    def _claim(self, *, flush: bool = False) -> tuple[list[WordSpan], list[WordSpan]]:
        """Written groups whose spoken words are all aligned, and those spoken words. `flush` (the request's end):
        every group left, with what there is."""
        out: list[WordSpan] = []
        said_all: list[WordSpan] = []
        while self._groups and (flush or len(self._groups[0].spoken) <= len(self._spoken)):
            group = self._groups.popleft()
            said = [self._spoken.popleft() for _ in group.spoken if self._spoken]
            start = said[0].start if said else self._last_end
            end = said[-1].end if said else self._last_end
            scores = [s.score for s in said if s.score is not None]
            score = min(scores) if scores else None
            out += _share(group.written, start, end, score)
            said_all += said
            self._last_end = max(self._last_end, end)
        if flush:
            said_all += list(self._spoken)
            self._spoken.clear()
        return out, said_all

    def _failed(self, stage: str, exc: BaseException) -> None:
        self.fallbacks.append(f"{stage}: {exc.__class__.__name__}")
        metrics.TIMING_FAILURES.labels(stage).inc()
        logger.warning(
            "timestamps fell back", exc_info=exc, extra={"event": "timing_fallback", "stage": stage}
        )


@dataclass(slots=True)
class _Segment:
    """The text chunk being aligned: its spoken words, where its audio starts in the output (seconds, before the
    time-stretch), its ctc model if any, the incremental estimate, its language (`script_language`), and its audio
    so far."""

    words: list[str]
    offset: float
    model: CtcAligner | None
    inc: IncrementalEstimate
    language: str = ""
    audio: list[np.ndarray] = field(default_factory=list)
    broken: bool = False


def length_s(audio: np.ndarray) -> float:
    return int(audio.size) / SAMPLE_RATE


def _fallback_group(written: str, spoken: str) -> TokenGroup:
    from core.align import split_words
    from processing.spoken_map import TokenGroup

    return TokenGroup(tuple(split_words(written)), tuple(spoken_words_of(spoken)))


def _share(written: tuple[str, ...], start: float, end: float, score: float | None) -> list[WordSpan]:
    """Several written tokens said together (no finer split was found) share the time by their length."""
    if len(written) == 1:
        return [WordSpan(written[0], start, end, score)]
    total = sum(len(w) for w in written) or 1
    out, t = [], start
    for word in written:
        nxt = t + (end - start) * len(word) / total
        out.append(WordSpan(word, round(t, 3), round(nxt, 3), score))
        t = nxt
    return out
