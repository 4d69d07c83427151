"""Serve the real app with the paced engine in place of the LLM (a subprocess for bench/bench_service.py).

    .venv/bin/python bench/serve_paced.py --port 8123 [--rate 100] [--prefill-ms 0] [--tick-ms 20]
        [--codec demo|released]

Everything except the LLM is the product: settings come from the environment (TTS_*; set TTS_MODEL_DIR to the
demo checkpoint, TTS_AUTH_ENABLED=false), the runtime loads tokenizer, voices, BiCodec and AP-BWE and warms
up as usual, and `create_app(settings, runtime=runtime)` is served by uvicorn. Two extra routes serve the
load generator and nothing else (`--codec released` swaps in BiCodec and AP-BWE at the released sizes with
random weights, for a GPU run where the demo's tiny codecs would understate the work):
- `GET /bench/engine`: the pace config, torch threads, and the per-stream engine records since the last call;
- `POST /bench/engine`: JSON with any of tokens_per_s, tokens_per_char, prefill_s, tick_s changes the
  schedule of later streams (a rate sweep needs no restart);
- `POST /bench/variant`: `{"codec": "free"}` swaps BiCodec's decode for `bench.ideal_stream.FreeCodec` (silence of
  the exact length, no compute; AP-BWE's batched call for `FreeSR`, quiet noise of 3x the length, no compute either;
  BENCH ONLY, under the same codec scheduler) to separate the service's own scheduling from the models' compute,
  `{"codec": "model"}` restores it;
  `{"before": ["resume", "holdback", "gc"]}` serves later requests without the product's first-audio techniques
  (BENCH ONLY, see `LEGACY`), `{"before": []}` with them: both compared in one run on one server;
- `POST /bench/gc`: times one forced full cyclic-GC collection (the stall a gen-2 collection causes);
- `GET /bench/modules`: every module the process has loaded (`sys.modules`), for the GPU kit's package list;
- `GET /bench/device`: the codec runner's cumulative calls and seconds per call shape (`ModelRunner.device_time()`:
  device-thread seconds, and on CUDA the device's own seconds per call); the GPU kit diffs two readings per level.
Every decode and AP-BWE window goes through the product's codec scheduler (`services.device`); `GET /bench/engine`
returns its cumulative `scheduler` figures (calls, rows, mean batch per kind, busy seconds, missed deadlines).
`GET /bench/engine` also returns `pipeline`: per settled request its `PipelineStats` step counts (`preamble_ids`,
`first_audio_engine_ids`, `semantic_tokens`), the server's own time to first audio and send underruns, taken where
the product settles a request (`AccessServices.settle`, subclassed here), so the bench reads them from the server
without a hook in the product; and `gc_pauses`, the cyclic-GC pauses per generation since the last call.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402

from api.app import create_app  # noqa: E402
from bench.ideal_stream import FreeCodec, FreeSR  # noqa: E402
from bench.paced_engine import PaceConfig, PacedEngine  # noqa: E402
from core.streaming import StreamingConfig  # noqa: E402
from services.access.grant import AccessServices  # noqa: E402
from services.deployment.runtime import ModelRuntime  # noqa: E402
from services.pipeline.audio_output import AudioOutput  # noqa: E402
from services.pipeline.speaker_vectors import SpeakerVectors  # noqa: E402
from shared.settings import FIELD_GROUP, Settings  # noqa: E402


class PacedRuntime(ModelRuntime):
    """The product runtime, except that its engine is a `PacedEngine` (built after the tokenizer loads); with no
    `pace`, the product's own engine (`TTS_ENGINE`: vLLM on the demo checkpoint, for what its output path costs)."""

    def __init__(self, settings: Settings, pace: PaceConfig | None, codec: str = "demo") -> None:
        super().__init__(settings)
        self.pace = pace
        self.codec = codec
        self.raw_bicodec: Any = None
        self.free_codec = False
        self.speaker_vector_computations = 0
        self._codec_final = (
            codec != "released"
        )  # released: the demo-size codecs are replaced after the product loads

    def build_codec_scheduler(self) -> None:
        if self._codec_final:  # (no scheduler, and no graph capture, for codecs about to be replaced)
            super().build_codec_scheduler()

    def load_models(self) -> None:
        super().load_models()
        if self.codec == "released":
            from bench.gpu.bench_gpu import apbwe_config, bicodec_config, build_bicodec, build_sr

            self.bicodec = build_bicodec(bicodec_config()[0], self.device)
            self.speaker_vectors = SpeakerVectors(self.bicodec)
            if self.sr is not None:
                self.sr = build_sr(apbwe_config()[0], self.device)
            self._codec_final = True
            self.build_codec_scheduler()  # over the released-size models (on CUDA: their graphs captured here)
        self.raw_bicodec = self.bicodec
        compute = self.raw_bicodec.speaker_vector

        def counted(tokens: torch.Tensor) -> torch.Tensor:  # verifies the per-voice cache: one per voice
            self.speaker_vector_computations += 1
            return compute(tokens)

        self.raw_bicodec.speaker_vector = counted

    def set_free_codec(self, free: bool) -> None:
        """Serve later streams with a decode that costs nothing (bench only), under the same codec scheduler."""
        self.free_codec = free
        runner = self.codec_scheduler.runner
        runner.decoder = FreeCodec(self.raw_bicodec) if free else self.raw_bicodec
        if self.sr is not None:  # AP-BWE's windows too (48 kHz requests)
            runner.sr = FreeSR(self.sr) if free else self.sr

    async def create_engine(self) -> None:
        if self.pace is None:
            await super().create_engine()
            return
        self.engine = PacedEngine.from_tokenizer(self.tokenizer, self.layout, self.pace)


