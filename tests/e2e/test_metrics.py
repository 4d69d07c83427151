"""Prometheus scrape and the audio-flow debug routes, on a real server after real requests.

The server runs in this process (see test_backpressure.InProcessServer) so one test can break a pipeline stage
on purpose and see the loss in `GET /v1/tts/debug/stats`. Prometheus counters are process-wide, so every check is
a difference between a scrape before and a scrape after.

Failures counted in `veena3_tts_requests_failed_total` are those that happen once synthesis started. A request the
API refuses up front (unknown voice, invalid body, auth, limits) is answered with its error code but counted in
no request family: label values stay bounded to configured voices. The counted failure here is the whole-request
deadline passing while the model is still speaking (504 GENERATION_TIMEOUT).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_backpressure import STAGES, InProcessServer

pytestmark = pytest.mark.e2e

ADMIN_KEY = "admin-test-key-for-metrics"
MAX_MODEL_LEN = 256  # the smallest context the settings allow: a ~230-character prompt cannot fit


@pytest.fixture(scope="module")
def live(demo_model_dir: Path) -> Iterator[InProcessServer]:
    from shared.settings import Settings

    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        device="cpu",
        admin_key=ADMIN_KEY,
        max_model_len=MAX_MODEL_LEN,
    )
    server = InProcessServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(live: InProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base_url, timeout=120) as c:
        yield c


class Scrape:
    """One parsed scrape: sample values by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in self.families.values()
            for s in f.samples
        }

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)


