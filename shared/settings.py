"""The service's settings, grouped by concern. Every setting reads one environment variable, `TTS_<NAME>`.

Code reads a setting through its group, `settings.llm.max_model_len`; its variable keeps the flat name,
TTS_MAX_MODEL_LEN, whatever group it sits in, so a name is unique across all groups. The constructor and
`model_copy(update=...)` take the flat names too (`Settings(max_text_chars=5)` sets `settings.limits.max_text_chars`)
and refuse a name that is no setting. A TTS_ variable that names no setting is reported at start-up
(`unknown_variables`, warned about by api.create_app) with the setting it most probably meant.

Longer than 500 lines because each setting carries its description here, where the settings table is generated
from (scripts/settings_table.py): one place to read what a knob does.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

APP_VERSION = "0.1.0"


class _Group(BaseModel):
    """One concern's settings. Unknown names are refused; `model_` names (model_dir) are ours, not pydantic's."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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
    admission_max_wait_ms: int = Field(
        250,
        ge=0,
        description="Longest a new stream waits for admission when only its ramp refuses it (at most 32 "
        "new streams, or half as many as the older ones, per second), instead of a 503; 0 refuses at once. Callers "
        "wait in arrival order, before any credit is reserved.",
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


class LimitsSettings(_Group):
    """Bounds on one request: its text, its audio and its time."""

    max_text_chars: int = Field(50_000, ge=1, description="Longest accepted text in characters.")
    max_normalized_chars: int = Field(
        120_000,
        ge=1,
        description="Longest text after normalisation (digits expand up to ~6x); longer requests get 413.",
    )
    max_text_chunks: int = Field(
        600,
        ge=1,
        description="Most text chunks one request may be split into; more get 413 (split the request).",
    )
    ssml_max_total_break_s: float = Field(
        60.0,
        ge=0,
        description="The most silence SSML <break> tags may add to one request, all breaks together "
        "(each is also at most 3 s); breaks beyond it are dropped.",
    )
    max_audio_s_per_char: float = Field(
        0.5,
        gt=0,
        description="The most speech one request may generate per character of its text (all its chunks "
        "so far, plus max_audio_slack_s); a generation that would pass it is cut there and charged for what it sent.",
    )
    max_audio_slack_s: float = Field(
        2.0, ge=0, description="Seconds of speech added to that limit once per request."
    )
    max_buffered_audio_mb: int = Field(
        64,
        ge=1,
        description="Largest non-streaming response in MiB; larger requests get 413 and are told to stream.",
    )
    http_head_timeout_s: float = Field(
        10.0,
        ge=0,
        description="With `--http api.http_protocol:HeadDeadline` (scripts/serve, the images): a request's "
        "line and headers must arrive within this many seconds of the connection opening or of the previous response, "
        "else the connection is closed (0: no deadline).",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request body must arrive in full within this many seconds (else 408)."
    )
    request_deadline_s: float = Field(
        3000.0,
        gt=0,
        description="Whole-request deadline (all text chunks); past it: 504 GENERATION_TIMEOUT, or a stream ends cleanly "
        "and is recorded. Below the Modal input timeout so the record is always written.",
    )
    generation_timeout_s: float = Field(
        120.0, gt=0, description="Per text-chunk generation deadline (504 after)."
    )


class TextSettings(_Group):
    """How a text is cut into chunks and joined again, and how its words are timed."""

    chunking_threshold_chars: int = Field(
        220, ge=20, description="Texts longer than this (normalised) are split."
    )
    chunk_target_chars: int = Field(170, ge=20, description="Target size of each text chunk.")
    stream_chunk_max_chars: int = Field(
        120,
        ge=20,
        description="WebSocket contexts: a text chunk (one LLM generation) holds at most this many "
        "characters (~8 s of speech; cut at sentence ends first, then clauses), since an engine such as vLLM "
        "generates a chunk to its end even while playback pacing holds the audio: an abandoned reply's generation "
        "runs at most TTS_STREAM_MAX_AHEAD_S plus one such chunk ahead of playback.",
    )
    crossfade_ms: float = Field(50.0, ge=0, le=500, description="Equal-power crossfade between text chunks.")
    align_method: Literal["estimate", "ctc"] = Field(
        "estimate",
        description="How word timestamps are found: estimate (pauses + expected word durations, no "
        "model, near free) or ctc (forced alignment with TTS_ALIGN_CTC_MODEL).",
    )
    align_ctc_model: str | None = Field(
        None,
        description="Wav2Vec2ForCTC checkpoint directory for the ctc method; per language as "
        "'en=DIR,zh=DIR,hi=DIR' (a plain DIR serves every language).",
    )


class StreamSettings(_Group):
    """Decoded chunk sizes, the first-audio schedule and delivery to the client."""

    stream_first_chunk_tokens: int = Field(
        25, ge=1, le=400, description="Semantic tokens in the first decoded chunk."
    )
    stream_max_chunk_tokens: int = Field(200, ge=1, le=1000, description="Largest later decoded chunk.")
    stream_chunk_growth: float = Field(
        1.5,
        ge=1.0,
        description="Each chunk is this many times the previous one (1.5 measured fewer underruns than 2).",
    )
    stream_left_context_tokens: int = Field(
        24, ge=0, le=200, description="Tokens of left context per chunk decode."
    )
    stream_lookahead_tokens: int = Field(
        24,
        ge=0,
        le=200,
        description="Tokens of look-ahead per chunk decode (24 keeps streamed audio within 1e-3 / 40 dB of offline).",
    )
    default_latency: Literal["lowest", "balanced", "exact"] = Field(
        "balanced",
        description="First-chunk schedule of a stream when the request names none: lowest (8 engine "
        "steps before audio), balanced (16), exact (49; streamed audio within 1e-3 of offline). See docs/benchmarks.md.",
    )
    stream_queue_chunks: int = Field(16, ge=1, description="Bounded queue between generation and the socket.")
    stream_max_ahead_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description="A streaming reply waits while its audio is this far ahead of what the client "
        "can have played (real time from its first audio), so an abandoned reply wastes at most about this much.",
    )
    send_stall_timeout_s: float = Field(30.0, gt=0, description="A reader stalled this long is cut off.")
    realtime_pacing: bool = Field(False, description="Pace sends at playback speed (plus a small lead).")
    frame_ms: int = Field(40, ge=10, le=200, description="Steady frame size of streamed audio.")


