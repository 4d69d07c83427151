"""`CostModelEngine`: a BENCHMARK stand-in for the LLM engine, timed by a device cost model. Never serves speech.

It implements `core.llm.base.LLMEngine`: every active request advances one id per engine step, steps are batched
across all active requests and each costs `llm_step(rows)` (+ the prefill of newcomers) on the SAME
`DeviceTimeline` the codec's `CostModelRunner` uses, like one GPU. The ids are well formed for the Spark parser:
a speaker-prefix prompt gets `<|start_global_token|>` (unless the prompt ends in it), 32 global ids,
`<|end_global_token|>`, `<|start_semantic_token|>`; a prompt already holding `<|end_global_token|>` (a stored voice,
a clone) gets `<|start_semantic_token|>` unless it holds it; then semantic ids (`tokens_per_char` x the text
between the content markers) and `<|im_end|>`. Random values, so the audio is noise, as with the demo checkpoint
it is only allowed with (services/deployment/runtime.py refuses it otherwise).

A stream receives its ids as vLLM hands them out with `stream_interval` (TTS_LLM_STREAM_INTERVAL): the first id at
once, then a delta each time `stream_interval` ids have been made since the last one, and the rest at the end. The
API path's CPU per delta is part of what host figures measured against this stand-in count, so its deltas must be
the size the product's engine gives.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np

from bench.standin.cost_model import CostModel, DeviceTimeline, StepLoop, delta_due
from core.llm import SamplingConfig
from core.tokens import NUM_GLOBAL_TOKENS, Marker, VocabLayout

START_CONTENT = "<|start_content|>"
END_CONTENT = "<|end_content|>"


class _Request:
    __slots__ = ("prompt_tokens", "ids", "sent", "made", "event", "interval")

    def __init__(self, prompt_tokens: int, ids: list[int], interval: int = 1) -> None:
        self.prompt_tokens = prompt_tokens
        self.ids = ids
        self.made = 0
        self.sent = 0
        self.interval = interval
        self.event = asyncio.Event()

    def step(self) -> bool:
        self.made += 1
        if delta_due(self.made, self.sent, len(self.ids), self.interval):
            self.event.set()
        return self.made >= len(self.ids)


class CostModelEngine:
    """See the module doc. `device`: share it with the codec's `CostModelRunner`."""

    name = "cost-model"
    supports_sleep = False

    def __init__(
        self,
        layout: VocabLayout,
        content_ids: tuple[int, int],
        model: CostModel,
        device: DeviceTimeline,
        *,
        tokens_per_char: float = 3.5,
        seed: int = 0,
        stream_interval: int = 1,
    ) -> None:
        if stream_interval < 1:
            raise ValueError("stream_interval must be >= 1")
        self.layout = layout
        self.stream_interval = stream_interval
        self.model = model
        self.device = device
        self.tokens_per_char = tokens_per_char
        self.seed = seed
        self._start_content, self._end_content = content_ids
        self._steps = StepLoop(model, device)
        self._active: dict[str, _Request] = {}
        self._closed = False

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, layout: VocabLayout, model: CostModel, device: DeviceTimeline, **kw: Any
    ) -> CostModelEngine:
        ids = tokenizer.convert_tokens_to_ids([START_CONTENT, END_CONTENT])
        if any(i is None or i < 0 for i in ids):
            raise ValueError(f"tokenizer lacks {START_CONTENT} / {END_CONTENT}")
        return cls(layout, (int(ids[0]), int(ids[1])), model, device, **kw)

    def plan(self, prompt: Sequence[int], sampling: SamplingConfig, request_id: str) -> list[int]:
        lay = self.layout
        seed = self.seed if sampling.seed is None else sampling.seed
        rng = np.random.default_rng([seed, zlib.crc32(request_id.encode())])
        start_semantic = lay.marker_id(Marker.START_SEMANTIC)
        end_global = lay.marker_id(Marker.END_GLOBAL)
        head: list[int] = []
        if end_global not in prompt:
            if not prompt or prompt[-1] != lay.marker_id(Marker.START_GLOBAL):
                head.append(lay.marker_id(Marker.START_GLOBAL))
            head.extend(lay.global_id(int(v)) for v in rng.integers(0, 4096, NUM_GLOBAL_TOKENS))
            head.append(end_global)
        if start_semantic not in prompt:
            head.append(start_semantic)
        ids = list(prompt)
        try:
            a = ids.index(self._start_content)
            text = ids.index(self._end_content, a + 1) - a - 1
        except ValueError:
            text = 0
        room = sampling.max_tokens - len(head) - 1
        count = max(0, min(max(1, round(self.tokens_per_char * text)), room))
        out = [*head, *(lay.semantic_id(int(v)) for v in rng.integers(0, 8192, count))]
        if len(out) < sampling.max_tokens:
            out.append(lay.im_end_id)
        return out[: sampling.max_tokens]

    async def stream(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncGenerator[list[int], None]:
        if self._closed:
            raise RuntimeError("engine is shut down")
        if request_id in self._active:
            raise ValueError(f"request id {request_id!r} is already generating")
        request = _Request(
            len(prompt_token_ids), self.plan(prompt_token_ids, sampling, request_id), self.stream_interval
        )
        self._active[request_id] = request
        self._steps.add(request)
        try:
            while request.sent < len(request.ids):
                await request.event.wait()
                request.event.clear()
                if request.made > request.sent:
                    delta = request.ids[request.sent : request.made]
                    request.sent = request.made
                    yield delta
        finally:
            self._steps.drop(request)
            self._active.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        request = self._active.get(request_id)
        if request is not None:
            self._steps.drop(request)
            request.ids = request.ids[: request.made]
            request.event.set()

    def active_requests(self) -> set[str]:
        return set(self._active)

    def stepping_requests(self) -> int:
        return len(self._active)

    async def shutdown(self) -> None:
        self._closed = True
        for request_id in list(self._active):
            await self.abort(request_id)
        await self._steps.aclose()

    async def sleep(self, level: int = 1) -> None:
        raise NotImplementedError("the cost-model engine cannot sleep")

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return False
