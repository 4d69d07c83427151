"""The model and how it generates: checkpoint, LLM engine, codec, sampling defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from shared.settings.base import _Group


class ModelSettings(_Group):
    """Model files and the device they run on."""

    model_dir: Path | None = Field(
        None,
        description="Directory laid out like the released Spark-TTS-0.5B (config.yaml, LLM/, BiCodec/). "
        "Unset: the tiny random demo checkpoint is built and used (the audio is noise).",
    )
    sr_dir: Path | None = Field(
        None,
        description="AP-BWE 16->48 kHz directory (config.json + g_16kto48k). Unset: <model_dir>/16kto48k if present.",
    )
    sr_enabled: bool = Field(True, description="Load AP-BWE when its directory exists (48 kHz output).")
    demo_dir: Path = Field(
        Path("var/demo_model"), description="Where the demo checkpoint is built when model_dir is unset."
    )
    demo_seed: int = Field(0, description="Seed for the demo checkpoint's random weights.")
    model_version: str | None = Field(
        None,
        description="Version string reported in X-Model-Version; default derives from the model directory.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Torch device for BiCodec, AP-BWE and transformers."
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads (unset: 1 on CPU, where concurrent streams' decodes run in "
        "parallel threads and more oversubscribe the cores; torch's default on GPU).",
    )

    @field_validator("model_dir", "sr_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.demo_dir

    @property
    def resolved_sr_dir(self) -> Path:
        return self.sr_dir if self.sr_dir is not None else self.resolved_model_dir / "16kto48k"


class LLMSettings(_Group):
    """The LLM engine that generates speech tokens (vLLM or transformers)."""

    engine: Literal["transformers", "vllm", "onnx"] = Field(
        "transformers",
        description="LLM backend: transformers (CPU/GPU, local default), vllm, or onnx (the CPU engine: ONNX Runtime "
        "with weight-only int8/int4, the `cpu` extra; scripts/serve picks it for a real model on a machine without a "
        "GPU when it is installed).",
    )
    llm_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="LLM compute dtype; auto = bfloat16 on a GPU of compute capability 8.0 or more, float32 on "
        "older cards (T4, V100: no bfloat16; bfloat16 asked there becomes float32 too) and on CPU. float16 is refused "
        "(broken model).",
    )
    # KV cache for 256 streams: Qwen2-0.5B keeps 12 KiB per token (24 layers x K,V x 2 heads x 64 x 2 B), so 256
    # streams at a typical 1,500 tokens (prompt ~300-600 plus a text chunk's speech) need ~4.5 GiB; vLLM allocates
    # blocks as sequences grow (max_model_len bounds one sequence, not the reservation). 0.4 of an 80 GB H100 leaves
    # ~30 GiB of KV (2.5 M tokens, 256 x 4096 = 1 M fits whole); 0.4 of a 24 GB card ~7 GiB (~600 k tokens, ~2,300
    # per stream at 256), the rest for BiCodec, AP-BWE, their batched calls and the clone encoder.
    gpu_memory_utilization: float = Field(
        0.4,
        gt=0,
        le=1,
        description="vLLM share of GPU memory (weights + KV cache). 0.4 holds the 0.5B model and the KV cache of 256 "
        "streams (~1,500 tokens each on a 24 GB card, all of 256 x 4096 on an 80 GB one) and leaves the rest to "
        "BiCodec, AP-BWE and the clone encoder (RUNBOOK sizing).",
    )
    max_model_len: int = Field(4096, ge=256, description="vLLM max sequence length (prompt + generated).")
    max_num_seqs: int = Field(
        256,
        ge=1,
        description="vLLM max concurrent sequences: the streams one engine serves at once (admission "
        "refuses past the codec scheduler's headroom first).",
    )
    llm_stream_interval: int = Field(
        4,
        ge=1,
        le=64,
        description="Engine steps per token delta a stream receives (vLLM stream_interval; the "
        "transformers engine likewise): fewer, larger deltas to parse; the first and last go out at once.",
    )
    llm_engine_layout: Literal["inprocess", "process"] = Field(
        "inprocess",
        description="vLLM: where the engine core runs. inprocess: in the serving process (vLLM's LLMEngine with "
        "VLLM_ENABLE_V1_MULTIPROCESSING=0, stepped on a thread of its own), so the engine's steps and the codec's "
        "calls (on a CUDA stream of their own) are two streams of one CUDA context and overlap; its Python shares the "
        "serving process's GIL. process: a process of its own (vLLM's AsyncLLM), a second CUDA context the GPU "
        "time-slices with the codec's. In the simulator at the H200's measured costs (overlap estimated at 0.5) the one "
        "context carries every goal burst with TF32 AP-BWE, where two contexts ran the 48 kHz burst dry "
        "(docs/decisions/device-layout.md); admission reads the device the layout gives "
        "(services/device/device_layout.py).",
    )
    enable_prefix_caching: bool = Field(True, description="vLLM prefix caching (shared voice prompts).")
    enforce_eager: bool = Field(False, description="vLLM: disable CUDA graphs (forced on CPU).")
    vllm_engine_stats: bool = Field(
        True,
        description="vLLM's engine stats (KV-cache use, running/waiting requests, prefix-cache hits, preemptions "
        "on /metrics). vLLM's per-request stats, which /metrics does not show, are skipped; what remains costs the "
        "API process a few microseconds per generated id, more without prefix caching (docs/benchmarks.md, "
        "'vLLM's output path'); false drops them and those metrics.",
    )
    vllm_sleep_mode: bool = Field(
        False,
        description="vLLM sleep mode (GPU): lets sleep()/wake_up() free and restore memory around snapshots "
        "(on whenever TTS_IDLE_SLEEP_S is set).",
    )
    llm_priority_scheduling: bool = Field(
        True,
        description="vLLM: priority scheduling, so long-form jobs' requests queue behind live ones and are "
        "preempted first when the KV cache is short. Live requests alone keep first-come order; a preemption then "
        "takes the latest arrival, not the last scheduled. false: first come first served, jobs included.",
    )
    llm_pace_lead_ids: int = Field(
        0,
        ge=0,
        le=2000,
        description="vLLM: hold each live request whose audio is streamed out of the engine's steps while it is "
        "this many ids ahead of a line rising at TTS_LLM_PACE_RATE times real time from its first ids, so the "
        "engine leaves the device to the codec (core/llm/engine_pace.py): ids far ahead of playback are ids nobody "
        "needs yet. 0: off, vLLM steps every request. Not yet run on a GPU (docs/decisions/engine-pace.md).",
    )
    llm_pace_rate: float = Field(
        2.0,
        ge=1.1,
        le=10.0,
        description="vLLM: the pace line's slope in times real time (with TTS_LLM_PACE_LEAD_IDS; a faster "
        "time stretch raises it in proportion). It is the margin a held request keeps over real time, the same as "
        "admission's pace rule.",
    )
    llm_max_concurrency: int = Field(
        8,
        ge=1,
        description="transformers engine: requests generating at once (they take turns step by step).",
    )
    llm_grammar_head: bool = Field(
        True,
        description="transformers engine: compute logits only for the ids the Spark parser reads (semantic, "
        "global, acoustic values, markers: ~13k of 166k rows), ~27% fewer weights read per step. A model that keeps to "
        "the grammar (the released one, the demo) generates the same ids, greedy or seeded; other ids (text, which "
        "the parser skips) can no longer be generated.",
    )

    onnx_precision: Literal["int8", "int4", "fp32"] = Field(
        "int8",
        description="onnx engine: weight precision of its build (int8 ~1/4 of float32's bytes per step, int4 ~1/8). "
        "int8 is the default because it keeps to float32's next ids; int4 is faster but did not pass the quality bar "
        "(docs/decisions/cpu-engine.md; `python -m bench.cpu_quality --weights DIR` settles it for a checkpoint).",
    )
    onnx_cache_dir: Path | None = Field(
        None,
        description="onnx engine: where its builds are kept, one folder per precision with the digest of the "
        "checkpoint they were made from (a changed checkpoint rebuilds). Unset: beside the checkpoint, "
        "<model_dir>/LLM-onnx (the folder must be writable on the first start).",
    )
    onnx_threads: int | None = Field(
        None,
        ge=1,
        description="onnx engine: threads of one decode step (unset: ONNX Runtime's choice, the physical cores). A "
        "step reads every weight once, so more threads help until memory bandwidth is spent.",
    )
    onnx_spinning: bool = Field(
        False,
        description="onnx engine: let idle step threads spin for the next op instead of sleeping: a little faster "
        "alone, but the spinning takes the cores the codec needs beside it.",
    )

    onnx_head_dtype: Literal["float16", "float32"] = Field(
        "float16",
        description="onnx engine: the precision of the language-model head's weights (its product runs in torch "
        "beside the ONNX decoder). float16 halves the ~48 MB a step reads for it (an eighth of an int8 step's bytes) "
        "and keeps the engine within the quality bar (docs/decisions/cpu-engine.md); float32 reads the checkpoint's. "
        "An fp32 build's head is float32 whatever this says.",
    )

    @field_validator("onnx_cache_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


class CodecSettings(_Group):
    """The codec scheduler (BiCodec and AP-BWE on the device) and admission, which refuses what it cannot carry."""

    codec_cpu_calls: int | None = Field(
        None,
        ge=1,
        description="On a CPU: codec scheduler calls (BiCodec/AP-BWE batches) run at once; unset: the core "
        "count. A GPU runs one at a time.",
    )
    codec_cuda_graphs: bool = Field(
        True,
        description="On CUDA: capture one graph per codec call shape (length and batch buckets) at start-up and "
        "replay them while serving; false runs every call eager (slower, the same audio).",
    )
    codec_sr_precision: Literal["fp32", "tf32", "fp16"] = Field(
        "fp16",
        description="On CUDA: AP-BWE's precision. fp16: the generator's pointwise layers on fp16 tensor cores, the "
        "resampler, STFT, input convolutions, norms and heads fp32 (rounding those moves the output wholesale), in "
        "graphs and eager calls alike, so streamed audio equals the offline upsample at that precision; a precision "
        "is the default only while it keeps >= 50 dB from fp32 (docs/decisions/apbwe-precision.md). tf32: TF32 in the "
        "graphs only (a process switch; eager calls run fp32). fp32: the reference. BiCodec decode graphs are tf32 "
        "either way. On a CPU AP-BWE runs fp32.",
    )
    codec_sr_fused: bool = Field(
        False,
        description="On CUDA: compile AP-BWE's generator with TorchInductor (its elementwise chain fused, one "
        "compile for every shape) for graphs and eager calls alike. Off until the GPU kit's `apbwe_variants` step "
        "has timed it: the compile adds to start-up.",
    )
    codec_graph_budget_s: float = Field(
        60.0,
        ge=0,
        description="On CUDA: wall seconds start-up may spend capturing codec graphs, the most used shapes "
        "(fewest rows) first; shapes left over run eager, slower with the same audio (0: no limit).",
    )
    admission: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Refuse new streams (503 SERVER_OVERLOADED with Retry-After) when the codec scheduler's "
        "measured headroom says an admitted stream would lose real time. auto: on with a GPU or a device cost model, "
        "off on a CPU, where the demo model is not real time anyway and refusals would only get in the way.",
    )
    admission_profile: Literal["served", "own_seconds", "settled", "bursts", "one_context"] = Field(
        "served",
        description="Admission's settings and the codec seconds they read, chosen together. served: a codec call "
        "counts from dispatch to end (its wait behind the engine included), which holds on every device model. "
        "own_seconds: a call counts its own device time (each graph's replay timed at start-up), the codec's cap is "
        "0.74 of the device, and a new stream gets the exact first chunk only while the device has refused one in "
        "the last 2 s: a burst the device carries keeps the short first chunk, but own seconds miss the stretch of a "
        "device shared by time slices. settled: own_seconds' caps over a call's run on the device (CUDA events), "
        "the codec's cost read on streams past their first second, and the exact first chunk also after the ramp "
        "held a caller: suited to a device that runs one call at a time. bursts: settled with the limits set for "
        "the bursts a device carries once chunks are cut for a listener about to run dry (TTS_STREAM_CUT_RUNWAY_MS, "
        "which it needs); at 16 kHz its codec cap passes while the codec's queue drains leaving every listener "
        "0.5 s. one_context: bursts with the codec's cap scaled by one CUDA context's gain where its two streams "
        "overlap (1.2), and the exact first chunk past 64 open streams while 48 kHz streams are live; it meets the "
        "16 kHz goal bursts on that device but, like bursts, lets streams run dry in sustained 48 kHz overload there. "
        "The runs behind each: "
        "docs/decisions/admission-profiles.md.",
    )
    admission_codec_share: float | None = Field(
        None,
        gt=0,
        description="Admission's cap on the codec's share of the device: a new stream is refused when the codec's "
        "measured cost per stream-second times the open streams plus one would pass it (and spaced out near it). "
        "Unset: the profile's (served 1.2, own_seconds and settled 0.74). Lower it when admitted 48 kHz streams miss deadlines "
        "beside the engine (docs/operate/runbook.md).",
    )
    admission_carried: str = Field(
        "auto",
        description="The live streams the GPU is known to carry at once: a newcomer below them (16 kHz and 48 kHz "
        "streams weighed apart, arriving no faster than the figure did) is admitted without waiting for the measures, "
        "which lag a burst's first seconds; a missed deadline still refuses. auto: the figure stated for this GPU on "
        "this engine layout (H200, in-process engine core: 250 at 16 kHz, 200 at 48 kHz, within 5 s), none for any "
        "other; off: none; or 'PLAIN,SUPER_RESOLVED,WITHIN_S' (e.g. 250,200,5) from your own GPU's kit run "
        "(docs/decisions/carried-streams.md).",
    )
    admission_max_wait_ms: int = Field(
        250,
        ge=0,
        description="Longest a new stream waits for admission when only its ramp refuses it (at most 32 "
        "new streams, or half as many as the older ones, per second), instead of a 503; 0 refuses at once. Callers "
        "wait in arrival order, before any credit is reserved.",
    )
    admission_continue_ms: int = Field(
        2000,
        ge=0,
        description="A key's new stream within this long after one of its streams closed, or after that stream's "
        "audio has played out, continues it: admitted without admission's rules, once per closed stream, so the next "
        "sentence of a reply sent one HTTP request per sentence is never refused mid-reply; 0: every stream asks.",
    )
    background_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Most of the device (share of the last 2 s) long-form jobs' codec calls take while live streams "
        "are open; with none open they take all of it. Jobs are also paused while a live stream missed a deadline "
        "or holds less than TTS_BACKGROUND_MIN_SLACK_MS of audio.",
    )
    background_min_slack_ms: int = Field(
        500,
        ge=0,
        description="A long-form job's codec call starts only while every playing live stream holds at least this "
        "much audio (its next window is not due soon).",
    )

    @field_validator("admission_carried")
    @classmethod
    def _carried_named(cls, value: str) -> str:
        if value not in ("auto", "off"):
            parse_carried(value)  # raises ValueError with the reason
        return value


def parse_carried(value: str) -> tuple[int, int, float]:
    """TTS_ADMISSION_CARRIED's explicit form 'PLAIN,SUPER_RESOLVED,WITHIN_S': two positive counts and seconds."""
    parts = value.split(",")
    try:
        plain, resolved, within = int(parts[0]), int(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        raise ValueError(
            f"auto, off or PLAIN,SUPER_RESOLVED,WITHIN_S (e.g. 250,200,5), got {value!r}"
        ) from None
    if len(parts) != 3 or plain < 1 or resolved < 1 or not within > 0:
        raise ValueError(f"two positive stream counts and positive seconds, got {value!r}")
    return plain, resolved, within


class SamplingSettings(_Group):
    """Sampling a request gets for the parameters it leaves out."""

    default_temperature: float = Field(0.8, description="Sampling temperature when a request omits it.")
    default_top_k: int = Field(50, description="top_k when a request omits it.")
    default_top_p: float = Field(1.0, description="top_p when a request omits it.")
    default_max_tokens: int = Field(4096, description="max_tokens when a request omits it.")
    default_repetition_penalty: float = Field(1.05, description="repetition_penalty when a request omits it.")
