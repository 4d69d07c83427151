"""The acceptance results as one Markdown page (what goes into docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _parity(step: dict[str, Any]) -> list[str]:
    lines = ["| check | max abs err | SNR dB | tolerance | ok |", "|---|---:|---:|---|---|"]
    for r in step["result"]["rows"]:
        ok = (
            "reported"
            if r.get("tolerance") == "reported"
            else {True: "yes", False: "**NO**", None: "not run"}[r.get("ok")]
        )
        lines.append(
            f"| {r['check']} | {_f(r.get('max_abs_err'), '.1e')} | {_f(r.get('snr_db'), '.1f')} | "
            f"{'' if r.get('tolerance') == 'reported' else r.get('tolerance', '')} | {ok}{(' (' + r['note'] + ')') if r.get('note') else ''} |"
        )
    return lines


def _throughput(step: dict[str, Any]) -> list[str]:
    result = step["result"]
    streams = result["streams"]
    lines = ["| stage | precision | real-time streams per device |", "|---|---|---:|"]
    for mode, value in streams["decode_16k"].items():
        lines.append(f"| BiCodec decode (16 kHz) | {mode} | {_f(value, '.1f')} |")
    for mode, value in streams["decode_sr_48k"].items():
        lines.append(f"| decode + AP-BWE (48 kHz) | {mode} | {_f(value, '.1f')} |")
    lines.append(
        f"| cloning encoder (x real-time, longest reference) | fp32 | {_f(streams['clone_encoder_x_realtime'], '.1f')} |"
    )
    aligner = result.get("aligner", {})
    lines.append(
        f"| ctc aligner | fp32 | {_f(streams.get('ctc_aligner_x_realtime'), '.1f')} |"
        + (f" ({aligner['note']})" if aligner.get("note") else "")
    )
    if aligner.get("ratio_to_decode") is not None:
        lines.append("")
        lines.append(
            f"ctc aligner cost: {aligner['ratio_to_decode']:.2f}x the {aligner['decoder']} BiCodec decode of "
            f"the same {aligner['audio_s']:.0f} s ({aligner['params_m']} M-parameter random Wav2Vec2ForCTC)."
        )
    lines += [
        "",
        "Batched decode and SR, per batch (call ms; x real-time for the batch):",
        "",
        "| stage | precision | batch | call ms | x real-time | max abs err vs fp32 | SNR dB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["codec"]["rows"]:
        lines.append(
            f"| {r['stage']} | {r['precision']} | {r['batch']} | {_f(r['ms'], '.1f')} | "
            f"{_f(r['x_realtime'], '.1f')} | {_f(r['max_abs_err'], '.1e')} | {_f(r['snr_db'], '.1f')} |"
        )
    return lines


def _concurrency(step: dict[str, Any]) -> list[str]:
    from bench.gpu.concurrency import table_lines

    return table_lines(step["result"])


def _llm(step: dict[str, Any]) -> list[str]:
    result = step["result"]
    lines = [
        f"Qwen2 ({result['config']} config, {result['params'] / 1e6:.0f} M params, {result['dtype']}), "
        "transformers eager with a KV cache:",
        "",
        "| batch | step ms p50 | step ms p90 | tokens/s per stream | tokens/s total | prefill ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "step_ms_p50" not in r:
            lines.append(f"| {r['batch']} | {r.get('note', '')} | | | | |")
            continue
        lines.append(
            f"| {r['batch']} | {r['step_ms_p50']:.2f} | {r['step_ms_p90']:.2f} | "
            f"{r['tokens_per_s_per_stream']:.0f} | {r['tokens_per_s_total']:.0f} | {r['prefill_ms']:.1f} |"
        )
    graph = result.get("graph_rows") or []
    if graph:
        lines += [
            "",
            "The same step over a static KV cache replayed as one CUDA graph (how vLLM runs a decode step; "
            "the service steps pace each level at 1000 / step ms, interpolated):",
            "",
            "| batch | step ms p50 | step ms p90 | tokens/s per stream | tokens/s total |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in graph:
            if "step_ms_p50" not in r:
                lines.append(f"| {r['batch']} | {r.get('note', '')} | | | |")
                continue
            lines.append(
                f"| {r['batch']} | {r['step_ms_p50']:.2f} | {r['step_ms_p90']:.2f} | "
                f"{r['tokens_per_s_per_stream']:.0f} | {r['tokens_per_s_total']:.0f} |"
            )
    parity = result["bf16_vs_fp32"]
    lines += [
        "",
        f"bf16 vs fp32 logits over {parity['steps']} steps: top-1 agreement "
        f"{parity['top1_agreement']:.2f}, max logit difference {parity['max_logit_diff']:.3f}.",
    ]
    return lines


def _service(step: dict[str, Any], scheduler: dict[str, Any] | None = None) -> list[str]:
    from bench.gpu.service_load import merge_shapes, shape_table

    result = step["result"]
    if "error" in result:
        return [f"not measured: {result['error']}"]
    if "plan" not in result:  # a result of the older kit (one rate for every level, no device time)
        return _service_v1(result)
    lines = [
        f"{result['sample_rate']} Hz, {result['codec']} codec, server ready in "
        f"{_f(result.get('server_ready_s'), '.0f')} s ({'CUDA graphs' if result.get('graphs') else 'eager'}). "
        "The LLM paced per level at 1000 / step_ms(N) of the `llm` step (source per level; below 50 tokens/s a "
        "stream cannot keep up whatever the service does):",
        "",
        "| streams | tokens/s per stream | step ms | source | expected s |",
        "|---:|---:|---:|---|---:|",
    ]
    for p in result["plan"]:
        lines.append(
            f"| {p['streams']} | {p['rate']:.0f}{' **below real time**' if p['below_realtime'] else ''} | "
            f"{_f(p['step_ms'], '.2f')} | {p['source']} | {_f(p.get('estimate_s'), '.0f')} |"
        )
    if result.get("skipped_levels"):
        lines += [
            "",
            f"Skipped (the step's time budget): {', '.join(map(str, result['skipped_levels']))} streams.",
        ]
    lines += [
        "",
        "| schedule | streams | clients (failed) | TTFA p50 ms | TTFA p95 ms | server TTFA p95 ms | "
        "underruns (0 / 100 ms) | ideal underruns | mean decode batch | mean SR batch | missed deadlines | "
        "codec busy s | host CPU s | refused by rule | in-service / isolated | wall s |",
        "|---|---:|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['schedule']} | {r['streams']} | {r['error']} |" + " |" * 13)
            continue
        table = shape_table(r.get("device_shapes", []), scheduler)
        ratio = "not measured" if table["weighted_ratio"] is None else f"{table['weighted_ratio']:.2f}x"
        lines.append(
            f"| {r['schedule']} | {r['streams']} | {r['clients']} ({r['failed']}) | {_ms(r['ttfa_p50_s'])} | "
            f"{_ms(r['ttfa_p95_s'])} | {_ms(r['server_ttfa_p95_s'])} | {_pair(r.get('underruns'))} | "
            f"{_pair(r.get('ideal_underruns'))} | {_f(r.get('mean_decode_batch'), '.1f')} | "
            f"{_f(r.get('mean_sr_batch'), '.1f')} | {r.get('missed_deadlines', '-')} | "
            f"{_f(r.get('busy_seconds'), '.2f')} | {_f(r.get('host_cpu_s'), '.2f')} | {_refused(r)} | {ratio} | "
            f"{_f(r.get('wall_s'), '.0f')} |"
        )
    lines += [
        "",
        "Each call shape's device time under load beside its isolated cost (the `scheduler` step's replay "
        "ms of that captured shape; eager ms for an eager call of a bucketed shape; exact-length calls have "
        "none), top shapes by device time at each level:",
        "",
        "| streams | kind | length | rows | mode | calls | in-service ms | device-thread ms | isolated ms | "
        "ratio |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    overall = []
    for level in sorted({r["streams"] for r in result["rows"] if "error" not in r}):
        shapes = merge_shapes(
            [r.get("device_shapes", []) for r in result["rows"] if r["streams"] == level and "error" not in r]
        )
        table = shape_table(shapes, scheduler, top=4)
        overall.append((level, table))
        for s in table["rows"]:
            lines.append(
                f"| {level} | {s['kind']} | {s['length'] if s['length'] is not None else 'exact'} | "
                f"{s['rows']} | {s['mode']} | {s['calls']} | {s['in_service_ms']:.2f} | "
                f"{s['thread_ms']:.2f} | {_f(s['isolated_ms'], '.2f') if s['isolated_ms'] else 'not measured'}"
                f" | {_f(s['ratio'], '.2f')} |"
            )
    clock = (
        "the device's own time (CUDA events)"
        if any(t["device_clock"] for _, t in overall)
        else "the device thread's time per call (no CUDA events here)"
    )
    lines += [
        "",
        f"In-service ms: {clock}; device-thread ms: packing, copy in, run, copy out and the sync. "
        "Work-weighted ratio per level (in-service seconds over calls x isolated seconds, on the shapes with an "
        "isolated cost; share of the device time covered): "
        + "; ".join(
            f"{level}: "
            + (
                "not measured"
                if t["weighted_ratio"] is None
                else f"{t['weighted_ratio']:.2f}x ({t['covered']:.0%})"
            )
            for level, t in overall
        )
        + ".",
    ]
    return lines


def _refused(row: dict[str, Any]) -> str:
    """Admission's refusals in a cell by rule ("-": not recorded, a kit older than the column or admission off)."""
    admission = row.get("admission")
    if not admission:
        return "-"
    return ", ".join(f"{rule} {n}" for rule, n in sorted(admission["refused"].items())) or "none"


