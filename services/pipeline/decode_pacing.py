"""The decode half of a `SynthesisJob`: its windows asked of the codec scheduler at the pace its listener plays.

A streaming job waits while its client holds more than `stream_max_ahead_s` of its audio (`_pace`), asks for its
windows in groups of at most half that (`_paced_groups`), and cuts a window short when its listener's runway runs
under the schedule's `cut_runway_s` (`_wait_for_window`, `_cut_due`). A job that is not streamed decodes as fast as
the device allows."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from core.guards.chunk import SAMPLES_PER_TOKEN
from core.streaming import DecodePlanner, PlannedWindow
from services.device.windows import DecodeWindow
from services.pipeline.audio_output import NATIVE_RATE
from shared import metrics

if TYPE_CHECKING:
    from services.device.playback import PlaybackClock
    from services.device.scheduler import StreamHandle
    from services.pipeline.pipeline_stats import PipelineStats
    from services.pipeline.resources import PipelineResources
    from services.pipeline.synthesis_request import SynthesisRequest
    from services.pipeline.token_queue import TokenQueue

# Audio a paced stream's client still holds when its next window is asked for: time for the window to be decoded and
# sent under load before playback reaches the end (32 streams on the stand-in, none underrun).
PACE_FLOOR_S = 0.5
# A paced stream sends a window's audio (steady windows reach 4 s) in pieces at most this long, each once its client
# has room for it: a window sent whole leaves the wire silent for its own length mid-reply (past Pipecat's 3 s
# quiet-context timeout) and the client's buffer down to the floor before the next one is asked for.
PACE_PIECE_S = 0.5
DECODE_STAGE_SECONDS = metrics.STAGE_SECONDS.labels("decode")  # bound once: `.labels()` takes a lock per call


class DecodePacing:
    """The decode half of a `SynthesisJob`: the job's state it reads is declared here, set by the job."""

    resources: PipelineResources
    request: SynthesisRequest
    stats: PipelineStats
    handle: StreamHandle | None
    playback: PlaybackClock | None
    _d_vector: Any

    @property
    def _paced(self) -> bool:
        return self.request.paced and self.playback is not None

    async def _pace(self, upcoming_s: float = 0.0) -> None:
        """A streaming job waits until its client, playing in real time, would hold at most `stream_max_ahead_s`
        of its audio once `upcoming_s` more (what it is about to send) arrives, but never until the client holds
        less than `PACE_FLOOR_S`. Audio goes out in pieces of at most `PACE_PIECE_S` (`_send_kept`), so the client
        holds between the setting less a piece and the setting while a reply runs ahead of it."""
        if self.request.paced and self.playback is not None:
            bound = max(PACE_FLOOR_S, self.resources.settings.stream.stream_max_ahead_s - upcoming_s)
            await self.playback.pace(bound)

    def _window_seconds(self, window: PlannedWindow) -> float:
        return window.kept_tokens * SAMPLES_PER_TOKEN / NATIVE_RATE / self.request.time_stretch

    def _paced_groups(self, windows: list[PlannedWindow]) -> list[list[PlannedWindow]]:
        """A streaming job's windows in groups of at most half `stream_max_ahead_s` of audio each (at least one
        window): while it waited for playback the engine kept generating, and the tokens it made meanwhile must not
        reach the client as one message of several seconds. A job that is not paced decodes them together."""
        if not self.request.paced:
            return [windows]
        step = self.resources.settings.stream.stream_max_ahead_s / 2
        groups: list[list[PlannedWindow]] = [[]]
        seconds = 0.0
        for window in windows:
            length = self._window_seconds(window)
            if groups[-1] and seconds + length > step:
                groups.append([])
                seconds = 0.0
            groups[-1].append(window)
            seconds += length
        return groups

    async def _decode_windows(
        self, planner: DecodePlanner, windows: list[PlannedWindow]
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The windows' audio from the codec scheduler (a group submitted together: they may share one device call),
        taken back by the planner in order (its crossfades); each group waits for playback with its own audio
        counted (`_pace`), so the client never holds much more than `stream_max_ahead_s`.

        Each chunk comes with the planner's held overlap right after it (its guess of what follows: the SR lead
        window's right context), so a chunk's audio is the same whether the engine's delta planned it alone or
        together with the next window: a seeded request's bytes do not depend on the engine's timing."""
        out: list[tuple[np.ndarray, np.ndarray | None]] = []
        for group in self._paced_groups(windows) if windows else []:
            # Asked for when the client has room for the first piece: the rest go out piece by piece as it plays.
            await self._pace(min(PACE_PIECE_S, sum(self._window_seconds(w) for w in group)))
            assert self.handle is not None
            started = time.perf_counter()
            d = self._d_vector
            kept = await self.handle.decode_all(
                [DecodeWindow(w.ids, d, w.keep_start, w.keep_end) for w in group]
            )
            DECODE_STAGE_SECONDS.observe(time.perf_counter() - started)
            for w, audio in zip(group, kept, strict=True):
                chunk = planner.take(w, audio)
                out.append((chunk, planner.held_audio))
        return out

    def _runway_s(self) -> float | None:
        """Seconds until a listener playing this stream runs dry on the audio it was sent; None while nobody plays
        it as it comes (not streamed, or before its first audio). What the chain still holds (48 kHz's next window,
        a crossfade's tail) is not counted, so a 48 kHz stream cuts up to ~0.15 s sooner: counting decoded audio
        instead would overstate a long reply's runway by every crossfade between its text chunks."""
        playback = self.playback
        if not self.request.paced or playback is None or not playback.heard:
            return None
        return playback.buffered_seconds()

    def _cut(self, planner: DecodePlanner) -> list[PlannedWindow]:
        windows = planner.cut()
        self.stats.cut_windows += len(windows)
        return windows

    def _cut_in_s(self, planner: DecodePlanner) -> float | None:
        """Seconds until the planner's next window is to be cut short (<= 0: now): the listener's runway less the
        schedule's `cut_runway_s`. None while it never is (no runway set, as for a seeded request, or nobody plays the
        stream as it comes)."""
        limit, runway = planner.config.cut_runway_s, self._runway_s()
        return None if limit is None or runway is None else runway - limit

    def _cut_due(self, planner: DecodePlanner) -> bool:
        """Whether the planner's next window should be cut short now."""
        due_in = self._cut_in_s(planner)
        return due_in is not None and due_in <= 0

    async def _wait_for_window(self, planner: DecodePlanner, tokens: TokenQueue) -> bool:
        """Wait for the ids of the planner's next window (or the try's end). True instead when a cut is due now: the
        listener's runway is under the schedule's `cut_runway_s` and the ids of a shorter window are pushed. Until
        the runway runs that short, the wait for the whole window ends when it does."""
        while True:
            need = planner.tokens_needed - planner.pending_tokens
            cut_needs = planner.cut_tokens_needed
            due_in = self._cut_in_s(planner)
            if due_in is None or cut_needs is None:
                await tokens.wait_for_ids(need)
                return False
            if due_in <= 0:
                if planner.pending_tokens >= cut_needs:
                    return True
                await tokens.wait_for_ids(min(need, cut_needs - planner.pending_tokens))
                return False  # the push that follows cuts (`_decode_push`)
            try:
                async with asyncio.timeout(due_in):
                    await tokens.wait_for_ids(need)
                return False
            except TimeoutError:
                continue
