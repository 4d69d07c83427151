"""Acceptance step `scheduler`: the codec scheduler on the device, with the real models, padded rows and graphs.

Several streams at once run every latency schedule through `CodecScheduler` + `ModelRunner` (rows right-padded to a
length bucket and batched across streams; on CUDA each bucket a captured graph, decode at `--decode-precision`,
AP-BWE fp32 (the reference; the served fp16 is timed by `apbwe_variants`), then AP-BWE again with TF32 graphs), each
stream in its own thread as the pipeline's streams would. Checked against the same streams run
unpadded, one window at a time, eager fp32 on the same device (`StreamingDecoder`, `SRStream`), and, for the
full-context schedule and AP-BWE, against the offline result. Also: capture seconds and memory per graph bucket,
replay and eager call times, the scheduler's batches. On a CPU (`--quick`) the same plumbing runs eager at demo size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import numpy as np
import torch

from bench.gpu.bench_gpu import apbwe_config, bicodec_config, build_bicodec, build_sr
from bench.gpu.parity import STREAM_TOLERANCE, _row
from bench.gpu.report import capture_replay_ratios
from core.apbwe import SuperResolution
from core.sr_planner import SRPlanner
from core.streaming import DecodePlanner, StreamingConfig, StreamingDecoder
from services.device import CodecScheduler, DecodeWindow, SchedulerPolicy, SRWindow
from services.device.graphs import CodecGraphs, GraphPlan, run_decode
from services.device.runner import ModelRunner

TF32_MIN_SNR_DB = (
    40.0  # tf32 decode graphs against fp32 eager (46 dB measured on random weights, released size)
)
# The TF32 AP-BWE twins are a second capture beside the measured one: bounded, so the step fits its 10-minute call
# whatever capture costs on the device (shapes left over run eager fp32, and the report says how many).
SR_TF32_CAPTURE_BUDGET_S = 120.0


class _Loop:
    """An event loop in a thread of its own: the scheduler's home; stream threads submit to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def _scheduled_stream(
    decoder: Any, loop: _Loop, handle: Any, d: torch.Tensor, ids: list[int], config: StreamingConfig
) -> np.ndarray:
    """One stream as the pipeline runs it: `DecodePlanner`'s windows submitted with their keep ranges, so the
    scheduler trims each row's wave generator to its kept tokens and reach, pads and batches it with other streams'."""
    planner = DecodePlanner(config, hop=decoder.hop_length, codebook_size=decoder.semantic_codebook_size)
    parts = []

    def run(windows: list[Any]) -> None:
        for w in windows:
            audio = loop.call(handle.decode(DecodeWindow(w.ids, d[0], w.keep_start, w.keep_end)))
            parts.append(planner.take(w, audio))

    for start in range(0, len(ids), 7):  # deltas of 7 ids, as an engine hands them out
        run(planner.push(ids[start : start + 7]))
    run(planner.finish())
    return np.concatenate(parts)


def _decode_stream(decoder: Any, d: torch.Tensor, ids: list[int], config: StreamingConfig) -> np.ndarray:
    streamer = StreamingDecoder(decoder, d, config)
    parts = []
    for start in range(0, len(ids), 7):  # deltas of 7 ids, as an engine hands them out
        parts += streamer.push(ids[start : start + 7])
    parts += streamer.finish()
    return np.concatenate(parts)


def _sr_stream(sr: SuperResolution, loop: _Loop, handle: Any, wav16: np.ndarray) -> np.ndarray:
    """One stream's AP-BWE through the scheduler: the service's windows (`SRPlanner`, its true end marked, never
    right-padded, and shaped to a bucket's length where the policy pads batches, so it replays that bucket's graph),
    320 ms of input at a time."""
    planner = SRPlanner(
        grid=sr.grid,
        context=sr.context,
        min_block=1600,
        max_block=8000,
        end_lengths=handle.scheduler.policy.sr_end_lengths(sr.grid),
    )
    windows = [
        w for i in range(0, wav16.size, 5120) for w in planner.push(wav16[i : i + 5120])
    ] + planner.finish()
    return np.concatenate(
        [
            loop.call(handle.super_resolve(SRWindow(w.samples, w.keep_start, w.keep_end, w.true_end)))
            for w in windows
        ]
    )


