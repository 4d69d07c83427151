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

    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="LLM backend: transformers (CPU/GPU, local default) or vllm."
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
    enable_prefix_caching: bool = Field(True, description="vLLM prefix caching (shared voice prompts).")
    enforce_eager: bool = Field(False, description="vLLM: disable CUDA graphs (forced on CPU).")
    vllm_engine_stats: bool = Field(
        True,
        description="vLLM's engine stats (KV-cache use, running/waiting requests, prefix-cache hits, preemptions "
        "on /metrics). With prefix caching on they cost the API process ~1 us of CPU per generated id (vLLM's "
        "per-request stats, which /metrics does not show, are skipped); without it ~4-5 us, ~0.2 ms per second of "
        "audio (docs/benchmarks.md, 'vLLM's output path'); false drops them and those metrics.",
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
        "engine leaves the device to the codec (core/llm/engine_pace.py). 0: off, vLLM steps every request. In the "
        "simulator on a GPU shared by time slices, 100 let admission hold 1.2-1.5x as many of each burst under "
        'TTS_ADMISSION_PROFILE=bursts, none dry in overload (docs/benchmarks.md, "Pacing the engine"). Not yet run '
        "on a GPU.",
    )
    llm_pace_rate: float = Field(
        2.0,
        ge=1.1,
        le=10.0,
        description="vLLM: the pace line's slope in times real time (with TTS_LLM_PACE_LEAD_IDS; a faster "
        "time stretch raises it in proportion). At 1.5 a few admitted streams ran dry in the simulator's overload "
        "runs; at 2 none did.",
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
    codec_sr_precision: Literal["fp32", "tf32"] = Field(
        "fp32",
        description="On CUDA: the AP-BWE graphs' precision. fp32 keeps streamed 48 kHz audio equal to the offline "
        "upsample within 1e-4; tf32 made AP-BWE calls ~1.8x cheaper on an H100 at 58 dB from fp32 (random weights; "
        "docs/benchmarks.md). BiCodec decode graphs are tf32 either way; the eager fallback is fp32.",
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
    admission_profile: Literal["served", "own_seconds", "settled", "bursts"] = Field(
        "served",
        description="Admission's settings and the codec seconds they read, chosen together. served: a codec call "
        "counts from dispatch to end (its wait behind the engine included). own_seconds: a call counts its own device "
        "time (each graph's replay timed at start-up), the codec's cap is 0.74 of the device, and a new stream gets "
        "the exact first chunk only while the device has refused one in the last 2 s: in the simulator a burst of 64 "
        "starts at first audio p95 173-270 ms instead of 400-550, but on a device shared by time slices it ran 48 kHz "
        "sustained overload dry, and on an H100 it let 40 of 64 arriving at once in with gaps at a 100 ms prebuffer. "
        "settled: own_seconds' caps over a call's run on the device (CUDA events: stretched where the engine's "
        "process slices the device), the codec's cost read on streams past their first second, and the exact first "
        "chunk also after the ramp held a caller: in the simulator 64 arriving within 2 s all start at p95 128-176 ms "
        "on a device that runs one call at a time and no admitted stream ran dry on any device model, but on a device "
        "shared by time slices, as a served GPU is, it holds less than served. bursts: settled with the limits "
        "set for the bursts a device carries once chunks are cut for a listener about to run dry "
        "(TTS_STREAM_CUT_RUNWAY_MS, which it needs): 64 within 2 s at p95 128-132 ms and 250 of 250 within 5 s at "
        "p95 765-794 ms on a device that runs one call at a time, one stream 2 ms dry in 315 overload runs on five "
        "device models; at 16 kHz its codec cap passes while the codec's queue drains leaving every listener 0.5 s, so "
        "on a device shared by time slices it holds 61-62 of those 64 and 1.05-1.20x what served holds in 16 kHz "
        "overload, and 0.74-0.87x at 48 kHz (docs/benchmarks.md).",
    )
    admission_codec_share: float | None = Field(
        None,
        gt=0,
        description="Admission's cap on the codec's share of the device: a new stream is refused when the codec's "
        "measured cost per stream-second times the open streams plus one would pass it (and spaced out near it). "
        "Unset: the profile's (served 1.2, own_seconds and settled 0.74). Lower it when admitted 48 kHz streams miss deadlines "
        "beside the engine (docs/operate/runbook.md).",
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


class SamplingSettings(_Group):
    """Sampling a request gets for the parameters it leaves out."""

    default_temperature: float = Field(0.8, description="Sampling temperature when a request omits it.")
    default_top_k: int = Field(50, description="top_k when a request omits it.")
    default_top_p: float = Field(1.0, description="top_p when a request omits it.")
    default_max_tokens: int = Field(4096, description="max_tokens when a request omits it.")
    default_repetition_penalty: float = Field(1.05, description="repetition_penalty when a request omits it.")