def scrape(client: httpx.Client, path: str = "/metrics") -> Scrape:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    """Request accounting runs just after the response; poll for it."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def admin(client: httpx.Client, method: str, path: str) -> dict:
    response = client.request(method, path, headers={"X-Admin-Key": ADMIN_KEY})
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------------------------------------------- scrape


def test_scrape_counts_streaming_non_streaming_and_failed_requests(
    client: httpx.Client, live: InProcessServer
) -> None:
    before = scrape(client)

    started = time.perf_counter()
    streamed = client.post(
        "/v1/tts/generate",
        json={"text": "Good morning to you all.", "speaker": "default", "seed": 1, "stream": True},
    )
    stream_wall = time.perf_counter() - started
    assert streamed.status_code == 200
    stream_audio_s = (len(streamed.content) - 44) / 2 / 16_000

    whole = client.post(
        "/v1/tts/generate", json={"text": "See you soon.", "speaker": "default", "format": "pcm"}
    )
    assert whole.status_code == 200
    whole_audio_s = float(whole.headers["X-Audio-Seconds"])

    # Refused before synthesis: answered, but counted in no request family.
    unknown = client.post("/v1/tts/generate", json={"text": "Hello.", "speaker": "no-such-voice"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "INVALID_SPEAKER"

    # Fails once synthesis started: the whole-request deadline passes while the model is still speaking.
    # (A prompt longer than the model context is refused with 413 before any work, so it cannot serve here.)
    # 20 ms: the deadline runs from the start of synthesis (SynthesisJob._produce), and a sentence takes longer.
    previous, live.settings.limits.request_deadline_s = live.settings.limits.request_deadline_s, 0.02
    try:
        failed = client.post(
            "/v1/tts/generate", json={"text": "The committee met again on Thursday.", "speaker": "default"}
        )
    finally:
        live.settings.limits.request_deadline_s = previous
    assert failed.status_code == 504 and failed.json()["error"]["code"] == "GENERATION_TIMEOUT", failed.text

    monitor = live.app.state.services.access.monitor
    wait_for(
        lambda: (
            scrape(client).get(
                "veena3_tts_requests_failed_total",
                speaker="default",
                error_code="GENERATION_TIMEOUT",
                status="error",
            )
            > before.get(
                "veena3_tts_requests_failed_total",
                speaker="default",
                error_code="GENERATION_TIMEOUT",
                status="error",
            )
        )
    )
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    def delta_total(name: str) -> float:
        return after.total(name) - before.total(name)

    # Requests by speaker / stream / format; the refused voice added nothing anywhere.
    assert delta("veena3_tts_requests_total", speaker="default", stream="true", format="wav") == 1
    assert delta("veena3_tts_requests_total", speaker="default", stream="false", format="pcm") == 1
    assert delta("veena3_tts_requests_total", speaker="default", stream="false", format="wav") == 1
    assert delta_total("veena3_tts_requests_total") == 3
    assert not any(s[1] and ("speaker", "no-such-voice") in s[1] for s in after.samples)
    # Outcomes.
    assert (
        delta("veena3_tts_requests_completed_total", speaker="default", stream="true", status="success") == 1
    )
    assert (
        delta("veena3_tts_requests_completed_total", speaker="default", stream="false", status="success") == 1
    )
    assert (
        delta(
            "veena3_tts_requests_failed_total",
            speaker="default",
            error_code="GENERATION_TIMEOUT",
            status="error",
        )
        == 1
    )
    assert delta_total("veena3_tts_requests_failed_total") == 1
    # Latency and size histograms: one observation per successful request.
    assert delta("veena3_tts_ttfb_seconds_count", stream="true") == 1
    assert delta("veena3_tts_ttfb_seconds_count", stream="false") == 1
    assert 0 < delta("veena3_tts_ttfb_seconds_sum", stream="true") <= stream_wall
    assert delta("veena3_tts_rtf_count") == 2 and delta("veena3_tts_rtf_sum") > 0
    assert delta("veena3_tts_audio_duration_seconds_count") == 2
    assert delta("veena3_tts_audio_duration_seconds_sum") == pytest.approx(
        stream_audio_s + whole_audio_s, abs=0.01
    )
    assert delta("veena3_tts_chunks_sent_count") == 2
    streamed_chunks = delta("veena3_tts_chunks_sent_sum") - 1  # a complete response is one chunk
    assert streamed_chunks >= 2
    # Intervals between the streamed chunks (the complete response sends one chunk: no interval).
    assert delta("veena3_tts_chunk_interval_seconds_count") == streamed_chunks - 1
    # 50 semantic tokens per second of audio, plus the voice preamble; the failed request generated some too.
    assert delta("veena3_tts_llm_tokens_generated_total") >= 50 * (stream_audio_s + whole_audio_s)
    # Gauges.
    assert after.get("veena3_tts_active_streams") == 0
    assert after.get("veena3_tts_stream_queue_depth") == 0
    assert after.get("veena3_tts_model_loaded") == 1
    health = client.get("/v1/tts/health").json()
    assert after.get("veena3_tts_sr_ready") == (1 if health["sr_ready"] else 0)
    assert after.get("veena3_tts_demo_model") == 1
    assert after.get("veena3_tts_model_load_seconds") > 0
    # Nothing dropped or lost, and those series exist (at 0) for every stage.
    for stage in STAGES:
        assert ("veena3_tts_frames_dropped_total", (("stage", stage),)) in after.samples
        assert delta("veena3_tts_frames_dropped_total", stage=stage) == 0
        assert delta("veena3_tts_pipeline_losses_total", stage=stage) == 0
    wait_for(lambda: monitor.snapshot()["requests"]["total"] >= 3)


def test_both_metric_paths_serve_the_same_families(client: httpx.Client) -> None:
    root, versioned = scrape(client, "/metrics"), scrape(client, "/v1/tts/metrics")
    assert set(root.families) == set(versioned.families)
    expected = {
        "veena3_tts_requests",
        "veena3_tts_requests_completed",
        "veena3_tts_requests_failed",
        "veena3_tts_ttfb_seconds",
        "veena3_tts_rtf",
        "veena3_tts_audio_duration_seconds",
        "veena3_tts_chunks_sent",
        "veena3_tts_model_load_seconds",
        "veena3_tts_model_loaded",
        "veena3_tts_chunk_interval_seconds",
        "veena3_tts_active_streams",
        "veena3_tts_stream_queue_depth",
        "veena3_tts_stream_queue_fill_ratio",
        "veena3_tts_frames_dropped",
        "veena3_tts_llm_tokens_generated",
        "veena3_tts_sr_ready",
    }
    assert expected <= set(root.families)


# ---------------------------------------------------------------------------------------------------- debug routes


def test_debug_routes_need_the_admin_key(client: httpx.Client) -> None:
    for headers in ({}, {"X-Admin-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        response = client.get("/v1/tts/debug/stats", headers=headers)
        assert response.status_code == 403 and response.json()["error"]["code"] == "FORBIDDEN"
        assert client.post("/v1/tts/debug/reset", headers=headers).status_code == 403
    assert (
        client.get("/v1/tts/debug/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    )


async def test_debug_routes_are_absent_without_an_admin_key() -> None:
    from api.app import create_app
    from shared.settings import Settings

    app = create_app(Settings(auth_enabled=False, admin_key=""))  # no lifespan: nothing is loaded
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        for headers in ({}, {"X-Admin-Key": ADMIN_KEY}):
            response = await c.get("/v1/tts/debug/stats", headers=headers)
            assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
            assert (await c.post("/v1/tts/debug/reset", headers=headers)).status_code == 404


def test_a_lossy_stage_shows_in_debug_stats_until_reset(
    client: httpx.Client, live: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.pipeline.audio_output as synthesis  # where the re-framer is used

    assert admin(client, "POST", "/v1/tts/debug/reset") == {"reset": True}
    clean = admin(client, "GET", "/v1/tts/debug/stats")
    assert clean["requests"]["total"] == 0 and clean["losses"]["total"] == 0 and clean["recent_events"] == []
    losses_before = scrape(client).get("veena3_tts_pipeline_losses_total", stage="encode")

    class FrameDroppingBuffer(synthesis.FrameBuffer):
        """The re-framer with a bug: the first complete frame of each request never reaches the encoder."""

        dropped = False

        def push(self, samples: np.ndarray) -> list[np.ndarray]:  # the compressed formats' frames
            frames = super().push(samples)
            if frames and not self.dropped:
                self.dropped = True
                return frames[1:]
            return frames

        def push_joined(
            self, samples: np.ndarray
        ) -> np.ndarray:  # pcm, wav, mulaw: the whole frames in one block
            block = super().push_joined(samples)
            if len(block) and not self.dropped:
                self.dropped = True
                return block[self.frame_samples :]
            return block

    body = {"text": "The river ran quietly past the mill.", "speaker": "default", "seed": 2, "format": "pcm"}
    good = client.post("/v1/tts/generate", json=body)
    with monkeypatch.context() as patch:
        patch.setattr(synthesis, "FrameBuffer", FrameDroppingBuffer)
        lossy = client.post("/v1/tts/generate", json=body)
    assert good.status_code == lossy.status_code == 200
    frame_bytes = 2 * 16_000 * live.settings.stream.frame_ms // 1000
    assert len(good.content) - len(lossy.content) == frame_bytes  # the audio really is 40 ms short

    wait_for(lambda: admin(client, "GET", "/v1/tts/debug/stats")["requests"]["completed"] == 2)
    stats = admin(client, "GET", "/v1/tts/debug/stats")
    assert stats["losses"]["total"] == 1 and stats["losses"]["requests_with_loss"] == 1
    assert stats["losses"]["by_stage"] == {stage: int(stage == "encode") for stage in STAGES}
    assert stats["losses"]["missing_by_stage"] == {"encode": {"frames": 1}}
    [event] = stats["recent_events"]
    assert event["kind"] == "loss" and event["stage"] == "encode" and event["unit"] == "frames"
    assert event["request_id"] == lossy.headers["X-Request-ID"] and event["missing"] == 1
    assert stats["totals"]["output_samples"] == 2 * (len(good.content) // 2)  # both requests, 16-bit PCM
    assert scrape(client).get("veena3_tts_pipeline_losses_total", stage="encode") == losses_before + 1

    assert admin(client, "POST", "/v1/tts/debug/reset") == {"reset": True}
    cleared = admin(client, "GET", "/v1/tts/debug/stats")
    assert cleared["requests"]["total"] == 0 and cleared["losses"]["total"] == 0
    assert cleared["losses"]["missing_by_stage"] == {} and cleared["recent_events"] == []
    assert cleared["totals"]["output_samples"] == 0
    # Prometheus counters stay monotonic across a reset.
    assert scrape(client).get("veena3_tts_pipeline_losses_total", stage="encode") == losses_before + 1


def test_streamed_requests_feed_the_cadence_section(client: httpx.Client) -> None:
    """Debug stats show each stream's send cadence: chunks, audio seconds, intervals and modelled underruns."""
    assert admin(client, "POST", "/v1/tts/debug/reset") == {"reset": True}
    body = {
        "text": "A steady stream of words arrives here.",
        "speaker": "default",
        "seed": 4,
        "format": "pcm",
        "stream": True,
    }
    with client.stream("POST", "/v1/tts/generate", json=body) as response:
        received = sum(len(piece) for piece in response.iter_bytes())
    wait_for(lambda: admin(client, "GET", "/v1/tts/debug/stats")["requests"]["completed"] == 1)
    cadence = admin(client, "GET", "/v1/tts/debug/stats")["cadence"]
    assert cadence["streams"] == 1 and cadence["chunks"] >= 2
    assert received > 0
    assert cadence["underruns"] >= 0 and cadence["interval_max_s"] > 0