def _policy(quick: bool, decoder: Any) -> SchedulerPolicy:
    reach = (
        decoder.wave_reach_tokens
    )  # as the runtime sets it: the wave generator on kept tokens +- its reach
    if quick:
        return SchedulerPolicy(
            decode_buckets=(32, 64, 128, 256),
            sr_buckets=(3_520, 4_800, 9_760),
            batch_sizes=(1, 2, 4),
            max_call_decode_tokens=512,
            max_call_sr_samples=20_000,
            decode_reach=reach,
        )
    return SchedulerPolicy(decode_reach=reach)


def _timed(fn: Any, device: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        began = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - began)
    return best * 1000


def _graph_rows(graphs: CodecGraphs, runner: ModelRunner, device: str) -> list[dict[str, Any]]:
    """Capture figures per bucket, with one replay's and one eager call's time of the same shape."""
    rows = graphs.table()
    sr = runner.sr
    with torch.inference_mode():
        for row, graph in zip(rows, sorted(graphs.graphs.values(), key=lambda g: g.key), strict=True):
            row["replay_ms"] = round(_timed(graph.replay, device), 3)
            if graph.key.kind == "decode":
                packed, d = graph.inputs
                row["eager_ms"] = round(
                    _timed(
                        lambda p=packed, dd=d, m=graphs.plan.margin: run_decode(runner.decoder, p, dd, m),
                        device,
                    ),
                    3,
                )
            else:
                assert sr is not None, "an AP-BWE graph was captured without an AP-BWE model"
                row["eager_ms"] = round(_timed(lambda x=graph.inputs[0]: sr.enhance_batch(x), device), 3)
    return rows


