"""Stand-ins for benchmarks and tests: a device timed by a cost model, and an engine that misbehaves on purpose.

The product never imports this package: a stand-in reaches the service through `ModelRuntime`'s factories
(`engine_factory`, `codec_runner_factory`), which `runtime_factories` builds and `python -m bench.standin.serve`
injects into the normal app. The fault engine lives here rather than under tests/ because benches and tests both use
it, and bench/ must not depend on tests/.

- `cost_model.py`: what each device call costs (`CostModel`), the one device they queue on (`DeviceTimeline`) and
  the codec runner that waits instead of computing (`CostModelRunner`); `bench.sim.load` drives the real scheduler
  with it on a virtual clock.
- `cost_model_engine.py`: the LLM engine on the same device (`CostModelEngine`).
- `faulty_engine.py`: an engine wrapper that loops, goes silent, runs away or stops (`with_fault`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.deployment.runtime import ModelRuntime

logger = logging.getLogger("bench.standin")


def _refuse_real_weights(runtime: ModelRuntime) -> None:
    if not runtime.is_demo:
        raise RuntimeError(
            "the device stand-in is a benchmark tool: it runs only with the demo checkpoint "
            "(unset TTS_MODEL_DIR), never with real weights"
        )


class DeviceStandin:
    """The engine's steps and the codec's calls as waits of a cost model's length on ONE device timeline (a GPU
    serialises kernels), so the wiring (HTTP, parser, scheduler, encoders) is measured on a CPU as if a GPU did
    the model work. Ids are well formed, the audio is noise: demo checkpoint only."""

    def __init__(self, cost_model: Path | str) -> None:
        from bench.standin.cost_model import CostModel, DeviceTimeline

        self.model = CostModel.load(cost_model)
        self.device = DeviceTimeline()

    def codec_runner(self, runtime: ModelRuntime) -> Any:
        from bench.standin.cost_model import CostModelRunner

        _refuse_real_weights(runtime)
        # A call's seconds as the admission profile reads them, as the service's `ModelRunner` gives them.
        read = runtime.admission_profile.call_seconds_read
        return CostModelRunner(self.model, self.device, call_seconds_read=read)

    def engine(self, runtime: ModelRuntime) -> Any:
        from bench.standin.cost_model_engine import CostModelEngine

        _refuse_real_weights(runtime)
        logger.warning(
            "BENCHMARK: engine steps and codec calls are waits from the cost model %s", self.model.name
        )
        return CostModelEngine.from_tokenizer(
            runtime.tokenizer,
            runtime.layout,
            self.model,
            self.device,
            stream_interval=runtime.settings.llm.llm_stream_interval,
        )


def _product_engine(runtime: ModelRuntime) -> Any:
    from core.llm import create_engine

    assert runtime.checkpoint is not None
    return create_engine(runtime.settings.llm.engine, runtime.checkpoint.llm_dir, runtime.settings)


def runtime_factories(
    cost_model: Path | str | None = None, fault: str = ""
) -> dict[str, Callable[[Any], Any]]:
    """`ModelRuntime` keyword arguments: the device stand-in when `cost_model` names a cost model JSON
    (bench/cost_models/), the engine (the product's, or the stand-in's) wrapped by `fault` (`MODE[:K][:TRIES]`,
    see faulty_engine.py) when given. Empty: the product as it serves."""
    factories: dict[str, Callable[[Any], Any]] = {}
    build: Callable[[Any], Any] = _product_engine
    if cost_model:
        device = DeviceStandin(cost_model)
        factories["codec_runner_factory"] = device.codec_runner
        build = device.engine
    if fault:
        from bench.standin.faulty_engine import FaultSpec, with_fault

        FaultSpec.parse(fault)  # a bad spec fails here, before the server loads anything

        def build_faulty(runtime: ModelRuntime, inner: Callable[[Any], Any] = build) -> Any:
            return with_fault(inner(runtime), fault, runtime.layout, runtime.tokenizer)

        build = build_faulty
    if build is not _product_engine:
        factories["engine_factory"] = build
    return factories