def _pair(values: dict[str, Any] | None) -> str:
    return " / ".join(str(v) for v in (values or {}).values()) or "-"


def _service_v1(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Paced engine at {result['rate']:.0f} tokens/s per stream (one rate for every level; older kit)"
        + (
            " (below real time: streams cannot keep up whatever the service does)"
            if result["below_realtime"]
            else ""
        )
        + ".",
        "",
        "| schedule | streams | TTFA p50 ms | TTFA p95 ms | server TTFA p95 ms | underruns (0 / 100 ms) | "
        "ideal underruns | mean decode batch | mean SR batch | missed deadlines |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['schedule']} | {r['streams']} | {_ms(r['ttfa_p50_s'])} | {_ms(r['ttfa_p95_s'])} | "
            f"{_ms(r['server_ttfa_p95_s'])} | {_pair(r.get('underruns'))} | {_pair(r.get('ideal_underruns'))} | "
            f"{_f(r.get('mean_decode_batch', r.get('mean_batch')), '.1f')} | "
            f"{_f(r.get('mean_sr_batch'), '.1f')} | {r.get('missed_deadlines', '-')} |"
        )
    return lines


def capture_replay_ratios(graphs: list[dict[str, Any]]) -> str | None:
    """Each graph's replay timed at capture over the `scheduler` step's best of 3, in one phrase (None: not timed)."""
    ratios = sorted(
        g["capture_replay_ms"] / g["replay_ms"]
        for g in graphs
        if g.get("capture_replay_ms") and g.get("replay_ms")
    )
    if not ratios:
        return None
    return (
        f"median {ratios[len(ratios) // 2]:.2f}x, {ratios[0]:.2f}-{ratios[-1]:.2f}x over {len(ratios)} graphs"
    )


