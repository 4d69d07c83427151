"""Backpressure on a real server: a slow reader pauses the producer without losing a byte, a stalled reader is cut.

The server runs in this process (uvicorn on its own thread and event loop) so the test can read the job's
`PipelineStats` and the LLM engine while the stream is in flight. Loopback TCP buffers grow to megabytes, which
would swallow a whole test-sized stream, so the listening socket gets a small SO_SNDBUF and the client a small
SO_RCVBUF: the path between the queue and the reader then holds ~100 KB, as a slow mobile link would.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.audio_samples import assert_same_pcm

pytestmark = pytest.mark.e2e

SEND_BUFFER = 16_384  # server socket (the kernel doubles it)
RECV_BUFFER = 4_096  # client socket
SLOW_READ_BYTES = 1_024  # the slow reader takes 1 KB ...
SLOW_READ_PAUSE_S = 0.1  # ... every 100 ms (10 KB/s; 16 kHz PCM needs 32 KB/s)
STAGES = ("generation", "parse", "decode", "super_resolution", "resample", "encode", "send")


class InProcessServer:
    """A real uvicorn server for `create_app(settings)` on a background thread; its app state is readable."""

    def __init__(self, settings, *, send_buffer: int | None = None) -> None:
        import uvicorn

        from api.app import create_app

        root = logging.getLogger()
        self._root_state = (root.level, list(root.handlers))
        self.settings = settings
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if send_buffer:  # accepted connections inherit the listening socket's buffer size
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="inprocess-uvicorn", daemon=True
        )

    @property
    def runtime(self):
        return self.app.state.runtime

    def start(self, timeout_s: float = 180.0) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError("in-process server exited during start-up")
            try:
                if httpx.get(f"{self.base_url}/v1/tts/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"in-process server not ready in {timeout_s}s: {self.runtime.health()}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        root = logging.getLogger()  # create_app configured the root logger; give it back as it was
        root.setLevel(self._root_state[0])
        root.handlers[:] = self._root_state[1]


class RawHttpStream:
    """A blocking HTTP/1.1 POST on a socket with a small receive buffer; the test decides how fast to read."""

    def __init__(
        self, port: int, body: dict, *, path: str = "/v1/tts/generate", rcvbuf: int = RECV_BUFFER
    ) -> None:
        payload = json.dumps(body).encode()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: caps the window
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", port))
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode() + payload)
        self.raw = bytearray()
        self.header_end: int | None = None
        self.eof = False

    def recv(self, size: int = 65_536) -> int:
        data = self.sock.recv(size)
        self.eof = not data
        self.raw += data
        if self.header_end is None and b"\r\n\r\n" in self.raw:
            self.header_end = self.raw.index(b"\r\n\r\n") + 4
        return len(data)

    def read_headers(self, step: int = SLOW_READ_BYTES) -> int:
        while self.header_end is None:
            if not self.recv(step):
                raise AssertionError(f"connection closed before the headers: {bytes(self.raw)!r}")
        return int(self.raw.split(b" ", 2)[1])

    @property
    def body_bytes_received(self) -> int:
        """Bytes after the header (chunked framing included: a few bytes per chunk)."""
        return 0 if self.header_end is None else len(self.raw) - self.header_end

    def read_to_end(self) -> None:
        while self.recv():
            pass

    def body(self) -> tuple[bytes, bool]:
        """The de-chunked body and whether the terminating zero-size chunk arrived."""
        assert self.header_end is not None
        data, pos, out = bytes(self.raw), self.header_end, bytearray()
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                return bytes(out), False
            size = int(data[pos:line_end].split(b";")[0], 16)
            if size == 0:
                return bytes(out), True
            start = line_end + 2
            if start + size > len(data):
                out += data[start:]
                return bytes(out), False
            out += data[start : start + size]
            pos = start + size + 2

    def close(self) -> None:
        self.sock.close()


def sample_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (
                labels is None or all(sample.labels.get(k) == v for k, v in labels.items())
            ):
                return sample.value
    return None


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def live(demo_model_dir: Path) -> Iterator[InProcessServer]:
    from shared.settings import Settings

    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        device="cpu",
        stream_queue_chunks=2,  # a short queue between the pipeline and the socket
        stream_max_chunk_tokens=25,  # decoded chunks of at most 0.5 s
        chunking_threshold_chars=60,  # several text chunks, so the LLM could run ahead chunk by chunk
        chunk_target_chars=60,
    )
    server = InProcessServer(settings, send_buffer=SEND_BUFFER).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every SynthesisJob the speech service creates (every HTTP route's), so the test can read its stats."""
    import services.pipeline.speech as speech

    created: list = []

    class RecordedJob(speech.SynthesisJob):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(speech, "SynthesisJob", RecordedJob)
    return created