class WebSocketSettings(_Group):
    """WebSocket connections: caps per key and address, message budgets, timeouts."""

    ws_max_connections_per_key: int = Field(
        8,
        ge=0,
        description="WebSocket connections one API key may hold open on one server (0: no cap); more get 429.",
    )
    ws_max_connections_per_address: int = Field(
        0,
        ge=0,
        description="WebSocket connections one client address (TTS_TRUSTED_PROXIES decides which) may hold "
        "open on one server, keys or not (0: no cap); more are refused with 429.",
    )
    ws_max_unauthenticated_per_address: int = Field(
        32,
        ge=0,
        description="WebSocket connections one client address may hold on one server before their key is "
        "accepted (0: no cap); more are refused with 429.",
    )
    ws_auth_deadline_s: float = Field(
        10.0,
        gt=0,
        description="An ElevenLabs connection without a key in its headers or query must send it in its "
        "first message within this many seconds (whatever its inactivity_timeout), else it is closed 1008.",
    )
    ws_max_message_bytes: int = Field(
        1_000_000,
        ge=1,
        description="Largest WebSocket message (checked as characters in the app; scripts/serve and "
        "the images pass the same number to uvicorn's --ws-max-size as bytes); larger: error, then close 1009.",
    )
    ws_deflate: bool = Field(
        False,
        description="scripts/serve: let uvicorn accept WebSocket permessage-deflate (the images never do). "
        "Compressing base64 audio costs ~1 ms of the event loop per audio second for ~1/3 fewer bytes.",
    )
    ws_messages_per_s: float = Field(
        100.0,
        ge=0,
        description="Messages per second one WebSocket connection may send on average, beyond its "
        "burst (0: no limit); past it: RATE_LIMIT_EXCEEDED, then close 1008.",
    )
    ws_message_burst: int = Field(
        1000,
        ge=1,
        description="Messages a WebSocket connection may send at once before ws_messages_per_s applies "
        "(an LLM reply streamed word by word, one message per word, fits).",
    )
    ws_flood_penalty_s: float = Field(
        10.0,
        ge=0,
        description="After one of its WebSocket connections went over its message budget, an API key's new "
        "WebSocket connections on that server are refused (429, Retry-After) for this many seconds (0: never).",
    )
    ws_message_chars_per_s: float = Field(
        50_000.0,
        ge=0,
        description="Characters of messages per second one WebSocket connection may send beyond one "
        "largest message (0: no limit); past it: RATE_LIMIT_EXCEEDED, then close 1008.",
    )
    ws_idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="WebSocket: close a connection after this many seconds with no message either way "
        "while nothing is being synthesised.",
    )
    ws_supersede_after_s: float = Field(
        0.5,
        ge=0,
        description="ElevenLabs/Cartesia sockets: a context opening this long or longer after an earlier "
        "unfinished context's last message is a barge-in and stops that context (sooner: a reply queued on purpose).",
    )


