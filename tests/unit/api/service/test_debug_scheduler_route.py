"""`GET /v1/tts/debug/scheduler`: the admin key's view of the codec scheduler (404 with no admin key, 403 with a
wrong one, MODEL_NOT_LOADED before the models load), and the scheduler's gauges on /metrics."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from services.device import CodecScheduler, DecodeWindow, PlaybackClock
from services.device.admission import Admission
from services.device.calls import Call
from shared.settings import Settings

ADMIN = "the-admin-key"


class NeverReady(ModelRuntime):
    async def start(self) -> None:  # no models: no codec scheduler unless the test builds one
        return None


class NoDevice:
    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        raise AssertionError("the route only looks")

    async def run_model_call(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        raise AssertionError("the route only looks")

    def close(self) -> None:
        return None


def settings(demo_model_dir: Path, admin_key: str = "") -> Settings:
    return Settings(model_dir=demo_model_dir, warmup=False, log_json=False, admin_key=admin_key)


def test_the_route_is_hidden_without_an_admin_key(demo_model_dir: Path) -> None:
    s = settings(demo_model_dir)
    with TestClient(create_app(s, runtime=NeverReady(s))) as client:
        answer = client.get("/v1/tts/debug/scheduler", headers={"X-Admin-Key": "anything"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"


def test_before_the_models_load_it_says_so_in_the_envelope(demo_model_dir: Path) -> None:
    s = settings(demo_model_dir, ADMIN)
    with TestClient(create_app(s, runtime=NeverReady(s))) as client:
        wrong = client.get("/v1/tts/debug/scheduler", headers={"X-Admin-Key": "not-it"})
        answer = client.get("/v1/tts/debug/scheduler", headers={"X-Admin-Key": ADMIN})
        scrape = client.get("/metrics").text
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "FORBIDDEN"
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "MODEL_NOT_LOADED" and "codec scheduler" in error["message"]
    assert "veena3_tts_codec_scheduler_min_slack_seconds +Inf" in scrape
    assert "veena3_tts_codec_scheduler_open_streams 0.0" in scrape


def test_the_admin_sees_stats_load_admission_and_why_windows_wait(demo_model_dir: Path) -> None:
    s = settings(demo_model_dir, ADMIN)
    runtime = NeverReady(s)
    # a clock that moves a microsecond per reading: slack and waits do not depend on how loaded the machine is
    ticks = itertools.count()
    scheduler = CodecScheduler(NoDevice(), clock=lambda: 1000.0 + next(ticks) * 1e-6)
    runtime.codec_scheduler = scheduler
    runtime.admission = Admission(scheduler)
    loop = asyncio.new_event_loop()  # the windows' futures: never awaited, the route only reads them
    try:
        first = PlaybackClock(scheduler.clock(), clock=scheduler.clock)
        handles = [scheduler.open_stream(first)] + [scheduler.open_stream() for _ in range(59)]
        first.note_audio(5.0)  # playing, 5 s buffered: the least urgent
        for h in handles:
            ids = np.zeros(16, np.int32)
            scheduler._enqueue(h, "decode", DecodeWindow(ids, None, 0, 16), loop.create_future())
        with TestClient(create_app(s, runtime=runtime)) as client:
            answer = client.get("/v1/tts/debug/scheduler", headers={"Authorization": f"Bearer {ADMIN}"})
            capped = client.get("/v1/tts/debug/scheduler?limit=3", headers={"X-Admin-Key": ADMIN})
            bad = client.get("/v1/tts/debug/scheduler?limit=0", headers={"X-Admin-Key": ADMIN})
            scrape = client.get("/metrics").text
    finally:
        loop.close()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["load"]["open_streams"] == 60 and body["load"]["pending_windows"] == 60
    assert 4.99 < body["load"]["min_slack_s"] <= 5.0
    assert len(body["waiting"]) == body["waiting_shown"] == 50  # capped at the 50 most urgent
    assert handles[0].id not in [w["stream_id"] for w in body["waiting"]]
    # queued: no plan has looked at them yet (the planner has not run), and the device is free
    assert body["waiting"][0]["reason"] == "queued" and body["waiting"][0]["kind"] == "decode"
    assert body["waiting_by_reason"] == {"queued": 60} and body["load"]["pending_model_calls"] == 0
    assert body["waiting"][0]["seconds_to_deadline"] < 0  # newcomers: due since they arrived
    assert body["stats"]["calls"] == 0 and set(body["stats"]["mean_batch"]) == {"decode", "sr"}
    assert body["admission"]["refused"] == {} and body["admission"]["codec_cost"] is None
    assert [w["stream_id"] for w in capped.json()["waiting"]] == [h.id for h in handles[1:4]]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    assert "veena3_tts_codec_scheduler_open_streams 60.0" in scrape
    assert "veena3_tts_codec_scheduler_pending_windows 60.0" in scrape
