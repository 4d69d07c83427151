"""vLLM's own engine stats on the service's Prometheus registry: KV-cache use, running and waiting requests,
prefix-cache queries and hits, preemptions.

vLLM calls `record()` on its output-handler loop after every engine step with the scheduler's and the iteration's
stats (`vllm.v1.metrics.loggers`; the stats classes are not a stable interface, so every field is read with a
default). Using vLLM's own Prometheus logger instead would register a second, global registry under other names;
this keeps one registry and one prefix for the dashboard.

The logger is a `PrometheusStatLogger` subclass on purpose: vLLM 0.32 adds its own `PrometheusStatLogger` beside any
custom logger unless one of them is that class (`StatLoggerManager.__init__`), and `disable_log_stats` does not stop
it once a custom logger turns stats on. Its metrics went to prometheus_client's global registry, which /metrics never
serves, and it cost the API process 2-4 us of CPU per generated id (`bench/bench_vllm_output.py`: 20.4-22.4 us per
id with it, 18.3-18.7 without, 13.3-13.8 with engine stats off altogether; docs/benchmarks.md). `__init__` registers
nothing and every public method of the parent is overridden, so none of its state is ever read. The vLLM tier tests
0.32 (CPU) while the GPU image ships 0.33: a parent with a public method not overridden here (one vLLM might call and
that would read state never set, failing the output handler) gets the plain per-engine logger instead, and vLLM's
own logger beside it.

vLLM's stats come in two parts: the scheduler's, one object per engine step made in the engine core (KV use, running
and waiting requests, prefix-cache counts), and the iteration's, built in the API process by updating every running
request's stats with every id (vLLM's TTFT, inter-token and end-to-end histograms). The service reads one field of the
second, the preemption count, and the scheduler's prefix-cache stats carry the same event (`preempted_requests`: a
preempted request counted when it is scheduled again). So while prefix caching is on (the count is kept only then),
preemptions are read there and the output handler is told to skip the iteration's stats (`skip_request_stats`):
~2-3.5 us less API-process CPU per id at 16-48 streams, the metrics unchanged (bench/bench_vllm_output.py). Stats
altogether cost ~5 us per id: `TTS_VLLM_ENGINE_STATS=false` turns them off and these metrics with them.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any

from shared import metrics

log = logging.getLogger(__name__)

# PrometheusStatLogger's public methods in vLLM 0.32, each overridden below.
_OVERRIDDEN = frozenset(
    {
        "record",
        "log",
        "log_engine_initialized",
        "log_metrics_info",
        "record_sleep_state",
        "record_admission_rejection",
    }
)


# The first parameters of vLLM 0.32's `OutputProcessor.process_outputs`, which `skip_request_stats` relies on.
_PROCESS_OUTPUTS_PARAMS = ["self", "engine_core_outputs", "engine_core_timestamp", "iteration_stats"]


def scheduler_counts_preemptions(prefix_caching: bool) -> bool:
    """Whether this vLLM's scheduler stats count preemptions (prefix caching on, and its `PrefixCacheStats` has
    `preempted_requests`) and its output processor takes the iteration's stats where `skip_request_stats` passes
    none. Then the service reads preemptions there and needs nothing of the per-request stats."""
    if not prefix_caching:
        return False
    try:
        from vllm.v1.engine.output_processor import OutputProcessor
        from vllm.v1.metrics.stats import PrefixCacheStats
    except ImportError:
        return False
    params = list(inspect.signature(OutputProcessor.process_outputs).parameters)
    fields = (
        {f.name for f in dataclasses.fields(PrefixCacheStats)}
        if dataclasses.is_dataclass(PrefixCacheStats)
        else set()
    )
    if (
        params[: len(_PROCESS_OUTPUTS_PARAMS)] != _PROCESS_OUTPUTS_PARAMS
        or "preempted_requests" not in fields
    ):
        log.warning(
            "this vLLM's output processor or prefix-cache stats differ from 0.32's: its per-request stats stay "
            "on (~2-3 us of CPU per generated id) and preemptions are read from them"
        )
        return False
    return True


def skip_request_stats(async_llm: Any) -> bool:
    """Make the engine's output handler pass no iteration stats to its output processor, so vLLM stops updating every
    running request's stats with every id (nothing the service exports reads them once preemptions come from the
    scheduler: `scheduler_counts_preemptions`). The handler still hands our logger the scheduler's stats and an empty
    iteration object each step. Not done while vLLM traces requests (its tracing needs the iteration's stats)."""
    processor = async_llm.output_processor
    if getattr(processor, "tracing_enabled", False):
        return False
    process = processor.process_outputs

    def process_without_request_stats(
        engine_core_outputs: Any,
        engine_core_timestamp: Any = None,
        iteration_stats: Any = None,
        **kwargs: Any,
    ) -> Any:
        return process(engine_core_outputs, engine_core_timestamp, None, **kwargs)

    processor.process_outputs = process_without_request_stats
    return True


class _WritesServiceMetrics:
    """What both loggers do: the stats onto the service's registry, nothing at start-up."""

    preemptions_from_scheduler = False  # else from the iteration's stats

    def record(
        self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0
    ) -> None:
        if scheduler_stats is not None:
            metrics.ENGINE_KV_CACHE_USAGE.set(float(getattr(scheduler_stats, "kv_cache_usage", 0.0)))
            metrics.ENGINE_RUNNING.set(int(getattr(scheduler_stats, "num_running_reqs", 0)))
            metrics.ENGINE_WAITING.set(int(getattr(scheduler_stats, "num_waiting_reqs", 0)))
            prefix = getattr(scheduler_stats, "prefix_cache_stats", None)
            if prefix is not None:
                metrics.ENGINE_PREFIX_CACHE_QUERIES.inc(max(0, int(getattr(prefix, "queries", 0))))
                metrics.ENGINE_PREFIX_CACHE_HITS.inc(max(0, int(getattr(prefix, "hits", 0))))
                if self.preemptions_from_scheduler:
                    metrics.ENGINE_PREEMPTIONS.inc(max(0, int(getattr(prefix, "preempted_requests", 0))))
        if iteration_stats is not None and not self.preemptions_from_scheduler:
            metrics.ENGINE_PREEMPTIONS.inc(max(0, int(getattr(iteration_stats, "num_preempted_reqs", 0))))

    def log_engine_initialized(self) -> None:
        return None


def stat_logger_factory(*, preemptions_from_scheduler: bool = False) -> Any:
    """The stat logger class for `AsyncLLM.from_engine_args(stat_loggers=[...])` (imports vLLM): vLLM's one
    Prometheus logger when this vLLM's class has no public method beyond those overridden here, else a plain
    per-engine logger (vLLM's own is then added too). Preemptions are read from the scheduler's prefix-cache stats
    when asked (`scheduler_counts_preemptions()`), else from the iteration's."""
    logger = _service_logger()  # a new class per call: the attribute below is this engine's alone
    logger.preemptions_from_scheduler = preemptions_from_scheduler
    return logger


def _service_logger() -> Any:
    try:
        from vllm.v1.metrics.loggers import PrometheusStatLogger
    except ImportError:
        return _per_engine_logger()
    unknown = {
        name
        for name in dir(PrometheusStatLogger)
        if not name.startswith("_") and callable(getattr(PrometheusStatLogger, name))
    } - _OVERRIDDEN
    if unknown:
        log.warning(
            "vLLM's PrometheusStatLogger has methods this logger does not override (%s): vLLM's own "
            "Prometheus logger runs beside the service's",
            ", ".join(sorted(unknown)),
        )
        return _per_engine_logger()

    class ServiceStatLogger(_WritesServiceMetrics, PrometheusStatLogger):
        """Stands in for vLLM's Prometheus logger (one per AsyncLLM, all engines): writes our registry only."""

        def __init__(self, vllm_config: Any, engine_indexes: list[int] | None = None) -> None:
            self.engine_indexes = engine_indexes or [
                0
            ]  # no super(): it would register vLLM's metrics globally

        def log(self) -> None:
            return None

        def log_metrics_info(self, type: str, config_obj: Any) -> None:  # noqa: A002 (vLLM's parameter name)
            return None

        def record_sleep_state(self, sleep: int = 0, level: int = 0) -> None:
            return None

        def record_admission_rejection(self, reason: str) -> None:
            return None

    return ServiceStatLogger


def _per_engine_logger() -> Any:
    from vllm.v1.metrics.loggers import StatLoggerBase

    class ServiceStatLogger(_WritesServiceMetrics, StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

    return ServiceStatLogger