class GuardSettings(_Group):
    """Generation guards (docs/operate/runbook.md section 10: thresholds, calibration)."""

    guard_mode: Literal["act", "count", "off"] = Field(
        "act",
        description="What a tripped guard does: act (retry the text chunk with a new seed, or cut a streamed "
        "chunk whose audio was sent), count (metrics and logs only), off (not run).",
    )
    guard_modes: dict[str, Literal["act", "count", "off"]] = Field(
        {},
        description='Per-guard overrides of guard_mode, e.g. {"alignment":"count"}; guards: length, loop, '
        "silence, empty, alignment.",
    )
    guard_max_tries: int = Field(
        3,
        ge=1,
        le=10,
        description="Generations one text chunk may take (the first and its retries) before the "
        "request fails with GENERATION_FAILED.",
    )
    guard_length_max_ratio: float = Field(
        3.0,
        gt=1,
        description="length: a chunk may generate at most this many times the semantic tokens its text "
        "is expected to need (per-script syllable estimate) plus the slack.",
    )
    guard_length_slack_s: float = Field(
        1.5, ge=0, description="length: seconds of speech added to that limit."
    )
    guard_length_min_ratio: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="length: an engine stop below this share of the expected tokens trips (text "
        "expected to take at least 2 s only).",
    )
    guard_loop_window: int = Field(
        250,
        ge=20,
        description="loop: semantic tokens (50 per second) over which repeated n-grams are counted.",
    )
    guard_loop_max_repeat_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="loop: trip when this share of the window's 4-grams repeat earlier ones.",
    )
    guard_silence_db: float = Field(
        -50.0, le=0, description="silence: 20 ms frames below this RMS level (dBFS) are silent."
    )
    guard_silence_max_s: float = Field(
        2.0,
        gt=0,
        description="silence: longest silent run (or one semantic id held) allowed, plus the longest "
        "pause the text asks for (an ellipsis 1 s, a sentence end 0.4 s).",
    )
    guard_align_min_score: float = Field(
        0.3,
        ge=0,
        le=1,
        description="alignment (with an aligner loaded): words scored below this are missing.",
    )
    guard_align_max_missing: float = Field(
        0.25,
        ge=0,
        le=1,
        description="alignment: trip when more than this share of a chunk's words is missing (or 3 "
        "in a row).",
    )
    guard_fade_ms: float = Field(
        20.0, ge=0, le=200, description="Fade-out at the point a streamed chunk is cut."
    )
    max_tokens_per_char: float = Field(
        6.0,
        gt=0,
        description="Runaway guard: a text chunk may generate at most this many tokens per character "
        "(+100); 50 tokens = 1 s of speech, so 6/char allows very slow speech.",
    )