def run(
    device: str,
    quick: bool,
    *,
    streams: int | None = None,
    decode_precision: str = "tf32",
    capture_budget_s: float = 0.0,
) -> dict[str, Any]:
    from core.apbwe import RELEASED_CONFIG as APBWE_RELEASED
    from core.demo.random_bicodec import DEMO_CONFIG

    cuda = device.startswith("cuda")
    config = DEMO_CONFIG if quick else bicodec_config()[0]
    sr_config = dict(APBWE_RELEASED, ConvNeXt_channels=32, ConvNeXt_layers=2) if quick else apbwe_config()[0]
    size = "demo-size" if quick else "released"
    streams = streams or (2 if quick else 8)
    tokens = 60 if quick else 400
    decoder, sr = build_bicodec(config, device), build_sr(sr_config, device)
    policy = _policy(quick, decoder)
    graphs = None
    capture_s = 0.0
    if cuda:
        # time_replays: each graph's replay timed at capture, the own seconds `TTS_ADMISSION_PROFILE=own_seconds`
        # reads, set beside this step's best-of-3 replay (`capture_replay_ms` against `replay_ms`).
        graphs = CodecGraphs(
            decoder,
            sr,
            GraphPlan.from_policy(policy),
            decode_precision=decode_precision,  # type: ignore[arg-type]
            time_replays=True,
        )
        began = time.perf_counter()
        graphs.capture_all(budget_s=capture_budget_s)  # 0: every planned shape (what the step measures)
        capture_s = time.perf_counter() - began
        print(
            f"  captured {len(graphs.graphs)} of {len(graphs.plan.keys)} graphs in {capture_s:.1f} s"
            + (f" (budget {capture_budget_s:g} s)" if capture_budget_s else "")
        )
    runner = ModelRunner(decoder, sr, graphs=graphs)
    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 8192, (tokens,), generator=generator).tolist() for _ in range(streams)]
    voices = [torch.randn(1, decoder.d_vector_dim, generator=generator).to(device) for _ in range(streams)]
    loop = _Loop()
    scheduler = CodecScheduler(runner, policy)
    loop.call(_start(scheduler))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=streams)
    schedules = {
        "exact (full context)": StreamingConfig(left_context_tokens=68, lookahead_tokens=68),
        **{p: StreamingConfig().for_latency(p) for p in ("exact", "balanced", "lowest")},
    }
    # tf32 graphs are judged by SNR against fp32; fp32 graphs (and the CPU) by the CPU tests' tolerance.
    judge: dict[str, Any] = (
        {"min_snr_db": TF32_MIN_SNR_DB} if cuda and decode_precision == "tf32" else {"atol": STREAM_TOLERANCE}
    )
    rows: list[dict[str, Any]] = []
    try:
        with torch.inference_mode():
            offline = [
                decoder.decode_with_speaker(torch.tensor([i], device=device), v)[0].cpu().numpy()
                for i, v in zip(ids, voices, strict=True)
            ]
        for name, schedule in schedules.items():

            def one(k: int, schedule: StreamingConfig = schedule) -> np.ndarray:
                handle = loop.call(_open(scheduler))
                return _scheduled_stream(decoder, loop, handle, voices[k], ids[k], schedule)

            scheduled = list(pool.map(one, range(streams)))
            alone = [_decode_stream(decoder, voices[k], ids[k], schedule) for k in range(streams)]
            rows.append(
                _row(
                    f"{size} scheduler: {name} decode, batched vs alone",
                    np.concatenate(alone),
                    np.concatenate(scheduled),
                    **judge,
                )
            )
            if name.startswith("exact (full"):
                rows.append(
                    _row(
                        f"{size} scheduler: {name} decode == offline",
                        np.concatenate(offline),
                        np.concatenate(scheduled),
                        **judge,
                    )
                )
        wavs = [(o / max(1e-6, float(np.abs(o).max())) * 0.5).astype(np.float32) for o in offline]
        sr_offline = [sr.upsample(w) for w in wavs]

        def sr_one(k: int) -> np.ndarray:
            return _sr_stream(sr, loop, loop.call(_open(scheduler)), wavs[k])

        sr_scheduled = list(pool.map(sr_one, range(streams)))
        rows.append(
            _row(
                f"{size} scheduler: AP-BWE streams, batched == offline",
                np.concatenate(sr_offline),
                np.concatenate(sr_scheduled),
                atol=STREAM_TOLERANCE,
            )
        )
        # The TF32 twins' capture: bounded by itself, and by the step's capture budget when one is set (--one-call).
        twins_s = min(SR_TF32_CAPTURE_BUDGET_S, capture_budget_s or SR_TF32_CAPTURE_BUDGET_S)
        sr_tf32 = _sr_tf32(decoder, sr, policy, pool, wavs, sr_offline, size, device, twins_s)
        stats = scheduler.stats
        summary = {
            "calls": dict(stats.calls_by_kind),
            "rows": dict(stats.rows_by_kind),
            "padded_rows": stats.padded_rows,
            "eager_fallback_calls": stats.eager_calls,
            "mean_batch_decode": round(stats.mean_batch("decode"), 2),
            "mean_batch_sr": round(stats.mean_batch("sr"), 2),
            "graph_calls": runner.graph_calls,
            "eager_calls": runner.eager_calls,
        }
        print(f"  {summary}")
        graph_rows = _graph_rows(graphs, runner, device) if graphs is not None else []
        timed = capture_replay_ratios(graph_rows)
        if timed:
            print(f"  replay at capture / best of 3: {timed}")
        prenet = _prenet_share(decoder, device, decode_precision if cuda else "fp32")
        print(f"  prenet share of a decoded token: {prenet}")
    finally:
        loop.call(scheduler.aclose())
        loop.close()
        pool.shutdown()
        runner.close()
    return {
        "size": size,
        "streams": streams,
        "tokens": tokens,
        "decode_precision": decode_precision if cuda else "fp32",
        "sr_precision": "fp32",
        "graphs": graph_rows,
        "capture_s": round(capture_s, 2),
        "graphs_planned": len(graphs.plan.keys) if graphs is not None else 0,
        "capture_budget_s": capture_budget_s,
        "pool_mib": round(sum(r["pool_mib"] for r in graph_rows), 1),
        "scheduler": summary,
        "rows": rows,
        "prenet_share": prenet,
        "sr_tf32": sr_tf32,
        "all_ok": all(r["ok"] is not False for r in rows),
    }