SENTENCES = [
    "The first lighthouse keeper wrote a letter every evening.",
    "Ships passed the rocks at night without a single light.",
    "A storm broke the lamp and the keeper climbed the stairs.",
    "By morning the harbour had counted every boat safely home.",
    "Nobody in the village forgot the sound of that long night.",
]


def fast_read(server: InProcessServer, body: dict) -> bytes:
    stream = RawHttpStream(server.port, body, rcvbuf=1 << 20)
    try:
        assert stream.read_headers(65_536) == 200
        stream.read_to_end()
        data, complete = stream.body()
        assert complete
        return data
    finally:
        stream.close()


# ---------------------------------------------------------------------------------------------------- tests


def test_slow_reader_pauses_the_producer_and_loses_nothing(live: InProcessServer, jobs: list) -> None:
    from shared.metrics import REGISTRY

    request = {"text": " ".join(SENTENCES), "speaker": "default", "seed": 11, "stream": True, "format": "pcm"}
    reference = fast_read(live, request)
    bound = live.settings.stream.stream_queue_chunks
    engine = live.runtime.engine
    process = psutil.Process()

    dropped_before = sum(
        REGISTRY.get_sample_value("veena3_tts_frames_dropped_total", {"stage": s}) or 0.0 for s in STAGES
    )
    monitor = live.app.state.services.access.monitor
    losses_before = monitor.snapshot()["losses"]["total"]

    rss_start = process.memory_info().rss
    stream = RawHttpStream(live.port, request)
    slow_started = time.monotonic()
    try:
        assert stream.read_headers() == 200
        job = jobs[-1]
        held_max = 0  # bytes encoded but not yet read by the client: what the server (and kernel) buffer
        rss_max = rss_start
        steps_seen, steps_since = engine.steps_total, time.monotonic()
        llm_paused_for = 0.0
        queue_gauge = None
        # Read slowly until the producer has waited on the full queue and the LLM has stood still for 1.5 s.
        while time.monotonic() - slow_started < 25:
            if not stream.recv(SLOW_READ_BYTES):
                break
            time.sleep(SLOW_READ_PAUSE_S)
            held_max = max(held_max, job.stats.encoded_bytes - stream.body_bytes_received)
            rss_max = max(rss_max, process.memory_info().rss)
            if engine.steps_total != steps_seen:
                steps_seen, steps_since = engine.steps_total, time.monotonic()
            llm_paused_for = time.monotonic() - steps_since
            if job.stats.producer_waits and queue_gauge is None:
                metrics_text = httpx.get(f"{live.base_url}/metrics", timeout=10).text
                queue_gauge = (
                    sample_value(metrics_text, "veena3_tts_stream_queue_depth"),
                    sample_value(metrics_text, "veena3_tts_stream_queue_fill_ratio"),
                )
            if job.stats.producer_waits and llm_paused_for >= 1.5:
                break
        slow_seconds = time.monotonic() - slow_started
        slow_bytes = stream.body_bytes_received
        tokens_when_paused = job.stats.llm_tokens
        stream.read_to_end()
    finally:
        stream.close()
    received, complete = stream.body()

    print(
        f"\nslow reader: {slow_seconds:.1f} s at {SLOW_READ_BYTES} B/{SLOW_READ_PAUSE_S * 1000:.0f} ms read "
        f"{slow_bytes} B; server-side backlog max {held_max} B; producer waits {job.stats.producer_waits}; "
        f"max queue depth {job.stats.max_queue_depth}/{bound}; LLM idle {llm_paused_for:.1f} s at "
        f"{tokens_when_paused}/{job.stats.llm_tokens} tokens; RSS growth {(rss_max - rss_start) / 2**20:.1f} MiB; "
        f"queue gauges while waiting {queue_gauge}; stream {len(received)} B"
    )
    # Nothing dropped: the slow stream is the fast one (same seed; within rounding: assert_same_pcm), and nothing
    # counted a drop.
    assert complete
    assert_same_pcm(received, reference)
    assert len(reference) > 2 * held_max, "the test stream must be much longer than what the server buffers"
    dropped_after = sum(
        REGISTRY.get_sample_value("veena3_tts_frames_dropped_total", {"stage": s}) or 0.0 for s in STAGES
    )
    assert dropped_after == dropped_before == 0
    # The producer paused on the bounded queue instead of buffering the stream.
    assert job.stats.producer_waits > 0
    assert job.stats.max_queue_depth <= bound
    assert queue_gauge is not None and queue_gauge[0] >= 1 and 0 < queue_gauge[1] <= 1
    # The LLM stopped generating ahead (it runs at most one text chunk ahead of the decoder) ...
    assert llm_paused_for >= 1.5 and tokens_when_paused < job.stats.llm_tokens
    # ... so what the server holds stays bounded while the client lags far behind: at most (queue bound + 1)
    # items of at most one text chunk's audio each (~135 KB here) plus ~100 KB of socket and transport buffers.
    assert held_max < min(512_000, len(reference) - slow_bytes)
    assert rss_max - rss_start < 100 * 2**20
    deadline = time.monotonic() + 5
    while monitor.snapshot()["requests"]["completed"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert monitor.snapshot()["losses"]["total"] == losses_before


def test_stalled_reader_is_cut_off_and_generation_aborted(live: InProcessServer, jobs: list) -> None:
    from shared.metrics import REGISTRY

    def counter(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    stall_s = 2.0
    settings = live.app.state.services.settings
    previous, settings.stream.send_stall_timeout_s = settings.stream.send_stall_timeout_s, stall_s
    engine = live.runtime.engine
    cut_before = counter("veena3_tts_stalled_clients_cut_total")
    disconnects_before = counter("veena3_tts_client_disconnects_total")
    # One long text chunk: its generation (~10 s here) is still running when the reader is cut off.
    text = " ".join(SENTENCES[:4])
    request = {
        "text": text,
        "speaker": "default",
        "seed": 5,
        "stream": True,
        "format": "pcm",
        "chunking": False,
    }
    stream = RawHttpStream(live.port, request)
    started = time.monotonic()
    try:
        assert stream.read_headers() == 200  # then never read again
        job = jobs[-1]
        generating_before_cut = bool(engine.active_requests())
        while (
            counter("veena3_tts_stalled_clients_cut_total") == cut_before and time.monotonic() - started < 30
        ):
            time.sleep(0.05)
        cut_after = time.monotonic() - started
        assert counter("veena3_tts_stalled_clients_cut_total") == cut_before + 1, (
            "the stalled reader was not cut"
        )
        deadline = time.monotonic() + 5
        while engine.active_requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.active_requests() == set(), "generation kept running after the cut"
        steps = engine.steps_total
        time.sleep(1.0)
        assert engine.steps_total == steps  # no LLM step after the abort
        tokens_at_cut = job.stats.llm_tokens
        # What the kernel still held reaches the client, then the connection ends without the final chunk.
        stream.read_to_end()
        _, complete = stream.body()
    finally:
        stream.close()
        settings.stream.send_stall_timeout_s = previous

    print(
        f"\nstalled reader: cut {cut_after:.1f} s after the request (stall timeout {stall_s} s); "
        f"LLM tokens at the cut {tokens_at_cut}; received {stream.body_bytes_received} B"
    )
    assert generating_before_cut
    assert not complete
    assert stall_s <= cut_after < 30
    assert counter("veena3_tts_client_disconnects_total") == disconnects_before + 1
    assert not job.stats.send_done and not job.stats.generation_done