class AccessSettings(_Group):
    """Who may use the service and how much: API keys, rate limits, load shedding."""

    auth_enabled: bool = Field(
        True, description="Require an API key. Off only for local development (logs a warning)."
    )
    api_keys: str = Field(
        "", description="Comma-separated plain keys for the static backend (hashed at load)."
    )
    api_keys_file: Path | None = Field(None, description="JSON file of static key records (sha256 hashes).")
    key_backend: Literal["static", "postgres", "supabase"] = Field(
        "static", description="Where API keys live."
    )
    key_cache_ttl_s: float = Field(30.0, ge=0, description="API-key lookup cache TTL (revocation latency).")
    key_stale_if_error_s: float = Field(
        30.0,
        ge=0,
        description="While the key store is unreachable, a cached key keeps working this long past its TTL; a key "
        "revoked meanwhile works at most TTL + this (60 s by default), then requests get 503.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDR ranges of reverse proxies (or *) whose X-Forwarded-For "
        "names the client; the failed-login throttles count per that client address. Empty: the TCP peer's address.",
    )
    auth_failures_per_minute: int = Field(
        20,
        ge=0,
        description="Failed authentications one client address may make per minute before it gets 429 without a "
        "key-store lookup (0: no limit).",
    )
    admin_key: str = Field("", description="Key for /v1/tts/debug/* (empty: debug routes disabled).")
    rate_limit_per_minute: int = Field(60, ge=1, description="Default per-key requests per minute.")
    max_concurrent_streams: int = Field(4, ge=1, description="Default per-key concurrent requests.")
    shed_first_audio_s: float = Field(
        0.0,
        ge=0,
        description="Load shedding: while the oldest admitted request of a process has waited longer than "
        "this for its first audio, new requests get 503 SERVER_OVERLOADED with Retry-After. 0: off (set it on "
        "deployments that can send clients elsewhere, e.g. 5).",
    )

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


class DatabaseSettings(_Group):
    """The shared stores that keys, the request log, voices and continuity use."""

    redis_url: str | None = Field(None, description="Redis URL for limits shared across containers.")
    database_url: str | None = Field(
        None, description="PostgreSQL DSN for the request log, keys and the voice library."
    )
    supabase_url: str | None = Field(
        None, description="Supabase project URL (request log sink / keys / voice library)."
    )
    supabase_key: str | None = Field(None, description="Supabase service key.")