def _patch_resume() -> Callable[[], None]:
    """Chunks keep growing after the short schedule (no restart at the first chunk size)."""
    original = StreamingConfig.for_latency

    def for_latency(self: StreamingConfig, preference: Any) -> StreamingConfig:
        return replace(original(self, preference), resume_chunk_tokens=None)

    StreamingConfig.for_latency = for_latency  # type: ignore[method-assign]
    return lambda: setattr(StreamingConfig, "for_latency", original)


def _patch_holdback() -> Callable[[], None]:
    """The crossfade joiner keeps every chunk's last 50 ms back, even when no text chunk follows."""
    original = AudioOutput.start_segment

    def start_segment(self: AudioOutput, last: bool = False) -> None:
        original(self, last=False)

    AudioOutput.start_segment = start_segment  # type: ignore[method-assign]
    return lambda: setattr(AudioOutput, "start_segment", original)


def _patch_gc() -> Callable[[], None]:
    """The start-up heap stays in the cyclic GC's reach (a full collection walks it all)."""
    gc.unfreeze()
    return gc.freeze


# BENCH ONLY: each first-audio technique undone, patched in this process so both ways run on one server.
LEGACY: dict[str, Callable[[], Callable[[], None]]] = {
    "resume": _patch_resume,
    "holdback": _patch_holdback,
    "gc": _patch_gc,
}


class Legacy:
    """Which `LEGACY` patches this bench server applies now (each patch undone when it is dropped)."""

    def __init__(self) -> None:
        self._undo: dict[str, Callable[[], None]] = {}

    @property
    def active(self) -> list[str]:
        return sorted(self._undo)

    def set(self, names: list[str]) -> None:
        unknown = set(names) - set(LEGACY)
        if unknown:
            raise ValueError(f"unknown legacy behaviours {sorted(unknown)}; accepted: {sorted(LEGACY)}")
        for name in [n for n in self._undo if n not in names]:
            self._undo.pop(name)()
        for name in [n for n in names if n not in self._undo]:
            self._undo[name] = LEGACY[name]()


class GcPauses:
    """Cyclic-GC pauses per generation in this process (a stop-the-world pause stalls the event loop too)."""

    def __init__(self) -> None:
        self._started: float | None = None
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def drain(self) -> dict[str, dict[str, float]]:
        out = {
            str(g): {"count": len(p), "max_s": max(p, default=0.0), "total_s": sum(p)}
            for g, p in self.pauses.items()
        }
        self.pauses = {0: [], 1: [], 2: []}
        return out


