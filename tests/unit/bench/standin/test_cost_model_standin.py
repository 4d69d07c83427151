"""The device stand-in (a benchmark tool): well-formed Spark ids from batched steps on one shared device timeline,
codec calls of the right lengths on the same timeline (a real job's decodes among them), and refusal with a real
checkpoint. Virtual clock where timing matters: no wall timings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bench.sim.virtual_loop import run_virtual
from bench.standin import runtime_factories
from bench.standin.cost_model import CostModel, CostModelRunner, DeviceTimeline
from bench.standin.cost_model_engine import CostModelEngine
from core.llm import LLMEngine, SamplingConfig
from core.tokens import TokenParser, VocabLayout
from processing.prompt import build_prompt_ids
from services.device.calls import Call, SchedulerPolicy
from services.device.windows import DecodeWindow

MODEL = CostModel.from_dict(
    {
        "name": "t",
        "llm_step_ms": {"fixed": 3.0, "per_row": 0.5},
        "llm_prefill_ms": {"fixed": 1.0, "per_token": 0.0},
        "decode_ms": {"fixed": 2.0, "per_token": 0.01},
        "sr_ms": {"fixed": 2.0, "per_input_sample": 0.0},
        "host_ms": {"per_audio_second": 0.0},
    }
)


@pytest.fixture(scope="module")
def tokenizer(demo_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_model_dir / "LLM"))


def test_streams_are_well_formed_and_steps_are_batched_on_one_device(tokenizer, demo_model_dir: Path) -> None:
    from core.voices import VoiceRegistry

    layout = VocabLayout.from_tokenizer(tokenizer)
    voice = VoiceRegistry.from_file(demo_model_dir / "voices.json").resolve("fixed")
    prompt, mode = build_prompt_ids(tokenizer, "Hello there.", voice, global_tokens=voice.global_tokens)

    async def main() -> tuple[list[list[int]], float, dict[str, float]]:
        device = DeviceTimeline()
        engine = CostModelEngine.from_tokenizer(tokenizer, layout, MODEL, device)
        assert isinstance(engine, LLMEngine)
        runner = CostModelRunner(MODEL, device)

        async def collect(rid: str) -> list[int]:
            return [i async for d in engine.stream(prompt, SamplingConfig(), rid) for i in d]

        window = DecodeWindow(np.zeros(40, np.int32), None, 8, 32)
        codec = runner.run(Call("decode", (window,), 48, 1))
        *streams, audio = await asyncio.gather(collect("a"), collect("b"), codec)
        assert [a.size for a in audio] == [24 * 320]
        assert engine.active_requests() == set()
        return streams, asyncio.get_running_loop().time(), device.busy_seconds

    streams, elapsed, busy = run_virtual(main)
    for ids in streams:
        assert ids[-1] == layout.im_end_id
        parser = TokenParser(layout, mode=mode)
        parser.feed(ids)
        assert len(parser.finish().semantic) == round(3.5 * len(b"Hello there."))
    steps = len(streams[0])  # both requests step together: one step per id, two rows each
    assert busy["llm"] == pytest.approx(
        steps * MODEL.llm_step.seconds(2) + MODEL.llm_prefill.seconds(len(prompt) * 2)
    )
    assert busy["decode"] == pytest.approx(MODEL.decode.seconds(48))
    assert elapsed == pytest.approx(busy["llm"] + busy["decode"])  # one device: nothing overlaps


def test_deltas_come_in_stream_interval_groups_as_vllm_hands_them_out(
    tokenizer, demo_model_dir: Path
) -> None:
    """TTS_LLM_STREAM_INTERVAL ids per delta (the first id at once, the rest at the end), the same ids as one per
    delta: host figures measured against the stand-in parse, guard and queue deltas of the product's size."""
    from core.voices import VoiceRegistry

    layout = VocabLayout.from_tokenizer(tokenizer)
    voice = VoiceRegistry.from_file(demo_model_dir / "voices.json").resolve("fixed")
    prompt, _ = build_prompt_ids(
        tokenizer, "Hello there, how are you today?", voice, global_tokens=voice.global_tokens
    )

    def deltas(interval: int) -> list[list[int]]:
        async def main() -> list[list[int]]:
            engine = CostModelEngine.from_tokenizer(
                tokenizer, layout, MODEL, DeviceTimeline(), stream_interval=interval
            )
            return [d async for d in engine.stream(prompt, SamplingConfig(), "a")]

        return run_virtual(main)

    one, four = deltas(1), deltas(4)
    assert {len(d) for d in one} == {1}
    assert [i for d in four for i in d] == [i for d in one for i in d]
    sizes = [len(d) for d in four]
    assert sizes[0] == 1 and set(sizes[1:-1]) == {4} and 1 <= sizes[-1] <= 4
    assert len(sizes) == 1 + -(-(len(one) - 1) // 4)
    with pytest.raises(ValueError, match="stream_interval"):
        CostModelEngine.from_tokenizer(tokenizer, layout, MODEL, DeviceTimeline(), stream_interval=0)


def test_the_stand_in_is_refused_with_real_weights(tmp_path: Path) -> None:
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings

    runtime = ModelRuntime(Settings(warmup=False), **runtime_factories("bench/cost_models/h100-tf32.json"))
    runtime.checkpoint = type("Checkpoint", (), {"is_demo": False})()  # as loaded from a real model directory
    with pytest.raises(RuntimeError, match="benchmark tool"):
        asyncio.run(runtime.create_engine())


def test_the_factories_inject_what_was_asked_and_a_bad_fault_fails_first() -> None:
    assert runtime_factories() == {}
    assert set(runtime_factories(fault="loop:40:1")) == {"engine_factory"}
    assert set(runtime_factories("bench/cost_models/h100-tf32.json", "stop:0:0")) == {
        "engine_factory",
        "codec_runner_factory",
    }
    with pytest.raises(ValueError, match="MODE"):
        runtime_factories(fault="sulk")


def test_a_stand_in_server_sends_every_codec_call_through_the_scheduler_to_the_device(
    demo_model_dir: Path,
) -> None:
    """The runner swap is the whole stand-in on the codec side: the demo models stay as loaded (d-vectors and sizes
    come from them) and every decode of a real synthesis job is a wait on the shared device."""
    from core.bicodec import BiCodecDecoder
    from services.deployment.runtime import ModelRuntime
    from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest
    from tests.demo_runtime import demo_settings

    settings = demo_settings(demo_model_dir)

    async def main() -> tuple[bytes, dict[str, float]]:
        runtime = ModelRuntime(settings, **runtime_factories("bench/cost_models/h100-tf32.json"))
        await runtime.start()
        try:
            assert runtime.ready, runtime.error
            assert type(runtime.bicodec) is BiCodecDecoder
            assert runtime.codec_scheduler.runner is runtime.codec_runner
            assert isinstance(runtime.codec_runner, CostModelRunner)
            # The stand-in is a GPU: calls are shaped by the policy a GPU serves with, not this CPU's.
            assert runtime.codec_scheduler.policy == SchedulerPolicy()
            request = SynthesisRequest(
                request_id="standin",
                text="Hello there.",
                voice=runtime.voices.resolve(runtime.voices.default_voice_id),
                sampling=SamplingOptions.with_defaults(settings, max_tokens=200, seed=0),
                sample_rate=NATIVE_RATE,
                stream=True,
            )
            audio = await SynthesisJob.planned(runtime.pipeline_resources(), request).collect()
            return audio, dict(runtime.codec_runner.device.busy_seconds)
        finally:
            await runtime.shutdown()

    audio, busy = asyncio.run(main())
    assert len(audio) > 0
    assert busy["llm"] > 0 and busy["decode"] > 0


def test_the_device_keeps_its_own_schedule_when_a_caller_wakes_late() -> None:
    """Calls queue first come first served; a caller that resumes late (a busy event loop) and says its work was
    ready at its previous call's scheduled end does not push every later call back by its lateness."""

    async def main() -> tuple[list[float], list[float], float, float]:
        loop = asyncio.get_running_loop()
        device = DeviceTimeline()
        queued = await asyncio.gather(*(device.use("decode", 0.002) for _ in range(3)))  # all arrive at 0
        back_to_back = [await device.use("llm", 0.003, arrived=queued[-1])]
        await asyncio.sleep(0.010)  # this caller wakes 10 ms late: ready since back_to_back[0]
        now = loop.time()
        for _ in range(3):  # its steps run on the device's schedule, the ones already due at once
            back_to_back.append(await device.use("llm", 0.003, arrived=back_to_back[-1]))
        idle_start = loop.time()
        fresh = await device.use("decode", 0.002)  # nothing was waiting: starts now
        return queued, back_to_back, now, fresh - idle_start

    queued, steps, woke_at, fresh = run_virtual(main)
    assert queued == pytest.approx([0.002, 0.004, 0.006])
    assert steps == pytest.approx(
        [0.009, 0.012, 0.015, 0.018]
    )  # not 0.022, 0.025, 0.028 counted from the wake
    assert woke_at == pytest.approx(0.019)
    assert fresh == pytest.approx(0.002)


# Engine steps of 1 ms whatever their rows, and nothing else costing: the step loop's own order
STEP_MODEL = CostModel.from_dict(
    {
        "name": "t",
        "llm_step_ms": {"fixed": 1.0, "per_row": 0.0},
        "llm_prefill_ms": {"fixed": 0.0, "per_token": 0.0},
        "decode_ms": {"fixed": 1.0, "per_token": 0.0},
        "sr_ms": {"fixed": 1.0, "per_input_sample": 0.0},
    }
)


class _Row:
    """One generating request of `ids` ids, as the step loop sees it (its memory is freed when nothing holds it)."""

    __slots__ = ("prompt_tokens", "left")

    def __init__(self, ids: int) -> None:
        self.prompt_tokens, self.left = 10, ids

    def step(self) -> bool:
        self.left -= 1
        return self.left <= 0


def test_a_request_dropped_after_it_finished_never_drops_the_next_one_in_its_memory() -> None:
    """A stream drops its request when it ends, also after the request's last step. The loop once remembered dropped
    rows by `id()`: once the finished request was freed, the next request often took its address (CPython reuses
    it), was dropped before its first step and never generated; its context stalled until GENERATION_TIMEOUT (the
    agents tier's barge-in conversations, 2 in 3 runs on some trees; bench/bench_barge_in.py). Every new request
    must step to its end, whatever address it gets."""
    from bench.standin.cost_model import StepLoop

    async def main() -> list[int]:
        loop = StepLoop(STEP_MODEL, DeviceTimeline())
        loop.add(_Row(10**9))  # another conversation keeps the engine stepping
        finished = []
        for _ in range(
            50
        ):  # each turn: a request runs to its end, is dropped after, freed; the next one starts
            row = _Row(3)
            loop.add(row)
            deadline = loop.steps + 100
            while row.left > 0 and loop.steps < deadline:
                await asyncio.sleep(0.0005)
            finished.append(row.left)
            steps = loop.steps
            while loop.steps < steps + 2:  # a step later the loop holds it no more
                await asyncio.sleep(0.0005)
            loop.drop(row)  # the stream's `finally`, after its last id
            del row  # nothing else holds it: its memory is free for the next request
        await loop.aclose()
        return finished

    finished = run_virtual(main)
    assert finished == [0] * 50  # every request generated all its ids


def test_rows_past_the_engines_running_cap_wait_first_come_first_served() -> None:
    """vLLM runs at most `max_num_seqs` requests at once; the others wait in arrival order. The step loop keeps the
    same cap: a row added past it takes no step until a running one finishes, and waiting rows start in turn."""
    from bench.standin.cost_model import StepLoop

    rows = [_Row(3), _Row(5), _Row(2), _Row(2)]

    async def main() -> list[int]:
        loop = StepLoop(STEP_MODEL, DeviceTimeline(), max_running=2)
        running_at_most = []
        loop.on_step = lambda stepped: running_at_most.append(len(stepped))
        for row in rows:
            loop.add(row)
        while any(r.left > 0 for r in rows):
            await asyncio.sleep(0.0005)
        await loop.aclose()
        return running_at_most

    stepped = run_virtual(main)
    assert max(stepped) == 2
    # Steps 1-3: rows 0 and 1; row 0 ends, row 2 joins (steps 4-5) and ends with row 1; row 3 runs alone after.
    assert stepped == [2, 2, 2, 2, 2, 1, 1]
    with pytest.raises(ValueError, match="max_running"):
        StepLoop(STEP_MODEL, DeviceTimeline(), max_running=0)


@pytest.mark.parametrize("read", ["dispatch_to_end", "own", "run"])
def test_a_codec_call_behind_an_engine_step_reads_its_wait_only_from_dispatch(read: str) -> None:
    """Admission's codec measure: from dispatch to end counts the step it queued behind; `own` counts the call, and
    so does `run` (its start on the device to its end) on a device that runs one call at a time."""
    step_s = 0.004
    call = Call("decode", (DecodeWindow(np.zeros(40, np.int32), None, 8, 32),), 48, 1)

    async def main() -> float:
        device = DeviceTimeline()
        runner = CostModelRunner(MODEL, device, call_seconds_read=read)  # type: ignore[arg-type]
        step = asyncio.ensure_future(device.use("llm", step_s))
        await asyncio.sleep(0)  # the step holds the device first
        _, seconds = await runner.run_timed(call)
        await step
        return seconds

    own = MODEL.call_seconds(call)
    expected = own + step_s if read == "dispatch_to_end" else own
    assert run_virtual(main) == pytest.approx(expected)


@pytest.mark.parametrize("read", ["dispatch_to_end", "own", "run"])
def test_beside_the_engine_on_a_sliced_device_run_reads_the_stretch_and_own_does_not(read: str) -> None:
    """On a device the engine shares by time slices a codec call runs at half speed beside a step: `run` (what CUDA
    events read) and dispatch to end count the stretch, `own` counts the call alone."""
    from bench.sim.sliced_device import SlicedDeviceTimeline

    call = Call("decode", (DecodeWindow(np.zeros(40, np.int32), None, 8, 32),), 48, 1)
    own = MODEL.call_seconds(call)

    async def main() -> float:
        device = SlicedDeviceTimeline()
        runner = CostModelRunner(MODEL, device, call_seconds_read=read)  # type: ignore[arg-type]
        step = asyncio.ensure_future(device.use("llm", 10 * own))  # the engine busy for the whole call
        _, seconds = await runner.run_timed(call)
        await step
        return seconds

    assert run_virtual(main) == pytest.approx(own if read == "own" else 2 * own)


def test_a_scaled_model_changes_only_the_terms_it_names() -> None:
    """`CostModel.scaled` (bench/sim/burst_costs.py's what-ifs): a call of the scaled term costs the factor times as
    much, every other term as before, and the name says what changed."""
    call = Call("decode", (DecodeWindow(np.zeros(40, np.int32), None, 8, 32),), 48, 1)
    decode = MODEL.scaled(decode=0.5)
    assert decode.call_seconds(call) == pytest.approx(0.5 * MODEL.call_seconds(call))
    assert (decode.llm_step, decode.sr, decode.llm_prefill) == (MODEL.llm_step, MODEL.sr, MODEL.llm_prefill)
    assert decode.name == "t (decode x0.5)"
    engine = MODEL.scaled(llm_fixed=0.5)
    assert engine.step_seconds(4) == pytest.approx((1.5 + 0.5 * 4) / 1000)
    assert engine.decode == MODEL.decode and MODEL.scaled() == MODEL
    with pytest.raises(ValueError, match="positive"):
        MODEL.scaled(sr=0.0)
