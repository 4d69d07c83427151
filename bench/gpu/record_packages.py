"""Record the Python packages the service loads when it serves, for the GPU kit's wheel list (bench/gpu/wheels.py).

    .venv/bin/python bench/gpu/record_packages.py            # record and rewrite bench/gpu/served_packages.json
    .venv/bin/python bench/gpu/record_packages.py --check    # record, compare with the committed file, exit 1 if
                                                             # a loaded package is missing from it

A list of start-up imports misses what is imported later (the Chinese segmenter `rjieba`, imported by warm-up, was
never carried to a lent H200). So this starts the server the kit's service steps start
(`bench/serve_paced.py` via `bench_ttfa.spawn_servers`, demo checkpoint on the CPU, warm-up on), sends one request
of each kind a user sends (`REQUESTS`: every output format, 16 and 48 kHz and a resampled rate, word timestamps in
English and Chinese, captions, a cloned voice, OpenAI's and the dialects' HTTP routes, each socket dialect: native
WebSocket, ElevenLabs, Cartesia and Wyoming, a text job and EPUB, PDF and DOCX jobs), reads the server's
`sys.modules` (`GET /bench/modules`), adds what the document reader's own process loads (`reader_modules`: uploads
are read in a child process) and what the kit's own process imports (`CLIENT_MODULES`, in a fresh interpreter), and maps
every top-level module to its distribution (`importlib.metadata.packages_distributions`). Each request must succeed:
a failed one is what a missing package looks like, so the recorder stops and names it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import importlib.metadata as md
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

RECORD = ROOT / "bench" / "gpu" / "served_packages.json"
PROJECT = "spark-tts-service"
# Books made by real tools (tests/books/README.md): every kind of upload the reader process opens.
BOOK_FILES = (
    (ROOT / "tests/books/nested.epub", "application/epub+zip"),
    (ROOT / "tests/books/license.pdf", "application/pdf"),
    (
        ROOT / "tests/books/license.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
)
EN = "Hello there. The quick brown fox jumps over the lazy dog at 5 pm."
ZH = "你好，世界。今天天气很好，我们去公园散步吧。"
# What the kit's process imports besides the server: acceptance.py and every step's modules, lazy ones included.
CLIENT_MODULES = (
    "bench.gpu.acceptance",
    "bench.gpu.bench_gpu",
    "bench.gpu.engine_step",
    "bench.gpu.llm_step",
    "bench.gpu.parity",
    "bench.gpu.report",
    "bench.gpu.scheduler_step",
    "bench.gpu.service_load",
    "bench.gpu.throughput",
    "bench.bench_ttfa",
    "bench.bench_clone",
    "bench.bench_align",
    "bench.harness",
    "core.demo.checkpoint",
)


def reference_wav(seconds: float = 3.0, rate: int = 16_000) -> bytes:
    """A voiced-like reference clip for cloning (a harmonic tone with a slow vibrato), as a 16-bit WAV."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 10 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    signal = np.zeros_like(phase)
    for k in range(1, 8):
        signal += np.sin(k * phase) / k
    signal *= 0.2
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((signal * 32767).astype(np.int16).tobytes())
    return buffer.getvalue()


def epub_bytes() -> bytes:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("record-packages")
    book.set_title("Packages")
    book.set_language("en")
    chapter = epub.EpubHtml(title="One", file_name="one.xhtml", lang="en")
    chapter.content = f"<h1>One</h1><p>{EN}</p>"
    book.add_item(chapter)
    book.toc = [chapter]
    book.spine = ["nav", chapter]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "book.epub"
        epub.write_epub(str(path), book)
        return path.read_bytes()


