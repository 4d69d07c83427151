"""Admission's rule 3 measure (services/device/admission.py): the codec's device seconds per stream, over the last
`window_s`, from the scheduler's running figures.

Three choices shape it:

- **Per what** (`basis`): per second each stream was open (`stream_second`), or per second of audio the codec decoded
  for the live streams (`audio_second`: kept tokens / 50). The faster the engine runs ahead, the shorter a stream is
  open and the dearer each open second reads for the same codec work; per second of audio it reads the codec's share
  at real time however far ahead the engine runs.
- **Times which streams** (`share_streams`, `streams_counted`): the streams open now, or the streams a listener
  still plays (open, or closed with audio left: `CodecScheduler.playing_streams`). Per second of audio, the streams
  playing make the product the codec's share of the device at real time, however far ahead the engine runs. For the
  benches only: on the simulated sliced device it ran 48 kHz overload dry (docs/decisions/burst-48k.md).
- **Of which streams** (`streams`): every live stream (`every`), or only the settled ones (`settled`: past their
  first second of audio, `queueing.SETTLED_TOKENS`), their rows' share of each call's seconds against their own
  stream-seconds. A stream's first second costs the codec about 3.5 decoded tokens per kept one and settles to about
  1.3, so in a burst, where most streams are new, the cost over every stream reads what the first second costs while
  admission multiplies it by every stream it will hold once they settle. Newcomers' first seconds are what the ramp
  (rule 0) and the deadline misses (rule 1) bound. Until the settled streams give `min_sample_s` of the basis (the first
  second or so of a start from idle), it reads every stream: streams arriving on an idle device for a second with
  nothing read but the ramp ran four 48 kHz streams dry on the sliced device in sustained overload.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

# What rule 3 divides the codec's seconds by (module doc).
CodecCostBasis = Literal["stream_second", "audio_second"]
CODEC_COST_BASES: tuple[CodecCostBasis, ...] = get_args(CodecCostBasis)
# Whose seconds rule 3 reads (module doc).
CodecCostStreams = Literal["every", "settled"]
CODEC_COST_STREAMS: tuple[CodecCostStreams, ...] = get_args(CodecCostStreams)

# What rule 3 multiplies the cost by (module doc).
CodecShareStreams = Literal["open", "playing"]
CODEC_SHARE_STREAMS: tuple[CodecShareStreams, ...] = get_args(CodecShareStreams)

BUCKET_S = 0.25  # one bucket of the window's running sums


class _Figures(NamedTuple):
    """The scheduler's figures for one group of streams at one moment: streams open now, running totals since start."""

    streams: int
    codec_seconds: float
    kept_tokens: int


@dataclass
class _Sums:
    """What one group of streams added within a bucket."""

    stream_seconds: float = 0.0
    codec_seconds: float = 0.0
    kept_tokens: float = 0.0

    def add(self, before: _Figures, now: _Figures, seconds: float) -> None:
        """The streams as they were `before`, over `seconds`; the running totals' growth since."""
        self.stream_seconds += before.streams * seconds
        self.codec_seconds += now.codec_seconds - before.codec_seconds
        self.kept_tokens += now.kept_tokens - before.kept_tokens


@dataclass
class _Bucket:
    start: float
    every: _Sums = field(default_factory=_Sums)
    settled: _Sums = field(default_factory=_Sums)


_NOTHING = _Figures(0, 0.0, 0)


class CodecCostMeter:
    """Integrates the scheduler's figures into buckets of `BUCKET_S` (`advance`, at every admission read) and reads
    the cost over the last `window_s` (`cost_at`). `scheduler`: active_streams, settled_streams, playing_streams
    (where `share_streams` is "playing"), and `stats` with busy_seconds, kept_tokens, settled_seconds,
    settled_kept_tokens (`SchedulerStats`)."""

    def __init__(
        self,
        scheduler: Any,
        *,
        window_s: float,
        min_sample_s: float,
        basis: CodecCostBasis,
        streams: CodecCostStreams,
        tokens_per_s: float,
        share_streams: CodecShareStreams = "open",
    ) -> None:
        if basis not in CODEC_COST_BASES:
            raise ValueError(f"codec_cost_basis must be one of {CODEC_COST_BASES}, got {basis!r}")
        if streams not in CODEC_COST_STREAMS:
            raise ValueError(f"codec_cost_streams must be one of {CODEC_COST_STREAMS}, got {streams!r}")
        if share_streams not in CODEC_SHARE_STREAMS:
            raise ValueError(
                f"codec_share_streams must be one of {CODEC_SHARE_STREAMS}, got {share_streams!r}"
            )
        self.share_streams = share_streams
        self.scheduler = scheduler
        self.window_s, self.min_sample_s = window_s, min_sample_s
        self.basis, self.streams, self.tokens_per_s = basis, streams, tokens_per_s
        self._buckets: deque[_Bucket] = deque()
        self._last_t: float | None = None
        self._last = (_NOTHING, _NOTHING)  # (every stream's, the settled ones') figures at _last_t

    def _figures(self) -> tuple[_Figures, _Figures]:
        """Every live stream's figures, and the settled ones' (nothing where only every stream is read)."""
        s, stats = self.scheduler, self.scheduler.stats
        every = _Figures(s.active_streams, stats.busy_seconds, stats.kept_tokens)
        if self.streams == "every":
            return every, _NOTHING
        return every, _Figures(s.settled_streams, stats.settled_seconds, stats.settled_kept_tokens)

    def advance(self, now: float) -> None:
        """Add what happened since the last call (the streams as they were then, the seconds and tokens since)."""
        every, settled = figures = self._figures()
        if self._last_t is not None and now > self._last_t:
            if not self._buckets or now >= self._buckets[-1].start + BUCKET_S:
                self._buckets.append(_Bucket(now))
            bucket, elapsed = self._buckets[-1], now - self._last_t
            bucket.every.add(self._last[0], every, elapsed)
            bucket.settled.add(self._last[1], settled, elapsed)
        self._last_t, self._last = now, figures
        while self._buckets and self._buckets[0].start + BUCKET_S < now - self.window_s:
            self._buckets.popleft()

    def streams_counted(self) -> int:
        """The streams the cost is multiplied by (`share_streams`)."""
        s = self.scheduler
        return int(s.playing_streams if self.share_streams == "playing" else s.active_streams)

    def cost_at(self, now: float) -> float | None:
        """Codec seconds per `basis` over the last `window_s` as the buckets stand (reading never moves them); None
        while fewer than `min_sample_s` of the basis are measured."""
        window = [b for b in self._buckets if b.start + BUCKET_S >= now - self.window_s]
        if self.streams == "settled":
            settled = self._cost([b.settled for b in window])
            if settled is not None:
                return settled
        return self._cost([b.every for b in window])

    def _cost(self, sums: list[_Sums]) -> float | None:
        if self.basis == "audio_second":
            seconds = sum(x.kept_tokens for x in sums) / self.tokens_per_s
        else:
            seconds = sum(x.stream_seconds for x in sums)
        if seconds < self.min_sample_s:
            return None
        return sum(x.codec_seconds for x in sums) / seconds
