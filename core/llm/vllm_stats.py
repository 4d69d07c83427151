"""vLLM's own engine stats on the service's Prometheus registry: KV-cache use, running and waiting requests,
prefix-cache queries and hits, preemptions.

vLLM calls `record()` on its output-handler loop after every engine step with the scheduler's and the iteration's
stats (`vllm.v1.metrics.loggers.StatLoggerBase`; the stats classes are not a stable interface, so every field is
read with a default). Using vLLM's own Prometheus logger instead would register a second, global registry under
other names; this keeps one registry and one prefix for the dashboard.
"""

from __future__ import annotations

from typing import Any

from shared import metrics


def stat_logger_factory() -> Any:
    """A `StatLoggerFactory` for `AsyncLLM.from_engine_args(stat_loggers=[...])` (imports vLLM)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class ServiceStatLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
                   engine_idx: int = 0) -> None:
            if scheduler_stats is not None:
                metrics.ENGINE_KV_CACHE_USAGE.set(float(getattr(scheduler_stats, "kv_cache_usage", 0.0)))
                metrics.ENGINE_RUNNING.set(int(getattr(scheduler_stats, "num_running_reqs", 0)))
                metrics.ENGINE_WAITING.set(int(getattr(scheduler_stats, "num_waiting_reqs", 0)))
                prefix = getattr(scheduler_stats, "prefix_cache_stats", None)
                if prefix is not None:
                    metrics.ENGINE_PREFIX_CACHE_QUERIES.inc(max(0, int(getattr(prefix, "queries", 0))))
                    metrics.ENGINE_PREFIX_CACHE_HITS.inc(max(0, int(getattr(prefix, "hits", 0))))
            if iteration_stats is not None:
                metrics.ENGINE_PREEMPTIONS.inc(max(0, int(getattr(iteration_stats, "num_preempted_reqs", 0))))

        def log_engine_initialized(self) -> None:
            return None

    return ServiceStatLogger