class UsageSettings(_Group):
    """The request log and credits."""

    request_log_sink: Literal["none", "postgres", "supabase"] = Field(
        "none", description="Request log destination."
    )
    log_request_text: bool = Field(False, description="Store the request text in the request log.")
    request_log_spool_dir: Path | None = Field(
        Path("var/request-log-spool"),
        description="Durable request-log spool (SQLite, one file per process): a record is on disk as its request "
        "ends and leaves only when the database confirmed it. Empty: in-memory queue only (records can be lost).",
    )
    request_log_spool_stale_s: float | None = Field(
        None,
        gt=0,
        description="For a spool directory shared by machines (a Modal Volume, where file locks do not cross "
        "containers): each spool keeps a heartbeat and another's is adopted only when its heartbeat is older than "
        "this. Set to 60 on Modal; empty: the file lock alone decides (one machine).",
    )
    request_log_queue_size: int = Field(10_000, ge=1, description="Bounded request-log queue.")
    request_log_batch_size: int = Field(100, ge=1, description="Rows per insert.")
    request_log_flush_s: float = Field(
        1.0, gt=0, description="Longest wait before a partial batch is written."
    )
    credits_enabled: bool = Field(False, description="Charge characters/audio seconds to the key's balance.")
    credits_outage_allowance: int = Field(
        2000,
        ge=0,
        description="While the key store cannot take a debit, a metered key whose record is cached is "
        "still served up to min(its cached balance, this) credits per container; the spend is taken when the "
        "request's row is stored. Past it (or with 0): 503 SERVICE_UNAVAILABLE with Retry-After.",
    )
    credits_reserve_ahead: int = Field(
        256,
        ge=1,
        description="WebSocket text reserves credits in blocks of at least this many characters (one "
        "database write per block, not per text frame); what an utterance did not use is refunded when it settles.",
    )

    @field_validator("request_log_spool_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


class VoiceSettings(_Group):
    """Voices: built-in names, the voice library and reference cloning."""

    finetune_speakers: str = Field(
        "",
        description="Comma-separated speaker names of a fine-tune served without voices.json: each becomes a voice "
        'prompted as "{speaker}: {text}" (the fine-tuning recipe\'s format). Empty: one voice with no prefix.',
    )
    openai_voice_map: dict[str, str] = Field(
        {},
        description='JSON object overriding which voice an OpenAI voice name uses, e.g. {"alloy": "Asha"} or '
        '{"nova": "voice_3f2a..."} (a custom voice: used for the key that owns it; other keys get 404); names not '
        "given map to a voice of the same gender (docs/api/voices.md).",
    )
    voice_store: Literal["auto", "postgres", "supabase", "file", "none"] = Field(
        "auto",
        description="Where custom (cloned) voices live. auto: postgres when TTS_DATABASE_URL is set, else "
        "supabase when TTS_SUPABASE_URL and TTS_SUPABASE_KEY are, else file (one server only: files are not shared; "
        "on Modal, none). none: no saved voices (creating one answers 501); per-request cloning still works.",
    )
    voice_dir: Path = Field(
        Path("var/voices"), description="The file voice store's directory (one JSON file per voice)."
    )
    voice_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="Synthesis keeps a looked-up custom voice this long (never an absent one); a voice deleted "
        "on another container stops working within it. 0: look it up on every request.",
    )
    voice_library_max_per_key: int = Field(
        200,
        ge=0,
        description="Custom voices one API key may keep (0: no cap); creating or importing one more answers "
        "403 VOICE_LIMIT_REACHED before any encode.",
    )
    clone_max_encodes_per_key: int = Field(
        1,
        ge=1,
        description="Reference encodes one API key may have running or waiting at once per process; more get "
        "429 TOO_MANY_CONCURRENT_REQUESTS with Retry-After (a cached reference needs no encode).",
    )
    clone_max_waiting_encodes: int = Field(
        8,
        ge=0,
        description="Reference encodes that may wait for a free encoder per process; more get 503 "
        "SERVICE_UNAVAILABLE with Retry-After.",
    )
    clone_encode_wait_s: float = Field(
        30.0,
        gt=0,
        description="Longest an encode waits for a free encoder before 503 SERVICE_UNAVAILABLE with "
        "Retry-After.",
    )
    clone_encode_deadline_s: float = Field(
        60.0,
        gt=0,
        description="Longest one reference encode may take, waiting for the encoder included: past it "
        "503 SERVICE_UNAVAILABLE (still waiting) or 504 GENERATION_TIMEOUT (encoding), both with Retry-After; the "
        "encoder slot is given back at once.",
    )
    clone_max_concurrent_encodes: int = Field(
        2,
        ge=1,
        description="Reference encodes (voice creation, per-request cloning) running at once per process; "
        "more wait their turn.",
    )
    clone_reference_cache_size: int = Field(
        128,
        ge=0,
        description="Encoded references kept per process, by SHA-256 of the audio bytes (LRU), so a "
        "reference sent again is not encoded again; 0: no cache.",
    )


class ContinuitySettings(_Group):
    """Request stitching, and keeping the voice of an earlier request."""

    continuity_retention_s: float = Field(
        7200.0,
        ge=1,
        description="How long a finished synthesis is remembered (by its X-Server-Request-ID, per API "
        "key) for previous_request_ids and POST /v1/audio/voices from_request_id: its 32 global tokens, the tail of its "
        "semantic tokens and the text that tail speaks; never audio. Where the voice library uses PostgreSQL or "
        "Supabase this store is shared by every container; otherwise it is a per-process cache.",
    )
    continuity_prefix_s: float = Field(
        4.0,
        ge=3,
        le=6,
        description="Seconds of a previous request's speech (semantic tokens, 50 a second, and the "
        "words they speak) that a stitched request's prompt continues; also how much every request remembers.",
    )


