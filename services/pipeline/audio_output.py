"""The audio end of the pipeline: decoded 16 kHz chunks in, the client's encoded bytes out.

Super-resolution goes through the codec scheduler: `core.sr_planner.SRPlanner` cuts the joined 16 kHz audio into
AP-BWE windows and each one is awaited as `StreamHandle.super_resolve` (batched with other streams' windows on the
device). Crossfade and time-stretch run on the event loop (the stretch, ~1 ms of CPU per audio second, is Python
per 32 ms frame: in a pool thread it fought the loop for the GIL and cost 1.6-2x the CPU; docs/benchmarks.md,
"Per transport, format and rate"). Resampling, framing and encoding do too for the sample-wise formats (pcm, wav, mulaw: ~50 us per second of
audio), and in `ENCODE_POOL` for the compressed ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from audio.crossfade import ChunkJoiner
from audio.encoders import create_encoder
from audio.reframe import FrameBuffer
from audio.resample import StreamingResampler
from audio.time_stretch import StreamingTimeStretch
from core.sr_planner import SRPlanner, SRWindow
from services.pipeline.pipeline_stats import PipelineStats
from shared import metrics

if TYPE_CHECKING:
    from services.device.scheduler import StreamHandle
    from services.pipeline.resources import PipelineResources

NATIVE_RATE = 16_000  # BiCodec's rate
BWE_RATE = 48_000  # AP-BWE's output rate
# AP-BWE window blocks (16 kHz samples, before context): with the released model's 880 samples of context each side
# every window but a stream's true end is 2,480..9,760 samples long, a lead window (core.sr_planner) 960..3,360 (2,160
# after balanced's first chunk), inside services.device DEFAULT_SR_BUCKETS.
SR_MIN_BLOCK = 1_600  # 100 ms: the first 48 kHz audio waits for at most this much plus the context
SR_MAX_BLOCK = 8_000
SR_STAGE_SECONDS = metrics.STAGE_SECONDS.labels(
    "super_resolution"
)  # bound once: `.labels()` takes a lock per call
# The compressed formats (PyAV: mp3, opus, aac, flac) cost 1-10 ms of CPU per second of audio, and PyAV lets go of
# the GIL while it encodes. On the event loop each chunk's encode held every other stream for up to tens of ms and
# all encoders shared one core (64 mp3 streams: 7.5 ms of loop CPU per audio second, 1.6 here; docs/benchmarks.md,
# "Per transport, format and rate"). They resample, frame and encode in this pool instead, in parallel on the
# other cores; a stream's pieces still go one at a time, in order (each push awaits the last).
ENCODE_POOL = ThreadPoolExecutor(
    max_workers=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2,
    thread_name_prefix="encode",
)  # the cores this process has


class AudioOutput:
    """16 kHz float chunks in, encoded bytes out: crossfaded joins, optional AP-BWE bandwidth extension to 48 kHz,
    resampling to the asked rate, steady frames, the encoder."""

    def __init__(
        self,
        resources: PipelineResources,
        *,
        audio_format: str,
        sample_rate: int,
        stream: bool,
        want_bwe: bool,
        bitrate: int | None = None,
        stats: PipelineStats,
        time_stretch: float = 1.0,
        handle: StreamHandle | None = None,
        sr_lead: bool = False,
    ) -> None:
        """`handle`: the job's place in the codec scheduler, which runs the AP-BWE windows; None: they run here,
        directly on the model (offline tools and tests without a scheduler). `sr_lead`: the first AP-BWE window may
        take its right context from a guess passed to `push` (core.sr_planner, the lead window)."""
        settings = resources.settings
        self.stats = stats
        self.handle = handle
        # `speed` where the prompt could not do it all: on the 16 kHz speech, before super-resolution.
        self.stretch = StreamingTimeStretch(time_stretch) if time_stretch != 1.0 else None
        stats.time_stretch = time_stretch
        sr = resources.sr if want_bwe else None
        self._sr = sr
        # The true end shaped to a bucket's length where the codec scheduler (which runs the windows once the job
        # has its handle) replays graphs: it then shares their calls instead of an eager call of its own.
        scheduler = handle.scheduler if handle is not None else resources.scheduler
        end_lengths = (
            scheduler.policy.sr_end_lengths(sr.grid) if scheduler is not None and sr is not None else ()
        )
        self.bwe_stream = (
            SRPlanner(
                grid=sr.grid,
                context=sr.context,
                min_block=SR_MIN_BLOCK,
                max_block=SR_MAX_BLOCK,
                end_lengths=end_lengths,
            )
            if sr is not None
            else None
        )
        self.bwe_applied = self.bwe_stream is not None
        self.sr_lead = (
            sr_lead and self.bwe_applied and time_stretch == 1.0
        )  # speed reshapes the audio after the guess
        source_rate = BWE_RATE if self.bwe_applied else NATIVE_RATE
        self.joiner = ChunkJoiner(int(round(settings.text.crossfade_ms * NATIVE_RATE / 1000)))
        self.resampler = StreamingResampler(source_rate, sample_rate)
        self.frames = FrameBuffer(max(1, sample_rate * settings.stream.frame_ms // 1000))
        self.encoder = create_encoder(audio_format, sample_rate, streaming=stream, bitrate=bitrate)
        self._stream = stream
        self._first_out = False
        self._segments = 0

    def start_segment(self, last: bool = False) -> None:
        """A new text chunk's audio follows; `last`: no other will, so nothing is held back for a crossfade."""
        if self._segments:
            self.joiner.start_segment()
        self._segments += 1
        if last:
            self.joiner.last_segment()

    async def push(self, wav16: np.ndarray, ahead: np.ndarray | None = None) -> bytes:
        """`ahead`: the decode schedule's held overlap after this piece (a guess of the 16 kHz audio that follows:
        this text chunk goes on), from which the stream's first AP-BWE window may take its right context
        (core.sr_planner: the lead window)."""
        joined = self.joiner.push(wav16)
        return await self._onward(joined, final=False, ahead=self._lead_guess(ahead))

    def _lead_guess(self, ahead: np.ndarray | None) -> np.ndarray | None:
        """The guess where a lead window may take it: not once a window ran, and not while the crossfade joiner holds
        a tail back for a next text chunk (long texts, and socket utterances whose text is still open). There the
        lead tried keeping that tail too (it leaves unchanged while the chunk goes on): alone a socket's first
        audio came 26 ms sooner, but 32 sockets at once at 24 kHz on the stand-in all ran dry, their second piece
        ~260 ms after the lead instead of ~100 (docs/benchmarks.md), so they keep the first window as it was."""
        if ahead is None or not self.sr_lead or self.bwe_stream is None or self.bwe_stream.windows:
            return None
        return None if self.joiner.holds_output else ahead

    async def finish(self) -> bytes:
        data = await self._onward(self.joiner.finish(), final=True)
        self.stats.encode_done = True
        return data

    async def _super_resolve(self, windows: list[SRWindow]) -> np.ndarray:
        """The windows' kept 48 kHz audio, in order: all submitted at once, so they may share one device call."""
        if not windows:
            return np.zeros(0, np.float32)
        if self.handle is None:
            assert self._sr is not None
            parts = [self._sr.enhance_window(w.samples)[w.keep_start : w.keep_end] for w in windows]
        else:
            parts = await self.handle.super_resolve_all(windows)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _onward(self, joined: np.ndarray, *, final: bool, ahead: np.ndarray | None = None) -> bytes:
        if self.stretch is not None:
            joined = self.stretch.push(joined)
            if final:
                joined = np.concatenate([joined, self.stretch.finish()])
            self.stats.stretched_samples += int(joined.size)
        audio = joined
        if self.bwe_stream is not None:
            started = time.perf_counter()
            windows = self.bwe_stream.push(joined, ahead) if joined.size else []
            if final:
                windows += self.bwe_stream.finish()
            audio = await self._super_resolve(windows)
            if audio.size:
                self.stats.sr_chunks += 1
                self.stats.sr_samples += int(audio.size)
            SR_STAGE_SECONDS.observe(time.perf_counter() - started)
        if self.encoder.sample_wise:
            return self._encode(audio, final)
        if not audio.size and not final and self._first_out:
            return b""  # nothing to resample or encode: no trip to the pool
        return await asyncio.get_running_loop().run_in_executor(ENCODE_POOL, self._encode, audio, final)

    def _encode(self, audio: np.ndarray, final: bool) -> bytes:
        """Resample, frame and encode (synchronous: inline for sample-wise formats, in ENCODE_POOL otherwise)."""
        resampled = self.resampler.push(audio) if audio.size else np.zeros(0, np.float32)
        if final:
            resampled = np.concatenate([resampled, self.resampler.finish()])
        self.stats.output_samples += int(resampled.size)
        if self.encoder.sample_wise:
            return self._encode_joined(resampled, final)
        frames = self.frames.push(resampled) if resampled.size else []
        if self._stream and not self._first_out and not frames and self.frames.pending:
            frames = [self.frames.flush()]  # the first bytes go out at once, even as a short frame
        if frames:
            self._first_out = True
        if final:
            tail = self.frames.flush()
            if tail is not None and len(tail):
                frames.append(tail)
        out = bytearray()
        for frame in frames:
            out += self.encoder.push(frame)
            self.stats.encoded_frames += 1
        if final:
            out += self.encoder.flush()
        self.stats.encoded_bytes += len(out)
        return bytes(out)

    def _encode_joined(self, resampled: np.ndarray, final: bool) -> bytes:
        """`_encode` for the sample-wise formats (pcm, wav, mulaw): the whole frames in one encoder call, the same
        bytes as frame by frame, with no split into frames to join again (at 48 kHz a chunk is ~35 frames)."""
        frames = self.frames
        block = frames.push_joined(resampled)  # empty when no frame is complete (or nothing came)
        count = len(block) // frames.frame_samples
        if self._stream and not self._first_out and not count and frames.pending:
            block, count = frames.flush(), 1  # the first bytes go out at once, even as a short frame
        if count:
            self._first_out = True
        if final and frames.pending:
            block, count = np.concatenate([block, frames.flush()]), count + 1
        out = self.encoder.push(block) if len(block) else b""
        if final:
            out += self.encoder.flush()
        self.stats.encoded_frames += count
        self.stats.encoded_bytes += len(out)
        return out


# Bytes per sample of each format, roughly (compressed formats at their usual bitrates), to refuse before any GPU
# work a non-streaming request whose file could not be buffered; speech runs ~14 characters a second, 12 is slow.
_BYTES_PER_SAMPLE = {
    "wav": 2.0,
    "pcm": 2.0,
    "flac": 1.2,
    "mulaw": 1.0,
    "alaw": 1.0,
    "mp3": 0.25,
    "opus": 0.15,
    "aac": 0.25,
}


def estimated_audio_bytes(characters: int, audio_format: str, sample_rate: int) -> int:
    return int(characters / 12 * sample_rate * _BYTES_PER_SAMPLE.get(audio_format, 2.0))
