"""An engine wrapper that misbehaves on purpose, for testing the generation guards (core.guards) end to end.

`FaultyEngine(inner, FaultSpec)` passes the inner engine's stream through until the fault starts, then:
- `loop`: after K semantic ids, repeats the last `LOOP_PERIOD` of them until the token budget ends the stream;
- `silence`: after K semantic ids, holds one semantic id (the codec's silence is a held id) until the budget;
- `quiet`: after K semantic ids, alternates ids 0 and 1 (silence the held-id check cannot see: only the audio
  detector notices, with a codec where they decode silent);
- `runaway`: drops the stop id and keeps emitting random semantic ids until the budget (it never stops);
- `stop`: emits the stop id in place of the first semantic id (a chunk with no speech).
`tries`: the first `tries` generations of each text misbehave, then one behaves, and so on (0: every one does),
so a retried chunk can succeed; the text is the prompt's content ids, so a retry with the voice's global tokens
counts as the same text. A spec is `MODE[:K][:TRIES]`; a server serves with it through
`python -m bench.standin.serve --fault SPEC`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.tokens import TokenKind, VocabLayout

if TYPE_CHECKING:
    from core.llm.base import LLMEngine, SamplingConfig

FaultMode = Literal["loop", "silence", "quiet", "runaway", "stop"]
LOOP_PERIOD = 25  # semantic ids repeated by `loop` (half a second)
FAULT_DELTA = 8  # ids per delta once the fault runs
_REMEMBERED_TEXTS = 4096


@dataclass(frozen=True)
class FaultSpec:
    mode: FaultMode
    after: int = 50  # K: semantic ids passed through before the fault
    tries: int = 1

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        parts = text.split(":")
        if parts[0] not in ("loop", "silence", "quiet", "runaway", "stop") or len(parts) > 3:
            raise ValueError(
                f"engine fault {text!r}: expected MODE[:K][:TRIES], MODE one of loop, silence, "
                "quiet, runaway, stop"
            )
        numbers = [int(p) for p in parts[1:]]
        if any(n < 0 for n in numbers):
            raise ValueError(f"engine fault {text!r}: K and TRIES must be >= 0")
        return cls(parts[0], *numbers)  # type: ignore[arg-type]


class FaultyEngine:
    """`LLMEngine` wrapper (module doc); everything but `stream` is the inner engine's."""

    def __init__(
        self, inner: LLMEngine, spec: FaultSpec, layout: VocabLayout, content_ids: tuple[int, int]
    ) -> None:
        self.inner = inner
        self.spec = spec
        self.layout = layout
        self.name = f"{inner.name}+fault:{spec.mode}"
        self._content = content_ids
        self._generations: OrderedDict[tuple[int, ...], int] = OrderedDict()

    def __getattr__(
        self, name: str
    ) -> Any:  # abort, active_requests, shutdown, sleep, wake_up, supports_sleep
        return getattr(self.inner, name)

    def _text_key(self, prompt: list[int]) -> tuple[int, ...]:
        start, end = self._content
        try:
            i = prompt.index(start)
            return tuple(prompt[i + 1 : prompt.index(end, i + 1)])
        except ValueError:
            return tuple(prompt)

    def misbehaves(self, prompt: list[int]) -> bool:
        """Whether this generation of the prompt's text misbehaves (and count it)."""
        key = self._text_key(prompt)
        seen = self._generations.pop(key, 0)
        self._generations[key] = seen + 1
        while len(self._generations) > _REMEMBERED_TEXTS:
            self._generations.popitem(last=False)
        tries = self.spec.tries
        return tries == 0 or seen % (tries + 1) < tries

    def stream(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncGenerator[list[int], None]:
        if not self.misbehaves(list(prompt_token_ids)):
            return self.inner.stream(prompt_token_ids, sampling, request_id)
        return self._faulty(prompt_token_ids, sampling, request_id)

    def _is_semantic(self, token: int) -> bool:
        return 0 <= token < self.layout.table_size and self.layout.kinds[token] == TokenKind.SEMANTIC

    async def _faulty(
        self, prompt: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncGenerator[list[int], None]:
        spec, lay = self.spec, self.layout
        stops = {lay.im_end_id, lay.end_semantic_id}
        emitted = 0
        kept: list[int] = []  # semantic ids passed through
        faulting = False
        inner = self.inner.stream(prompt, sampling, request_id)
        try:
            async for delta in inner:
                out: list[int] = []
                for token in delta:
                    semantic = self._is_semantic(token)
                    if (
                        semantic
                        and (spec.mode == "stop" or (spec.mode != "runaway" and len(kept) >= spec.after))
                    ) or (token in stops and spec.mode == "runaway"):
                        faulting = True
                        break
                    out.append(token)
                    if semantic:
                        kept.append(token)
                if out:
                    emitted += len(out)
                    yield out
                if faulting:
                    break
        finally:
            await inner.aclose()
        if not faulting and spec.mode != "runaway":
            return  # the text ended before the fault was due (a runaway goes on: an engine may end without
            # handing out its stop id, vLLM's detokenizer-less streams do)
        if spec.mode == "stop":
            yield [lay.im_end_id]
            return
        rng = np.random.default_rng(len(prompt))
        pattern = kept[-LOOP_PERIOD:] or [lay.semantic_id(1)]
        i = 0
        while emitted < sampling.max_tokens:
            n = min(FAULT_DELTA, sampling.max_tokens - emitted)
            if spec.mode == "loop":
                delta = [pattern[(i + k) % len(pattern)] for k in range(n)]
            elif spec.mode == "silence":
                delta = [lay.semantic_id(0)] * n
            elif spec.mode == "quiet":
                delta = [lay.semantic_id((i + k) % 2) for k in range(n)]
            else:
                delta = [lay.semantic_id(int(v)) for v in rng.integers(0, 8192, n)]
            i += n
            emitted += n
            yield delta
            await asyncio.sleep(0)


def with_fault(engine: LLMEngine, fault: str, layout: VocabLayout, tokenizer: Any) -> LLMEngine:
    """`engine` wrapped by the fault `MODE[:K][:TRIES]` (empty: unchanged)."""
    if not fault:
        return engine
    ids = tokenizer.convert_tokens_to_ids(["<|start_content|>", "<|end_content|>"])
    return FaultyEngine(engine, FaultSpec.parse(fault), layout, (int(ids[0]), int(ids[1])))