# ---------------------------------------------------------------------------------------------- the requests
def http_requests() -> list[tuple[str, str, dict[str, Any]]]:
    """(what, path, JSON body) of every HTTP request kind."""
    from audio.encoders import FORMATS

    clone = base64.b64encode(reference_wav()).decode()
    out: list[tuple[str, str, dict[str, Any]]] = [
        (f"format {fmt}", "/v1/tts/generate", {"text": EN, "format": fmt}) for fmt in FORMATS
    ]
    out += [
        ("48 kHz wav", "/v1/tts/generate", {"text": EN, "output": "48khz", "format": "wav"}),
        (
            "48 kHz mp3 streamed",
            "/v1/tts/generate",
            {"text": EN, "output": "48khz", "format": "mp3", "stream": True},
        ),
        (
            "24 kHz pcm streamed",
            "/v1/tts/generate",
            {"text": EN, "sample_rate": 24000, "format": "pcm", "stream": True},
        ),
        ("timestamps en + srt", "/v1/tts/generate", {"text": EN, "timestamps": "word", "captions": "srt"}),
        (
            "timestamps en streamed",
            "/v1/tts/generate",
            {"text": EN, "timestamps": "character", "stream": True},
        ),
        ("timestamps zh", "/v1/tts/generate", {"text": ZH, "timestamps": "word"}),
        ("timestamps zh 48 kHz", "/v1/tts/generate", {"text": ZH, "timestamps": "word", "output": "48khz"}),
        ("cloned voice", "/v1/tts/generate", {"text": EN, "reference_audio": clone}),
        ("speed 1.2", "/v1/tts/generate", {"text": EN, "speed": 1.2}),
        (
            "openai mp3",
            "/v1/audio/speech",
            {"model": "tts-1", "input": EN, "voice": "alloy", "response_format": "mp3"},
        ),
        (
            "openai sse",
            "/v1/audio/speech",
            {"model": "tts-1", "input": EN, "voice": "alloy", "stream_format": "sse"},
        ),
        ("elevenlabs with timestamps", "/v1/text-to-speech/default/with-timestamps", {"text": EN}),
        ("elevenlabs stream", "/v1/text-to-speech/default/stream?output_format=mp3_44100_128", {"text": EN}),
        (
            "cartesia bytes",
            "/tts/bytes",
            {
                "model_id": "sonic-3",
                "transcript": EN,
                "voice": {"mode": "id", "id": "default"},
                "output_format": {"container": "wav", "sample_rate": 16000},
            },
        ),
    ]
    return out


async def sockets(url: str, wyoming_port: int) -> list[dict[str, Any]]:
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize

    from bench.ws_speakers import WS_TRANSPORTS, speak

    done = []
    for transport in WS_TRANSPORTS:
        for rate in (16000, 48000):
            heard = await speak(url, transport, EN, "default", True, 0, timeout_s=120, sample_rate=rate)
            ok = heard.error is None and heard.audio_bytes > 0
            done.append({"what": f"socket {transport} {rate} Hz", "ok": ok, "error": heard.error})
    audio = 0
    async with AsyncTcpClient("127.0.0.1", wyoming_port) as client:
        await client.write_event(Synthesize(text=EN).event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 120)
            if event is None or event.type == "audio-stop":
                break
            audio += len(event.payload or b"")
    done.append({"what": "socket wyoming", "ok": audio > 0, "error": None if audio else "no audio"})
    return done