class JobsSettings(_Group):
    """Long-form jobs (POST /v1/tts/jobs): documents rendered chapter by chapter in the device's idle time."""

    jobs_enabled: bool = Field(True, description="Serve the jobs routes and run this process's job worker.")
    jobs_dir: Path = Field(
        Path("var/jobs"),
        description="Where jobs keep their chapter files and books (one folder per job), and their state in "
        "jobs.sqlite3 when the service has no PostgreSQL (TTS_DATABASE_URL). On Modal: the jobs Volume.",
    )
    jobs_max_chars: int = Field(
        2_000_000, ge=1, description="Longest document one job takes, in characters of its chapters' text."
    )
    jobs_max_upload_mb: int = Field(50, ge=1, description="Largest document file a job accepts (EPUB, text).")
    jobs_max_concurrent: int = Field(
        1, ge=1, description="Jobs this process renders at once (each renders one chapter at a time)."
    )
    jobs_lease_s: float = Field(
        30.0,
        gt=0,
        description="A running job's lease, renewed while it runs: a process that dies leaves its job to another "
        "(or to itself after a restart) once this has passed.",
    )
    jobs_retention_s: float = Field(
        604_800.0,
        ge=0,
        description="How long a finished, failed or cancelled job (its row and files) is kept after it ended; "
        "the worker deletes older ones when idle. 0 keeps them.",
    )