def _sr_tf32(
    decoder: Any,
    sr: SuperResolution,
    policy: SchedulerPolicy,
    pool: concurrent.futures.Executor,
    wavs: list[np.ndarray],
    sr_offline: list[np.ndarray],
    size: str,
    device: str,
    capture_budget_s: float = SR_TF32_CAPTURE_BUDGET_S,
) -> dict[str, Any]:
    """TTS_CODEC_SR_PRECISION=tf32, measured (the service's default is fp32): the same AP-BWE streams through a
    scheduler whose SR graphs are captured in TF32, against the offline fp32 upsample, judged by the bar decode's tf32
    graphs are held to; and each TF32 graph's replay ms (the report sets them beside the fp32 twins'). Apart from
    `all_ok`: it informs a choice, the default does not depend on it. On a CPU the plumbing runs eager (no TF32)."""
    cuda = device.startswith("cuda")
    graphs = (
        CodecGraphs(decoder, sr, GraphPlan.from_policy(policy, ("sr",)), sr_precision="tf32")
        if cuda
        else None
    )
    began = time.perf_counter()
    if graphs is not None:
        graphs.capture_all(budget_s=capture_budget_s)
    capture_s = time.perf_counter() - began
    runner = ModelRunner(decoder, sr, graphs=graphs)
    loop = _Loop()
    scheduler = CodecScheduler(runner, policy)
    loop.call(_start(scheduler))
    try:
        streams = list(
            pool.map(lambda k: _sr_stream(sr, loop, loop.call(_open(scheduler)), wavs[k]), range(len(wavs)))
        )
        precision = "tf32" if cuda else "fp32 (a CPU has no TF32)"
        row = _row(
            f"{size} scheduler: AP-BWE streams, {precision} graphs vs offline fp32",
            np.concatenate(sr_offline),
            np.concatenate(streams),
            min_snr_db=TF32_MIN_SNR_DB,
        )
        graph_rows = _graph_rows(graphs, runner, device) if graphs is not None else []
    finally:
        loop.call(scheduler.aclose())
        loop.close()
        runner.close()
    status = graphs.status() if graphs is not None else {"planned": 0, "captured": 0}
    return {
        "precision": "tf32" if cuda else "fp32",
        "row": row,
        "capture_s": round(capture_s, 2),
        "planned": status["planned"],
        "captured": status["captured"],
        "graphs": graph_rows,
    }


def _prenet_share(decoder: Any, device: str, precision: str) -> dict[str, float]:
    """The prenet's share of a decode's device time per token count (8 rows, eager, at the graphs' precision): the
    cost model's `decode_ms.prenet_share` (0.05 measured on a CPU at the released size), which prices the prenet's
    whole windows against the wave generator's trimmed spans."""
    from services.device.graphs import tf32

    out = {}
    with torch.inference_mode(), tf32(precision == "tf32"):
        d = torch.randn(8, decoder.d_vector_dim, device=device)
        for tokens in (48, 96, 192):
            z = decoder.quantizer(torch.randint(0, 8192, (8, tokens), device=device))
            x = decoder.prenet(z, d) + d.unsqueeze(-1)
            prenet = _timed(lambda z=z: decoder.prenet(z, d), device)
            wave = _timed(lambda x=x: decoder.decoder(x), device)
            out[str(tokens)] = round(prenet / (prenet + wave), 4)
    return out


async def _start(scheduler: CodecScheduler) -> None:
    scheduler.start()


async def _open(scheduler: CodecScheduler) -> Any:
    return scheduler.open_stream()