class RecordingAccess(AccessServices):
    """The product's access services, also keeping each settled request's figures for `GET /bench/engine`."""

    def __init__(self, settings: Settings, history: int = 4096) -> None:
        super().__init__(settings)
        self.requests: deque[dict[str, Any]] = deque(maxlen=history)

    async def settle(self, grant: Any, outcome: Any) -> None:
        stats = outcome.job.stats
        self.requests.append(
            {
                "request_id": outcome.request_id,
                "status": outcome.status,
                "server_ttfa_ms": outcome.ttfb_ms,
                "preamble_ids": stats.preamble_ids,
                "first_audio_engine_ids": stats.first_audio_engine_ids,
                "semantic_tokens": stats.semantic_tokens,
                "server_underruns": (outcome.cadence or {}).get(
                    "underruns"
                ),  # the server's sends, no prebuffer
            }
        )
        await super().settle(grant, outcome)

    def drain(self) -> list[dict[str, Any]]:
        out = list(self.requests)
        self.requests.clear()
        return out


def add_bench_routes(app: FastAPI, runtime: PacedRuntime, access: RecordingAccess) -> None:
    legacy = Legacy()
    gc_pauses = GcPauses()

    async def engine_state() -> dict:
        engine: Any = runtime.engine
        if engine is None:
            return {"ready": False}
        paced = isinstance(engine, PacedEngine)
        return {
            "ready": runtime.ready,
            "engine": engine.name,
            "config": asdict(engine.config) if paced else None,
            "torch_threads": torch.get_num_threads(),
            "active": len(engine.active_requests()),
            "streams": [asdict(s) for s in engine.drain_stats()] if paced else [],
            "pipeline": access.drain(),
            "gc_pauses": gc_pauses.drain(),
            "codec": "free" if runtime.free_codec else "model",
            "before": legacy.active,
            "scheduler": _scheduler_stats(runtime.codec_scheduler),
            # The host's share of what binds: this process's CPU seconds, all threads (a bench diffs two readings).
            "process_cpu_s": time.process_time(),
            "admission": _admission_stats(runtime.admission),
            "speaker_vector_computations": runtime.speaker_vector_computations,
            "sr_context_samples": runtime.sr.context if runtime.sr is not None else None,
            "settings": {
                k: getattr(getattr(runtime.settings, FIELD_GROUP[k]), k) for k in _REPORTED_SETTINGS
            },
        }

    async def engine_update(request: Request) -> dict:
        body = await request.json()
        allowed = {"tokens_per_s", "tokens_per_char", "prefill_s", "tick_s"}
        unknown = set(body) - allowed
        if not isinstance(runtime.engine, PacedEngine):
            return {"error": f"the {runtime.engine.name} engine has no pace to change"}
        if unknown:
            return {"error": f"unknown fields {sorted(unknown)}; accepted: {sorted(allowed)}"}
        return {"config": asdict(runtime.engine.reconfigure(**body))}

    async def variant_update(request: Request) -> dict:
        body = await request.json()
        if "codec" in body:
            if body["codec"] not in ("free", "model"):
                return {"error": "codec must be 'free' or 'model'"}
            runtime.set_free_codec(body["codec"] == "free")
        if "before" in body:
            try:
                legacy.set(list(body["before"]))
            except ValueError as exc:
                return {"error": str(exc)}
        return {"codec": "free" if runtime.free_codec else "model", "before": legacy.active}

    app.add_api_route("/bench/engine", engine_state, methods=["GET"], include_in_schema=False)
    app.add_api_route("/bench/engine", engine_update, methods=["POST"], include_in_schema=False)

    async def gc_timing() -> dict:
        """One forced full collection, timed (it stops the event loop: call it between levels only)."""
        started = time.perf_counter()
        gc.collect()
        return {
            "full_collection_ms": (time.perf_counter() - started) * 1000,
            "frozen_objects": gc.get_freeze_count(),
        }

    async def device_time() -> dict:
        """The codec runner's cumulative per-shape call times (a stand-in runner without them: an empty list)."""
        scheduler = runtime.codec_scheduler
        runner = scheduler.runner if scheduler is not None else None
        reader = getattr(runner, "device_time", None)
        return {
            "device": str(runtime.device),
            "graphs": runner.graphs is not None if runner is not None and reader else None,
            "sr_precision": runtime.settings.codec.codec_sr_precision,  # AP-BWE's on CUDA (a CPU serves fp32)
            "shapes": reader() if reader else [],
        }

    async def loaded_modules() -> dict:
        """Every module this process has imported so far (bench/gpu/record_packages.py maps them to packages)."""
        return {"modules": sorted(sys.modules)}

    app.add_api_route("/bench/variant", variant_update, methods=["POST"], include_in_schema=False)
    app.add_api_route("/bench/modules", loaded_modules, methods=["GET"], include_in_schema=False)
    app.add_api_route("/bench/gc", gc_timing, methods=["POST"], include_in_schema=False)
    app.add_api_route("/bench/device", device_time, methods=["GET"], include_in_schema=False)


