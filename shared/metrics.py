"""The Prometheus registry and every metric family the service exports.

Names keep the `veena3_tts_` prefix that existing dashboards know. Label values are bounded: voices
are the configured voice names (unknown ones are refused before counting; every custom voice counts as
"custom", every per-request reference as "reference"), formats and error codes are enums; never request ids,
voice-library ids or free text.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
# Process metrics (process_cpu_seconds_total, process_resident_memory_bytes, open fds, start time) and the Python
# version, as every Prometheus client exports them: memory growth and CPU use per container on the dashboard.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
PREFIX = "veena3_tts"

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
_INTERVAL_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
_RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0)
_AUDIO_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
_CHUNK_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

REQUESTS = Counter(
    f"{PREFIX}_requests", "Synthesis requests received.", ["speaker", "stream", "format"], registry=REGISTRY
)
COMPLETED = Counter(
    f"{PREFIX}_requests_completed",
    "Synthesis requests finished.",
    ["speaker", "stream", "status"],
    registry=REGISTRY,
)
FAILED = Counter(
    f"{PREFIX}_requests_failed",
    "Synthesis requests that failed.",
    ["speaker", "error_code", "status"],
    registry=REGISTRY,
)
TTFB = Histogram(
    f"{PREFIX}_ttfb_seconds",
    "Time to first audio byte.",
    ["stream"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# Every HTTP answer, refusals included, by route template (bounded: unknown paths are "unmatched") and status.
HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests",
    "HTTP responses by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    f"{PREFIX}_http_response_start_seconds",
    "Time from request to response headers, by route template.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RTF = Histogram(
    f"{PREFIX}_rtf", "Real-time factor (wall time / audio time).", buckets=_RTF_BUCKETS, registry=REGISTRY
)
AUDIO_SECONDS = Histogram(
    f"{PREFIX}_audio_duration_seconds",
    "Seconds of audio per request.",
    buckets=_AUDIO_BUCKETS,
    registry=REGISTRY,
)
CHUNKS_SENT = Histogram(
    f"{PREFIX}_chunks_sent", "Audio chunks sent per request.", buckets=_CHUNK_BUCKETS, registry=REGISTRY
)
CHUNK_INTERVAL = Histogram(
    f"{PREFIX}_chunk_interval_seconds",
    "Interval between consecutive audio chunks sent.",
    buckets=_INTERVAL_BUCKETS,
    registry=REGISTRY,
)
CHUNK_JITTER = Histogram(
    f"{PREFIX}_chunk_jitter_seconds",
    "|interval - previous interval| between chunks.",
    buckets=_INTERVAL_BUCKETS,
    registry=REGISTRY,
)
ACTIVE_STREAMS = Gauge(f"{PREFIX}_active_streams", "Requests currently producing audio.", registry=REGISTRY)
WS_IDLE = Gauge(
    f"{PREFIX}_ws_idle",
    "Streaming sockets (kind=socket) and open contexts (kind=context) that generate "
    "nothing now and hold no concurrency slot, per dialect.",
    ["dialect", "kind"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_stream_queue_depth", "Chunks waiting between generation and sending (sum).", registry=REGISTRY
)
QUEUE_FILL_RATIO = Gauge(
    f"{PREFIX}_stream_queue_fill_ratio", "Fullest stream queue as a fraction of its bound.", registry=REGISTRY
)
FRAMES_DROPPED = Counter(
    f"{PREFIX}_frames_dropped",
    "Audio frames or chunks dropped (should stay 0).",
    ["stage"],
    registry=REGISTRY,
)
PIPELINE_LOSSES = Counter(
    f"{PREFIX}_pipeline_losses",
    "Requests where a later stage saw less than an earlier one.",
    ["stage"],
    registry=REGISTRY,
)
TIMING_FAILURES = Counter(
    f"{PREFIX}_timing_failures",
    "Timestamp or caption computations that failed; the request went on (stage: align, track, captions).",
    ["stage"],
    registry=REGISTRY,
)
GUARD_TRIPS = Counter(
    f"{PREFIX}_guard_trips",
    "Generation guards that fired on a text chunk, by guard (length, loop, silence, empty, "
    "alignment) and action (retried, cut, failed, counted).",
    ["guard", "action"],
    registry=REGISTRY,
)
PARSER_IGNORED_TOKENS = Counter(
    f"{PREFIX}_parser_ignored_tokens",
    "Generated ids the token parser discarded (in clone mode: anything that is not a semantic id).",
    ["mode"],
    registry=REGISTRY,
)
FIRST_CHUNK_SCHEDULES = Counter(
    f"{PREFIX}_first_chunk_schedules",
    "First-chunk schedules admission gave streaming jobs, by schedule (balanced, "
    "lowest, exact) and reason (requested, unmeasured, engine_ahead, codec_light, llm_slow; switched to exact: "
    "codec_busy, refusing).",
    ["schedule", "reason"],
    registry=REGISTRY,
)
LLM_TOKENS = Counter(f"{PREFIX}_llm_tokens_generated", "Token ids produced by the LLM.", registry=REGISTRY)
MODEL_LOADED = Gauge(f"{PREFIX}_model_loaded", "1 when the speech models are loaded.", registry=REGISTRY)
SR_READY = Gauge(f"{PREFIX}_sr_ready", "1 when AP-BWE super-resolution is loaded.", registry=REGISTRY)
DEMO_MODEL = Gauge(
    f"{PREFIX}_demo_model", "1 when serving the random-weight demo checkpoint.", registry=REGISTRY
)
MODEL_LOAD_SECONDS = Gauge(
    f"{PREFIX}_model_load_seconds", "Seconds spent loading models at start-up.", registry=REGISTRY
)
# Idle sleep (TTS_IDLE_SLEEP_S; services/deployment/idle_sleep.py): 1 on the current state (awake, falling_asleep,
# asleep, waking), 0 on the others; a wake's duration (the first request after sleep waits this long); failed wakes.
IDLE_SLEEP_STATE = Gauge(
    f"{PREFIX}_idle_sleep_state", "1 on the device's idle-sleep state.", ["state"], registry=REGISTRY
)
IDLE_WAKE_SECONDS = Histogram(
    f"{PREFIX}_idle_wake_seconds",
    "Seconds a wake from idle sleep took (the extra latency of the first request after sleep).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0),
    registry=REGISTRY,
)
IDLE_WAKE_FAILURES = Counter(
    f"{PREFIX}_idle_wake_failures",
    "Wakes from idle sleep that failed (retried by the next request).",
    registry=REGISTRY,
)
# The codec's CUDA graphs (services/device/graphs.py): captured at start-up within TTS_CODEC_GRAPH_BUDGET_S; planned
# shapes not captured run eager (same audio, slower). state: planned, captured, failed.
CODEC_GRAPHS = Gauge(
    f"{PREFIX}_codec_graphs",
    "Codec CUDA graphs at start-up, by state (planned, captured, failed).",
    ["state"],
    registry=REGISTRY,
)
CODEC_CALLS = Counter(
    f"{PREFIX}_codec_calls",
    "Codec device calls on CUDA with graphs on, by path: graph (replayed), uncaptured (a "
    "planned shape left eager by the capture budget or a failed capture), eager (a shape outside the plan).",
    ["path"],
    registry=REGISTRY,
)
# The codec scheduler (services/device/telemetry.py): counted once per device call on the event loop; the gauges are
# read from the scheduler at scrape time. kind: decode (BiCodec) or sr (AP-BWE).
# services.device.calls.DEFAULT_BATCH_SIZES (shared/ cannot import services/; a test keeps them equal)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
_MISS_BUCKETS = (0.01, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
CODEC_SCHED_CALLS = Counter(
    f"{PREFIX}_codec_scheduler_calls",
    "Codec calls the scheduler ran, by kind and shape (bucketed: a length bucket; "
    "exact: the eager fallback or an SR stream's true end, one exact length).",
    ["kind", "shape"],
    registry=REGISTRY,
)
CODEC_SCHED_ROWS = Counter(
    f"{PREFIX}_codec_scheduler_rows",
    "Windows (rows) run in codec calls, by kind.",
    ["kind"],
    registry=REGISTRY,
)
CODEC_SCHED_PADDED_ROWS = Counter(
    f"{PREFIX}_codec_scheduler_padded_rows",
    "Empty rows added to reach a batch bucket (captured graphs need fixed shapes), by kind.",
    ["kind"],
    registry=REGISTRY,
)
CODEC_SCHED_BUSY = Counter(
    f"{PREFIX}_codec_scheduler_busy_seconds",
    "Seconds each codec call held the device, measured where it runs (the "
    "device thread; admission's measure: on a GPU shared with the engine it includes engine work the call queued "
    "behind), by kind.",
    ["kind"],
    registry=REGISTRY,
)
DEVICE_SECONDS = Counter(
    f"{PREFIX}_device_seconds",
    "Seconds the codec scheduler's calls (codec windows and the model calls beside them) held the device, by work "
    "class: live (a listener waits) or background (long-form jobs, in device time live streams do not need).",
    ["work_class"],
    registry=REGISTRY,
)
CODEC_SCHED_BATCH = Histogram(
    f"{PREFIX}_codec_scheduler_batch_rows",
    "Windows per codec call (before batch padding), by kind.",
    ["kind"],
    buckets=_BATCH_BUCKETS,
    registry=REGISTRY,
)
CODEC_SCHED_WAIT = Histogram(
    f"{PREFIX}_codec_scheduler_window_wait_seconds",
    "Seconds from a window's submission to the start of its call, by "
    "kind and phase (first: submitted before its stream's first audio, what a newcomer's first audio waits; steady: "
    "after).",
    ["kind", "phase"],
    buckets=_WAIT_BUCKETS,
    registry=REGISTRY,
)
CODEC_SCHED_MISSES = Counter(
    f"{PREFIX}_codec_scheduler_deadline_misses",
    "Windows of playing (real-time) streams whose call ended after the "
    "stream's audio ran out at real-time playback, by kind: an underrun unless the client's buffer covers it.",
    ["kind"],
    registry=REGISTRY,
)
CODEC_SCHED_LATENESS = Histogram(
    f"{PREFIX}_codec_scheduler_deadline_miss_seconds",
    "How late each missed window of a playing stream was; past "
    "the client's prebuffer (~0.1 s assumed) the listener hears a gap.",
    buckets=_MISS_BUCKETS,
    registry=REGISTRY,
)
CODEC_SCHED_MODEL_CALL_SECONDS = Histogram(
    f"{PREFIX}_codec_scheduler_model_call_seconds",
    "Seconds each model call run beside the codec windows held the "
    "device (measured where it runs, as a codec call's busy seconds; counted in the busy ratio and admission's codec "
    "cost), by kind: speaker (a voice's speaker vector), reference (a cloning reference's encode), align (CTC).",
    ["kind"],
    buckets=_WAIT_BUCKETS,
    registry=REGISTRY,
)
CODEC_SCHED_MODEL_CALL_WAIT = Histogram(
    f"{PREFIX}_codec_scheduler_model_call_wait_seconds",
    "Seconds from a model call's submission to its start (it "
    "waits in deadline order behind the windows due sooner), by kind.",
    ["kind"],
    buckets=_WAIT_BUCKETS,
    registry=REGISTRY,
)
CODEC_SCHED_BUSY_RATIO = Gauge(
    f"{PREFIX}_codec_scheduler_busy_ratio",
    "Share of the scheduler's last busy window (2 s) spent in codec calls and "
    "the model calls beside them, at scrape time (0..calls in flight at once).",
    registry=REGISTRY,
)
CODEC_SCHED_PENDING = Gauge(
    f"{PREFIX}_codec_scheduler_pending_windows", "Windows waiting for a codec call.", registry=REGISTRY
)
CODEC_SCHED_STREAMS = Gauge(
    f"{PREFIX}_codec_scheduler_open_streams", "Streams open in the codec scheduler.", registry=REGISTRY
)
CODEC_SCHED_MIN_SLACK = Gauge(
    f"{PREFIX}_codec_scheduler_min_slack_seconds",
    "Seconds until the most urgent playing stream's audio runs out (+Inf with none playing).",
    registry=REGISTRY,
)
ADMISSION_REFUSALS = Counter(
    f"{PREFIX}_admission_refusals",
    "New streams admission refused (503 SERVER_OVERLOADED), by rule (misses, spacing, ramp, "
    "llm_pace, codec_cost, codec_busy) and the asking key's class against its share (over_share, within_share).",
    ["rule", "key_class"],
    registry=REGISTRY,
)
ADMISSION_WAIT = Histogram(
    f"{PREFIX}_admission_wait_seconds",
    "How long each admitted stream waited for admission (0 for most: a stream "
    "waits only while the ramp alone refuses it, up to TTS_ADMISSION_MAX_WAIT_MS).",
    buckets=(0.001, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
ADMISSION_CODEC_SHARE = Gauge(
    f"{PREFIX}_admission_codec_share",
    "Admission's projected codec share of the device with one more stream "
    "(measured codec seconds per stream-second x (open streams + 1)); refuses above its cap. NaN: not measured yet.",
    registry=REGISTRY,
)
ADMISSION_LLM_PACE = Gauge(
    f"{PREFIX}_admission_llm_tokens_per_second",
    "Admission's measured LLM tokens per second per generating request "
    "(real time needs 50). NaN: not measured.",
    registry=REGISTRY,
)
REQUEST_LOG_QUEUE = Gauge(
    f"{PREFIX}_request_log_queue_depth", "Request-log records waiting to be written.", registry=REGISTRY
)
REQUEST_LOG_DROPPED = Counter(
    f"{PREFIX}_request_log_dropped",
    "Request-log records dropped (the queue was full, or the spool could not take them).",
    registry=REGISTRY,
)
REQUEST_LOG_SPOOL_RECORDS = Gauge(
    f"{PREFIX}_request_log_spool_records",
    "Request-log records on disk waiting for the database.",
    registry=REGISTRY,
)
REQUEST_LOG_SPOOL_OLDEST = Gauge(
    f"{PREFIX}_request_log_spool_oldest_seconds",
    "Age of the oldest spooled request-log record.",
    registry=REGISTRY,
)
REQUEST_LOG_SPOOL_BYTES = Gauge(
    f"{PREFIX}_request_log_spool_bytes", "Size of the request-log spool on disk.", registry=REGISTRY
)
REQUEST_LOG_WRITTEN = Counter(
    f"{PREFIX}_request_log_written", "Request-log records written.", ["sink"], registry=REGISTRY
)
REQUEST_LOG_ERRORS = Counter(
    f"{PREFIX}_request_log_write_errors", "Failed request-log batch writes.", ["sink"], registry=REGISTRY
)
RATE_LIMITED = Counter(
    f"{PREFIX}_rate_limit_rejections", "Requests refused by a limit.", ["limit"], registry=REGISTRY
)
RATE_LIMIT_BACKEND_UP = Gauge(
    f"{PREFIX}_rate_limit_shared_backend_up",
    "1 when the shared (Redis) limit backend answers; 0 = per-container.",
    registry=REGISTRY,
)
# The push path (services/deployment/metrics_push.py): failed pushes and deletes to the Pushgateway, by operation.
METRICS_PUSH_FAILURES = Counter(
    f"{PREFIX}_metrics_push_failures",
    "Pushes (push) and group deletes (delete) to the Pushgateway that failed.",
    ["operation"],
    registry=REGISTRY,
)
# Optional steps (continuity's tail, captions, on-complete hooks) that failed after the audio was made: the request
# still completes (services/pipeline/optional_steps.py); a rising count is a bug to look at, not an outage.
OPTIONAL_STEP_FAILURES = Counter(
    f"{PREFIX}_optional_step_failures",
    "Optional steps that failed while their request completed anyway.",
    ["step"],
    registry=REGISTRY,
)
CLIENT_DISCONNECTS = Counter(
    f"{PREFIX}_client_disconnects", "Clients that went away mid-stream.", registry=REGISTRY
)
STALLED_CLIENTS = Counter(
    f"{PREFIX}_stalled_clients_cut", "Readers cut off after stalling.", registry=REGISTRY
)
GPU_FAULTS = Counter(
    f"{PREFIX}_gpu_faults", "GPU faults that marked the container unhealthy.", ["kind"], registry=REGISTRY
)
# One count for every reference used, encoded or served from the cache alike: a per-outcome label (or an encoder-only
# timing) on a public /metrics would tell any key whether a recording had been sent before.
REFERENCE_REQUESTS = Counter(
    f"{PREFIX}_reference_requests",
    "Reference recordings used for cloning (encoded or cached, counted alike).",
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    f"{PREFIX}_stage_seconds",
    "Compute seconds per pipeline stage call.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)


# vLLM's own engine stats (core/llm/vllm_stats.py), per container.
ENGINE_KV_CACHE_USAGE = Gauge(
    f"{PREFIX}_engine_kv_cache_usage_ratio", "vLLM KV-cache blocks in use (0-1).", registry=REGISTRY
)
ENGINE_RUNNING = Gauge(
    f"{PREFIX}_engine_running_requests", "vLLM requests being generated.", registry=REGISTRY
)
ENGINE_WAITING = Gauge(
    f"{PREFIX}_engine_waiting_requests", "vLLM requests waiting to be scheduled.", registry=REGISTRY
)
ENGINE_PREFIX_CACHE_QUERIES = Counter(
    f"{PREFIX}_engine_prefix_cache_queries",
    "Prompt tokens looked up in vLLM's prefix cache.",
    registry=REGISTRY,
)
ENGINE_PREFIX_CACHE_HITS = Counter(
    f"{PREFIX}_engine_prefix_cache_hits", "Prompt tokens found in vLLM's prefix cache.", registry=REGISTRY
)
ENGINE_PREEMPTIONS = Counter(
    f"{PREFIX}_engine_preemptions",
    "vLLM requests preempted (KV cache full); with prefix "
    "caching on, counted as the scheduler takes them up again.",
    registry=REGISTRY,
)


def render_metrics() -> tuple[bytes, str]:
    """Prometheus text exposition of the registry and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
