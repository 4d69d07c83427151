"""While audio is delivered, the accounting notes what has been delivered (seconds, and the text that audio covers
by the charge's cut-chunk rule) once per PROGRESS_STEP_S of audio: the cost is bounded by the audio, not the chunks."""

from __future__ import annotations

from types import SimpleNamespace

from core.guards.text_budget import expected_tokens
from services.usage.accounting import PROGRESS_STEP_S, RequestAccounting

CHUNKS = ["The first sentence is here.", "A second one follows it.", "And a third to end with."]
RATE = 16000


def _job() -> SimpleNamespace:
    # Each chunk generated exactly its expected speech (320 samples per semantic token at 16 kHz).
    decoded = [expected_tokens(c) * 320 for c in CHUNKS]
    stats = SimpleNamespace(
        sent_samples=0,
        time_stretch=1.0,
        decoded_samples_per_chunk=decoded,
        text_chunks_done=len(CHUNKS),
        output_samples=sum(decoded),
        sent_chunks=0,
        sent_bytes=0,
        text_chunks=len(CHUNKS),
    )
    request = SimpleNamespace(
        request_id="r1",
        stream=False,
        sample_rate=RATE,
        audio_format="pcm",
        voice=SimpleNamespace(id="fixed", metric_label="fixed"),
    )
    return SimpleNamespace(
        request=request,
        stats=stats,
        plan=SimpleNamespace(chunks=CHUNKS),
        guards=SimpleNamespace(max_s_per_char=0.5),
    )


def test_progress_is_noted_once_per_second_of_audio_with_the_text_it_covers() -> None:
    job = _job()
    accounting = RequestAccounting(job, transport="http", clock_origin=0.0)  # type: ignore[arg-type]
    notes: list[tuple[float, str]] = []
    accounting.on_progress = lambda seconds, text: notes.append((seconds, text))
    total = sum(job.stats.decoded_samples_per_chunk)
    step = RATE // 10  # a chunk of 0.1 s at a time
    for sent in range(step, total + 1, step):
        job.stats.sent_samples = sent
        accounting.audio_sent()
    seconds = total / RATE
    assert len(notes) <= int(seconds / PROGRESS_STEP_S) + 1  # bounded by the audio
    assert notes[0][0] == 0.1 and all(
        b[0] - a[0] >= PROGRESS_STEP_S - 1e-9 for a, b in zip(notes, notes[1:], strict=False)
    )
    texts = [text for _, text in notes]
    assert texts == sorted(texts, key=len) and texts[-1] != ""
    assert " ".join(CHUNKS).startswith(texts[-1])  # the delivered text is a prefix of what was asked
    # All of the first chunk's audio delivered: its whole text is covered, the second's only in part.
    job.stats.sent_samples = job.stats.decoded_samples_per_chunk[0] + RATE // 10
    assert accounting.delivered_text(job.stats.sent_samples / RATE).startswith(CHUNKS[0] + " A")
    accounting.finish("disconnected")
    before = len(notes)
    job.stats.sent_samples = total * 2
    accounting.audio_sent()
    assert len(notes) == before  # the request ended: its final record says the rest


def test_a_served_request_notes_its_delivery_on_its_intent_row(demo_model_dir, tmp_path) -> None:  # noqa: ANN001
    """Through the app: a keyed HTTP stream and a WebSocket utterance each note their delivered audio on their own
    intent row (the notes a kill -9 would leave behind), growing, before the final record replaces the row."""
    import json

    from fastapi.testclient import TestClient

    from api import create_app
    from services.access import AccessServices, Authenticator, StaticKeyStore
    from services.deployment.runtime import ModelRuntime
    from services.usage.request_log import RequestLogger
    from services.usage.request_spool import RequestSpool
    from shared.settings import Settings
    from tests.conftest import wait_in_portal
    from tests.unit.services.usage.test_request_log import MemorySink

    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        auth_enabled=True,
        rate_limit_per_minute=10_000,
        request_log_flush_s=0.05,
    )
    store = StaticKeyStore()
    store.add_plain_key("progress-key", key_id="progress")
    spool = RequestSpool(tmp_path, "progress")
    notes: dict[str, list[dict]] = {}
    write = spool.progress

    def noted(server_id: str, delivered: dict) -> None:
        notes.setdefault(server_id, []).append(delivered)
        write(server_id, delivered)

    spool.progress = noted  # type: ignore[method-assign]
    access = AccessServices(
        settings,
        authenticator=Authenticator(store, ttl_s=30.0),
        request_logger=RequestLogger(MemorySink(), flush_s=0.05, spool=spool),
    )
    runtime = ModelRuntime(settings)
    headers = {"Authorization": "Bearer progress-key"}
    with TestClient(create_app(settings, runtime=runtime, access=access)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        response = client.post(
            "/v1/tts/generate", headers=headers, json={"text": "A short line to speak.", "stream": True}
        )
        assert response.status_code == 200
        http_id = response.headers["X-Server-Request-ID"]
        with client.websocket_connect("/v1/tts/ws?api_key=progress-key") as ws:
            ws.send_text(json.dumps({"text": "A short line to speak.", "speaker": "fixed"}))
            while True:
                message = ws.receive()
                if message.get("text") and json.loads(message["text"]).get("type") in ("done", "error"):
                    break
        wait_in_portal(client, lambda: not access.request_logger._progress_writers)  # noqa: SLF001
    assert http_id in notes and len(notes) == 2
    for noted_rows in notes.values():
        seconds = [n["audio_duration_seconds"] for n in noted_rows]
        assert seconds == sorted(seconds) and seconds[-1] > 0
        assert noted_rows[-1]["text_length"] > 0 and "text" not in noted_rows[-1]