_REPORTED_SETTINGS = (
    "stream_first_chunk_tokens",
    "stream_max_chunk_tokens",
    "stream_chunk_growth",
    "stream_left_context_tokens",
    "stream_lookahead_tokens",
    "stream_cut_runway_ms",
    "frame_ms",
    "torch_threads",
    "crossfade_ms",
)


def _admission_stats(admission: Any) -> dict | None:
    """Admission's cumulative decisions (a bench diffs two readings): admitted, refused by rule, first chunks."""
    if admission is None:
        return None
    view = admission.view()
    return {k: view[k] for k in ("admitted", "refused", "first_chunks")}


def _scheduler_stats(scheduler: Any) -> dict | None:
    """The codec scheduler's cumulative figures (a bench diffs two readings)."""
    if scheduler is None:
        return None
    s = scheduler.stats
    return {
        "calls": s.calls,
        "rows": s.rows,
        "padded_rows": s.padded_rows,
        "eager_calls": s.eager_calls,
        "busy_seconds": s.busy_seconds,
        "missed_deadlines": s.missed_deadlines,
        "calls_by_kind": dict(s.calls_by_kind),
        "rows_by_kind": dict(s.rows_by_kind),
        "seconds_by_kind": dict(s.seconds_by_kind),
        "mean_batch": s.mean_batch(),
        "mean_decode_batch": s.mean_batch("decode"),
        "mean_sr_batch": s.mean_batch("sr"),
        "busy_ratio": scheduler.busy_ratio(),
        "active_streams": scheduler.active_streams,
    }


def build_app(pace: PaceConfig | None, settings: Settings | None = None, codec: str = "demo") -> FastAPI:
    settings = settings or Settings()
    runtime = PacedRuntime(settings, pace, codec)  # state "starting": the app's lifespan loads and warms it
    access = RecordingAccess(settings)
    app = create_app(settings, runtime=runtime, access=access)
    add_bench_routes(app, runtime, access)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=100.0, help="semantic tokens per second per stream")
    parser.add_argument("--tokens-per-char", type=float, default=3.5)
    parser.add_argument("--prefill-ms", type=float, default=0.0, help="engine delay before its first id")
    parser.add_argument("--tick-ms", type=float, default=20.0, help="shortest wait between two deltas")
    parser.add_argument(
        "--codec",
        choices=("demo", "released"),
        default="demo",
        help="demo: the checkpoint's codecs; released: released sizes, random weights",
    )
    args = parser.parse_args(argv)
    pace = PaceConfig(
        tokens_per_s=args.rate,
        tokens_per_char=args.tokens_per_char,
        prefill_s=args.prefill_ms / 1000.0,
        tick_s=args.tick_ms / 1000.0,
    )
    app = build_app(pace, codec=args.codec)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