class DeploymentSettings(_Group):
    """The server process: address, logs, start-up, what it exposes, metrics."""

    host: str = Field(
        "0.0.0.0",
        description="Address scripts/serve binds: 0.0.0.0, except 127.0.0.1 when it switches "
        "auth off itself (demo model, no keys) and TTS_HOST is unset.",
    )
    port: int = Field(8000, description="Port scripts/serve binds.")
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(True, description="Emit JSON log lines (false: plain text for a terminal).")
    warmup: bool = Field(True, description="Run one generation at start-up before reporting ready.")
    idle_sleep_s: float = Field(
        0.0,
        ge=0,
        description="After this many seconds without a request, free the device: vLLM sleeps (level 1, on a "
        "GPU: this turns its sleep mode on) and the codec models move off it; the next request wakes it and waits (its "
        "X-Wake-Ms header says how long). 0: never (docs/operate/idle-sleep.md).",
    )
    pin_voices_at_start: bool = Field(
        False,
        description="After warm-up, pin every voice without stored global tokens (seed 0, the same on every "
        "container), so style voices also skip the ~35 global-token steps before their first audio.",
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated browser origins allowed by CORS (e.g. https://app.example.com); empty: no CORS. "
        'See docs/api/index.md, "From a browser".',
    )
    docs_enabled: bool = Field(
        True, description="Serve /docs, /redoc and /openapi.json (off for public deployments)."
    )
    playground_enabled: bool = Field(
        True,
        description="Serve the web playground at /playground (and redirect / to it); false: both answer 404.",
    )
    metrics_require_admin: bool = Field(
        False,
        description="/metrics and /v1/tts/metrics need the admin key (public deployments; Prometheus sends it).",
    )
    metrics_push_url: str = Field(
        "",
        description="Prometheus Pushgateway URL (http(s)://[user:password@]host:port) this process pushes its "
        "whole registry to, grouped by job and instance, and deletes its group from at shutdown: fleet-correct "
        "metrics on Modal (RUNBOOK §5). Empty: no push (Prometheus scrapes /metrics).",
    )
    metrics_push_interval_s: float = Field(
        5.0,
        gt=0,
        description="Seconds between pushes; keep it at or below the gateway's scrape interval.",
    )
    metrics_push_job: str = Field(
        "veena3-tts",
        min_length=1,
        description="The `job` label of the pushed group (the alerts and dashboard filter on it).",
    )
    metrics_push_instance: str = Field(
        "",
        description="The `instance` label of the pushed group; empty: the Modal task id (MODAL_TASK_ID), else "
        "hostname-pid. Must differ between processes, or their pushes overwrite each other.",
    )
    metrics_push_linger_s: float = Field(
        5.0,
        ge=0,
        description="At shutdown, seconds the final push stays on the gateway before the group is "
        "deleted, so Prometheus scrapes the last requests' counts; keep it at or above the gateway's scrape interval.",
    )


class WyomingSettings(_Group):
    """The Wyoming server (Home Assistant's voice protocol, docs/guides/home-assistant.md)."""

    wyoming_enabled: bool = Field(
        False,
        description="Start the Wyoming TCP server with the service (also `python -m api.wyoming` on its own).",
    )
    wyoming_host: str = Field(
        "127.0.0.1",
        description="Address the Wyoming server binds. Anything but loopback needs TTS_WYOMING_API_KEY: the "
        "protocol has no authentication, so the server refuses to start on another address without a key.",
    )
    wyoming_port: int = Field(10200, ge=1, le=65535, description="Port the Wyoming server binds.")
    wyoming_api_key: str = Field(
        "",
        description="The API key every Wyoming request runs as (its credits, limits and rate apply; its "
        "requests are logged under it). Empty: requests run unkeyed, and only a loopback address may be bound.",
    )
    wyoming_sample_rate: Literal[16000, 24000] = Field(
        16000,
        description="Sample rate of the Wyoming audio (16-bit mono PCM): 16000 (the codec's own rate) or 24000.",
    )
    wyoming_zeroconf: bool = Field(
        False,
        description="Announce the Wyoming server over mDNS (`_wyoming._tcp.local.`) so Home Assistant discovers it "
        "on the same network segment; a failed announcement is logged and the server serves on.",
    )
    wyoming_max_connections: int = Field(
        64,
        ge=1,
        description="Wyoming connections the server holds at once (never more than a quarter of the process's "
        "open-file limit, so HTTP keeps its sockets); more get an error event and are closed at once.",
    )


class Settings(BaseSettings):
    """All configuration, one group per concern. The settings table in the docs is generated from the groups."""

    model_config = SettingsConfigDict(
        env_prefix="TTS_", env_file=None, extra="ignore", protected_namespaces=()
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    codec: CodecSettings = Field(default_factory=CodecSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    text: TextSettings = Field(default_factory=TextSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    websocket: WebSocketSettings = Field(default_factory=WebSocketSettings)
    guards: GuardSettings = Field(default_factory=GuardSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    databases: DatabaseSettings = Field(default_factory=DatabaseSettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    voices: VoiceSettings = Field(default_factory=VoiceSettings)
    continuity: ContinuitySettings = Field(default_factory=ContinuitySettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments first, then the flat TTS_<NAME> variables; the stock source would read one variable
        # per group (TTS_LLM as JSON), which is not how this service is configured.
        return init_settings, _FlatEnvironment(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _route_flat_names(cls, data: Any) -> Any:
        """Put each flat name (max_text_chars=5) into its group; a flat name wins over the same name in a group
        given whole, as a keyword argument wins over the environment."""
        if not isinstance(data, Mapping):
            return data
        routed: dict[str, Any] = {}
        flat: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            if key in GROUPS:
                routed[key] = value
            elif key in FIELD_GROUP:
                flat.setdefault(FIELD_GROUP[key], {})[key] = value
            else:
                raise TypeError(f"Settings() got {key!r}, which is no setting{_did_you_mean(key)}")
        for group, values in flat.items():
            given = routed.get(group, {})
            if isinstance(given, BaseModel):
                given = {name: getattr(given, name) for name in type(given).model_fields}
            routed[group] = {**given, **values}
        return routed

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied; it takes flat names (max_text_chars) like the constructor, and does not
        validate them (as pydantic's model_copy). Groups are copied too, so changing the copy leaves this one."""
        grouped: dict[str, dict[str, Any]] = {}
        whole: dict[str, Any] = {}
        for key, value in (update or {}).items():
            if key in GROUPS:
                whole[key] = value
            elif key in FIELD_GROUP:
                grouped.setdefault(FIELD_GROUP[key], {})[key] = value
            else:
                raise TypeError(f"model_copy got {key!r}, which is no setting{_did_you_mean(key)}")
        groups: dict[str, Any] = {}
        for group in GROUPS:
            base = whole.get(group, getattr(self, group))
            groups[group] = base.model_copy(update=grouped.get(group), deep=deep)
        return super().model_copy(update=groups, deep=deep)

    @property
    def resolved_voice_store(self) -> Literal["postgres", "supabase", "file", "none"]:
        if self.voices.voice_store != "auto":
            return self.voices.voice_store
        if self.databases.database_url:
            return "postgres"
        return "supabase" if self.databases.supabase_url and self.databases.supabase_key else "file"


# group name -> its model; flat setting name -> its group; flat setting name -> its field (default, description).
GROUPS: dict[str, type[_Group]] = {name: field.annotation for name, field in Settings.model_fields.items()}  # type: ignore[misc]
FIELD_GROUP: dict[str, str] = {name: group for group, model in GROUPS.items() for name in model.model_fields}
FIELDS: dict[str, FieldInfo] = {name: GROUPS[group].model_fields[name] for name, group in FIELD_GROUP.items()}


class _FlatEnvironment(PydanticBaseSettingsSource):
    """TTS_<NAME> for every setting of every group (case-insensitive, JSON for dict fields), as {group: {name: value}}."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._groups = {
            group: EnvSettingsSource(model, env_prefix="TTS_", case_sensitive=False)  # type: ignore[arg-type]
            for group, model in GROUPS.items()
        }

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads each group whole

    def __call__(self) -> dict[str, Any]:
        return {group: values for group, source in self._groups.items() if (values := source())}


# TTS_ variables the settings do not hold but the project reads elsewhere, so start-up does not report them.
# TTS_MODAL_* belong to the Modal deployment (services/deployment/modal_deployment.py, checked where `modal deploy`
# reads them); TTS_TEST_* to the test suite.
OTHER_PREFIXES = ("TTS_MODAL_", "TTS_TEST_")
OTHER_VARIABLES = frozenset(
    {
        "TTS_WEIGHTS_BASE_URL",
        "TTS_WEIGHTS_MANIFEST",  # core/weights.py
        "TTS_PG_PORT",
        "TTS_PG_USER",
        "TTS_PG_PASSWORD",
        "TTS_PG_DB",  # scripts/start_services
        "TTS_REDIS_PORT",
        "TTS_REDIS_DB",
        "TTS_SERVICES_DIR",
        "TTS_SKIP_VLLM",
        "TTS_SKIP_AGENTS",
        "TTS_TORCH_SPEC",  # scripts/test, scripts/_venv.sh
        "TTS_DOCKERFILE",
        "TTS_MODELS",
        "TTS_MONITORING_BIND",  # deploy/docker/compose.yaml
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(variable, the setting's variable it most probably meant, or None) for each TTS_ variable in `environ` that
    names no setting and nothing else the project reads."""
    found = []
    for key in sorted(environ):
        name = key.upper()
        if not name.startswith("TTS_") or name[4:].lower() in FIELD_GROUP or name in OTHER_VARIABLES:
            continue
        if name.startswith(OTHER_PREFIXES):
            continue
        close = closest_setting(name[4:].lower())
        found.append((key, f"TTS_{close.upper()}" if close else None))
    return found


def closest_setting(name: str) -> str | None:
    """The setting `name` most probably meant; None when none is close (a removed setting, another tool's)."""
    close = difflib.get_close_matches(name, sorted(FIELD_GROUP), n=1, cutoff=0.75)
    return close[0] if close else None


def _did_you_mean(name: str) -> str:
    close = closest_setting(name)
    return f" (did you mean {close!r}?)" if close else ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
