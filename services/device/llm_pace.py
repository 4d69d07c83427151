"""Admission's rule 2 measure (services/device/admission.py): the LLM's pace, tokens per second per generating
request, over the last `window_s`, from the tokens the engine delivers and how many requests were generating
meanwhile (request-seconds), in buckets of `bucket_s` so that noting tokens costs O(1)."""

from __future__ import annotations

from collections import deque


class LLMPaceMeter:
    def __init__(self, window_s: float, min_sample_s: float, bucket_s: float) -> None:
        self.window_s = window_s
        self.min_sample_s = min_sample_s  # request-seconds below which the pace is not read (None)
        self.bucket_s = bucket_s
        # (bucket start, tokens, request-seconds of generation) per bucket_s
        self._buckets: deque[list[float]] = deque()
        self._last_t: float | None = None
        self._last_generating = 0

    def advance(self, now: float, generating: int) -> None:
        """Count the request-seconds since the last call at the count then, and `generating` from `now` on."""
        if self._last_t is not None and now > self._last_t:
            self._bucket(now)[2] += self._last_generating * (now - self._last_t)
        self._last_t, self._last_generating = now, generating
        horizon = now - self.window_s
        while self._buckets and self._buckets[0][0] + self.bucket_s < horizon:
            self._buckets.popleft()

    def note_tokens(self, now: float, count: int) -> None:
        """`count` tokens delivered at `now` (after `advance(now, ...)`)."""
        self._bucket(now)[1] += count

    def pace_at(self, now: float) -> float | None:
        """Tokens per second per generating request over the window as it stands (reading never moves it); None
        while fewer than `min_sample_s` request-seconds were measured."""
        buckets = [b for b in self._buckets if b[0] + self.bucket_s >= now - self.window_s]
        request_seconds = sum(b[2] for b in buckets)
        if request_seconds < self.min_sample_s:
            return None
        return sum(b[1] for b in buckets) / request_seconds

    def _bucket(self, now: float) -> list[float]:
        if not self._buckets or now >= self._buckets[-1][0] + self.bucket_s:
            self._buckets.append([now, 0.0, 0.0])
        return self._buckets[-1]