def _scheduler(step: dict[str, Any]) -> list[str]:
    result = step["result"]
    lines = [
        f"{result['streams']} streams at once through `CodecScheduler` + `ModelRunner` ({result['size']}; decode "
        f"{result['decode_precision']}, AP-BWE {result['sr_precision']}): padded, batched"
        f"{', graph-replayed' if result['graphs'] else ''} windows against the same streams unpadded and offline.",
        "",
    ] + _parity(step)
    summary = result["scheduler"]
    lines += ["", "Scheduler: " + ", ".join(f"{k} {v}" for k, v in summary.items()) + "."]
    if result["graphs"]:
        planned = result.get("graphs_planned")
        of = f" of {planned}" if planned else ""
        budget = (
            f" (capture budget {result['capture_budget_s']:g} s)" if result.get("capture_budget_s") else ""
        )
        lines += [
            "",
            f"CUDA graphs: {len(result['graphs'])}{of} captured in {result['capture_s']:.1f} s{budget}, "
            f"{result['pool_mib']:.0f} MiB of pool in all.",
            "",
            "| kind | length | rows | precision | capture s | pool MiB | held MiB | replay ms | replay ms at capture "
            "| eager ms |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for g in result["graphs"]:
            lines.append(
                f"| {g['kind']} | {g['length']} | {g['rows']} | {g['precision']} | {g['capture_s']:.2f} | "
                f"{g['pool_mib']:.1f} | {g['allocated_mib']:.1f} | {_f(g.get('replay_ms'), '.2f')} | "
                f"{_f(g.get('capture_replay_ms'), '.2f')} | {_f(g.get('eager_ms'), '.2f')} |"
            )
        timed = capture_replay_ratios(result["graphs"])
        if timed:
            lines += [
                "",
                f"Replay timed at capture (the own seconds `TTS_ADMISSION_PROFILE=own_seconds` reads) over the best "
                f"of 3 replays: {timed}.",
            ]
    lines += _sr_tf32(result)
    return lines


def _sr_tf32(result: dict[str, Any]) -> list[str]:
    """AP-BWE with TF32 graphs (TTS_CODEC_SR_PRECISION=tf32): the streams against offline fp32, and each graph's
    replay beside its fp32 twin's."""
    measured = result.get("sr_tf32")
    if not measured:
        return []
    row = measured["row"]
    lines = [
        "",
        f"AP-BWE with {measured['precision']} graphs (`TTS_CODEC_SR_PRECISION=tf32`; the default is fp16): the "
        f"same streams against the offline fp32 upsample, max |err| {row['max_abs_err']:.2e}, SNR "
        f"{'inf' if row['snr_db'] is None else row['snr_db']} dB ({row['tolerance']}: {'ok' if row['ok'] else 'BELOW'}).",
    ]
    fp32 = {(g["length"], g["rows"]): g for g in result["graphs"] if g["kind"] == "sr"}
    if measured["graphs"]:
        left = measured.get("planned", 0) - measured.get("captured", 0)
        note = (
            f" ({left} of {measured['planned']} shapes left to eager fp32 by the capture budget)"
            if left > 0
            else ""
        )
        lines += [
            "",
            f"Captured in {measured['capture_s']:.1f} s{note}. Replay ms per shape:",
            "",
            "| length | rows | fp32 replay ms | tf32 replay ms | tf32 / fp32 |",
            "|---:|---:|---:|---:|---:|",
        ]
        for g in measured["graphs"]:
            twin = fp32.get((g["length"], g["rows"]), {}).get("replay_ms")
            ratio = g["replay_ms"] / twin if twin and g.get("replay_ms") else None
            lines.append(
                f"| {g['length']} | {g['rows']} | {_f(twin, '.2f')} | {_f(g.get('replay_ms'), '.2f')} | "
                f"{_f(ratio, '.2f')} |"
            )
    return lines


def _with_scheduler(step: dict[str, Any], steps: dict[str, Any]) -> list[str]:
    return _service(step, steps["scheduler"]["result"] if "scheduler" in steps else None)


# A section's lines from its step and every step run (the service sections read the scheduler's).
Render = Callable[[dict[str, Any], dict[str, Any]], list[str]]


def _alone(render: Callable[[dict[str, Any]], list[str]]) -> Render:
    """A section that reads only its own step."""
    return lambda step, steps: render(step)


def _apbwe_variants(step: dict[str, Any], steps: dict[str, Any]) -> list[str]:
    from bench.gpu.apbwe_variants import report  # torch and the model, only where the step ran

    return report(step, steps)


SECTIONS: dict[str, tuple[str, Render]] = {
    "parity": ("Parity on the device", _alone(_parity)),
    "throughput": ("Throughput", _alone(_throughput)),
    "llm": ("The LLM step", _alone(_llm)),
    "concurrency": ("The engine and the codec at once, in both layouts", _alone(_concurrency)),
    "scheduler": ("The codec scheduler on the device", _alone(_scheduler)),
    "apbwe_variants": ("AP-BWE's precisions at the service's shapes", _apbwe_variants),
    "service": ("The service under load, 16 kHz", _with_scheduler),
    "service48": ("The service under load, 48 kHz (BiCodec + AP-BWE)", _with_scheduler),
    "service48-tf32": (
        "The service under load, 48 kHz, AP-BWE graphs in TF32 (`TTS_CODEC_SR_PRECISION=tf32`)",
        _with_scheduler,
    ),
}


def markdown(combined: dict[str, Any]) -> str:
    steps = combined["steps"]
    first = next(iter(steps.values()), None)
    device = first["machine"]["device"] if first else "-"
    lines = [f"# GPU acceptance ({device})", ""]
    if combined.get("cpu_notice"):
        lines += [f"**{combined['cpu_notice']}.**", ""]
    for name, (title, render) in SECTIONS.items():
        lines += [f"## {title}", ""]
        if name not in steps:
            lines += ["not run yet", ""]
            continue
        step = steps[name]
        lines += render(step, steps) + [
            "",
            f"({step['machine']['device']}, torch {step['machine']['torch']}, "
            f"{step['wall_s']:.0f} s{', quick' if step['quick'] else ''})",
            "",
        ]
    return "\n".join(lines)