def run_job(url: str, send: Callable[[], httpx.Response], what: str) -> dict[str, Any]:
    answer = send()
    if answer.status_code != 202:
        return {"what": what, "ok": False, "error": f"HTTP {answer.status_code}: {answer.text[:300]}"}
    job_id = answer.json()["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/v1/tts/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return {"what": what, "ok": job["status"] == "done", "error": job.get("error")}
        time.sleep(0.5)
    return {"what": what, "ok": False, "error": "not done in 300 s"}


def drive(url: str, wyoming_port: int) -> list[dict[str, Any]]:
    done = []
    for what, path, body in http_requests():
        answer = httpx.post(f"{url}{path}", json=body, timeout=180)
        ok = answer.status_code == 200 and len(answer.content) > 0
        done.append(
            {
                "what": what,
                "ok": ok,
                "error": None if ok else f"HTTP {answer.status_code}: {answer.text[:300]}",
            }
        )
    done += asyncio.run(sockets(url, wyoming_port))
    done.append(
        run_job(
            url,
            lambda: httpx.post(f"{url}/v1/tts/jobs", json={"text": EN, "title": "t"}, timeout=60),
            "job (text)",
        )
    )
    books = [("book.epub", epub_bytes(), "application/epub+zip")]
    books += [(path.name, path.read_bytes(), media) for path, media in BOOK_FILES]
    for name, data, media in books:
        done.append(
            run_job(
                url,
                functools.partial(
                    httpx.post, f"{url}/v1/tts/jobs", files={"file": (name, data, media)}, timeout=60
                ),
                f"job ({Path(name).suffix[1:].upper()})",
            )
        )
    return done


def reader_modules() -> list[str]:
    """What the document reader loads: it runs in a process of its own (services/jobs/documents/isolated.py), so
    the server's `sys.modules` never shows it. Read every kind a user uploads in one fresh interpreter, as its
    child does."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "import services.jobs.documents.isolated; from services.jobs.documents import read_document; "
        "[read_document(open(p, 'rb').read(), filename=p) for p in sys.argv[2:]]; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    paths = [str(path) for path, _ in BOOK_FILES] + [str(ROOT / "tests/books/license.md")]
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), *paths], capture_output=True, text=True, check=True
    )
    return list(json.loads(done.stdout.splitlines()[-1]))


# ---------------------------------------------------------------------------------------------- the record
def client_modules() -> list[str]:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        f"[__import__(m) for m in {list(CLIENT_MODULES)!r}]; print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout.splitlines()[-1]))


def distributions(modules: list[str]) -> dict[str, list[str]]:
    """Distribution (normalised name) -> the top-level modules of it that were loaded; the project itself left out."""
    owners = md.packages_distributions()
    found: dict[str, set[str]] = {}
    for top in {m.split(".")[0] for m in modules}:
        for dist in owners.get(top, []):
            name = dist.lower().replace("_", "-")
            if name != PROJECT:
                found.setdefault(name, set()).add(top)
    return {name: sorted(found[name]) for name in sorted(found)}


def record() -> dict[str, Any]:
    from bench import bench_ttfa
    from bench.harness import DEMO_DIR, free_port, stop_server, wait_ready
    from core.demo.checkpoint import build_demo_checkpoint

    model_dir = build_demo_checkpoint(DEMO_DIR, seed=0)
    wyoming_port = free_port()
    with tempfile.TemporaryDirectory(prefix="record-packages-") as tmp:
        settings = {
            "TTS_WYOMING_ENABLED": "true",
            "TTS_WYOMING_PORT": str(wyoming_port),
            "TTS_JOBS_DIR": str(Path(tmp) / "jobs"),
        }
        server = bench_ttfa.spawn_servers(model_dir, Path(tmp), {"plain"}, "cpu", "demo", settings=settings)[
            "plain"
        ]
        try:
            wait_ready([server], timeout_s=300)
            done = drive(server.url, wyoming_port)
            served = httpx.get(f"{server.url}/bench/modules", timeout=30).json()["modules"]
        finally:
            stop_server(server)
    failed = [f"{d['what']}: {d['error']}" for d in done if not d["ok"]]
    if failed:
        raise SystemExit("requests failed (a missing package looks like this):\n  " + "\n  ".join(failed))
    return {
        "what": "the distributions the service loads when it serves (bench/gpu/record_packages.py); "
        "bench/gpu/wheels.py carries those the lent image lacks",
        "requests": [d["what"] for d in done],
        "client_modules": list(CLIENT_MODULES),
        "distributions": distributions(served + reader_modules() + client_modules()),
    }


def compare(recorded: dict[str, list[str]], committed: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(loaded but missing from the committed file: these would not be carried; listed but no longer loaded)."""
    return sorted(set(recorded) - set(committed)), sorted(set(committed) - set(recorded))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed file instead of writing"
    )
    parser.add_argument("--out", type=Path, default=RECORD)
    args = parser.parse_args(argv)
    result = record()
    if not args.check:
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(
            f"{len(result['distributions'])} distributions, {len(result['requests'])} requests -> {args.out}"
        )
        return 0
    committed = json.loads(RECORD.read_text())["distributions"]
    missing, unused = compare(result["distributions"], committed)
    if unused:
        print(f"listed in {RECORD.name} but not loaded (harmless; rerecord to drop): {', '.join(unused)}")
    if missing:
        print(
            f"LOADED BUT NOT IN {RECORD.name} (the GPU kit would not carry them): {', '.join(missing)}; "
            "rerecord: .venv/bin/python bench/gpu/record_packages.py"
        )
        return 1
    print(f"{RECORD.name} covers all {len(result['distributions'])} distributions loaded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