def test_a_streamed_request_shows_in_the_codec_schedulers_route_and_families(client: httpx.Client) -> None:
    """The real scheduler (demo checkpoint, CPU): one streamed request moves its calls, rows and first-window waits,
    and the admin route reports it; with nothing pending, no window waits."""
    before = scrape(client)
    body = {
        "text": "The codec scheduler runs these windows.",
        "speaker": "default",
        "seed": 5,
        "format": "pcm",
        "stream": True,
    }
    with client.stream("POST", "/v1/tts/generate", json=body) as response:
        assert response.status_code == 200 and sum(len(piece) for piece in response.iter_bytes()) > 0
    after = scrape(client)
    assert after.total("veena3_tts_codec_scheduler_calls_total") > before.total(
        "veena3_tts_codec_scheduler_calls_total"
    )
    first = ("veena3_tts_codec_scheduler_window_wait_seconds_count", {"kind": "decode", "phase": "first"})
    assert after.get(first[0], **first[1]) > before.get(first[0], **first[1])
    assert after.get("veena3_tts_codec_scheduler_busy_ratio") >= 0
    for headers in ({}, {"X-Admin-Key": "wrong"}):
        assert client.get("/v1/tts/debug/scheduler", headers=headers).status_code == 403
    view = admin(client, "GET", "/v1/tts/debug/scheduler")
    assert view["stats"]["calls"] >= 1 and view["stats"]["rows_by_kind"]["decode"] >= 1
    assert view["waiting"] == [] and view["load"]["pending_windows"] == 0
    assert set(view["load"]) >= {
        "busy_ratio",
        "recent_misses",
        "min_slack_s",
        "open_streams",
        "calls_in_flight",
    }
