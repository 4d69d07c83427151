"""The transformers backend: the HF Qwen2 checkpoint decoded token by token with a KV cache.

Each request runs in a worker thread (a small pool), never on the event loop. New ids reach the
async consumer through `_DeltaChannel`: the worker appends under a lock and wakes the loop with
`call_soon_threadsafe`; the consumer takes everything pending as one delta, so a slow consumer gets
larger deltas instead of an unbounded queue, and past `max_pending_tokens` the worker waits.

Concurrency: one forward step at a time holds the model, so concurrent requests interleave step by step
(each keeps its own KV cache). Throughput is therefore that of one stream shared between requests --
correct and simple, no batching; production uses vLLM for batching. Which request steps next is the
step gate's choice (core/llm/step_gate.py): the owner (API key) that used the engine least lately, so one
key's many requests cannot starve another key's one.

Work classes (`SamplingConfig.work_class`): a background request (a long-form job's chapter) runs in a worker of its
own and takes no step while a live request is generating (prefill included), so live requests run as fast as with
no job beside them; it goes on between live requests. Live requests only count themselves in and out (no per-step
cost).

Sampling is implemented here, explicitly, in float32: repetition penalty (over prompt + output, the
HF/vLLM rule: positive logits divided, negative multiplied), temperature, top-k, top-p, then a draw
from a per-request `torch.Generator` seeded from `SamplingConfig.seed`.

The grammar head (`head_ids`): the language-model head is ~149M of the ~507M weights a step reads, yet the Spark
grammar only ever uses ~13k of its 166k rows (semantic, global and acoustic-value ids and the markers the parser
reads, `grammar_head_ids`). With `head_ids` given, a step computes logits for those rows only (a head weight
sliced once at load) and maps the chosen row back to its id. Every id outside them is unreachable, as if banned:
the ids drawn equal those of the full head banned to the same rows, greedy or seeded (`_pick`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from core.llm.base import SamplingConfig, check_dtype, checked_prompt, resolve_device, resolve_dtype
from core.llm.step_gate import FairStepGate
from core.tokens import TokenKind, VocabLayout

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from shared.settings import Settings

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
logger = logging.getLogger(__name__)


def grammar_head_ids(layout: VocabLayout) -> list[int]:
    """The ids the Spark parser reads (semantic, global, acoustic values, markers): everything the model emits that
    matters; any other id (text, labels) is skipped by the parser."""
    return np.flatnonzero(layout.kinds != TokenKind.OTHER).tolist()


class _DeltaChannel:
    """Worker thread -> event loop handoff of generated ids; also carries the request's cancel flag."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int, interval: int = 1) -> None:
        self._loop = loop
        self._capacity = capacity
        self._interval = (
            interval  # ids per wake-up after the first (vLLM's stream_interval); the end wakes at once
        )
        self._woken = False
        self._handed = False  # the consumer has had its first ids
        self._cond = threading.Condition()
        self._pending: list[int] = []
        self._done = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._ready = asyncio.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    # --- worker side ---------------------------------------------------------------------------
    def put(self, token_id: int) -> bool:
        """Queue one id; blocks while the consumer is `capacity` ids behind. False once cancelled."""
        with self._cond:
            while len(self._pending) >= self._capacity and not self._cancelled:
                self._cond.wait(0.05)
            if self._cancelled:
                return False
            self._pending.append(token_id)
            wake = not self._woken or len(self._pending) >= self._interval
            self._woken = True
        if wake:
            self._wake()
        return True

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done = True
            self._error = error
        self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel()

    # --- event loop side -----------------------------------------------------------------------
    async def get(self) -> tuple[list[int], bool]:
        """Wait for new ids; returns (ids, finished). Raises the worker's error, if any."""
        while True:
            # Clear before looking: a put after the look schedules a set() that runs after this clear.
            self._ready.clear()
            with self._cond:
                done, error = self._done, self._error
                # The first ids at once, then at least `interval` at a time (the rest at the end).
                ids = []
                if done or not self._handed or len(self._pending) >= self._interval:
                    ids, self._pending = self._pending, []
                if ids:
                    self._handed = True
                    self._cond.notify_all()
            if error is not None:
                raise error
            if ids or done:
                return ids, done
            await self._ready.wait()


@dataclass
class _Request:
    channel: _DeltaChannel
    future: Future[None] | None = None


def sample_next(
    logits: torch.Tensor,
    seen: torch.Tensor,
    sampling: SamplingConfig,
    generator: torch.Generator,
    banned: torch.Tensor | None = None,
) -> int:
    """Pick the next id from one row of float32 logits [V]; `seen` marks prompt + generated ids and
    `banned` (optional) the ids outside `sampling.allowed_token_ids`."""
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    penalty = sampling.repetition_penalty
    if penalty != 1.0:
        hit = logits[seen]
        logits = logits.index_put((seen,), torch.where(hit > 0, hit / penalty, hit * penalty))
    if sampling.greedy:
        return int(torch.argmax(logits))
    logits = logits / sampling.temperature
    # Work on the k best (topk is O(V)); only nucleus sampling without top-k needs a full sort.
    index: torch.Tensor | None = None
    if 0 < sampling.top_k < logits.shape[-1]:
        logits, index = torch.topk(logits, sampling.top_k)  # sorted, best first
    elif sampling.top_p < 1.0:
        logits, index = torch.sort(logits, descending=True)
    if sampling.top_p < 1.0:
        probs = torch.softmax(logits, dim=-1)
        # Drop a token when the mass before it already reaches top_p; the first one always stays.
        drop = (torch.cumsum(probs, dim=-1) - probs) >= sampling.top_p
        # Keep the most likely token whatever top_p is: a top_p that underflows to 0 in float32 (5e-324)
        # would otherwise drop every token and sample from NaNs.
        drop[..., 0] = False
        logits = logits.masked_fill(drop, float("-inf"))
    choice = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
    return int(choice) if index is None else int(index[choice])


class TransformersEngine:
    """`LLMEngine` over an HF causal LM. Build with `from_pretrained`."""

    name = "transformers"

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        device: str,
        max_concurrency: int = 8,
        max_pending_tokens: int = 1024,
        stream_interval: int = 1,
        head_ids: Sequence[int] | None = None,
    ) -> None:
        self._model = model
        self._device = torch.device(device)
        # transformers 5.24 renamed the KV cache argument and output `past_key_values` -> `cache` and warns (a
        # FutureWarning on every start) on the old name; the vLLM image pins 5.20, which knows only the old one.
        self._cache_name = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        # The input embedding's weight ([vocab, hidden]); torch types a submodule's attribute as Tensor | Module.
        self._vocab_size = int(cast(torch.Tensor, model.get_input_embeddings().weight).shape[0])
        # The grammar head: the ids it can emit (sorted, so a row's order is its id's order) and their weight rows.
        self._head_rows: torch.Tensor | None = None
        self._head_weight: torch.Tensor | None = None
        self._head_bias: torch.Tensor | None = None
        if head_ids is not None:
            rows = sorted({int(i) for i in head_ids if 0 <= int(i) < self._vocab_size})
            if not rows:
                raise ValueError("head_ids holds no id of the model's vocabulary")
            self._head_rows = torch.tensor(rows, dtype=torch.long, device=self._device)
            head = cast(torch.nn.Linear, model.get_output_embeddings())
            self._head_weight = head.weight.detach().index_select(0, self._head_rows).contiguous()
            if head.bias is not None:
                self._head_bias = head.bias.detach().index_select(0, self._head_rows).contiguous()
        self._init_scheduling(max_concurrency, max_pending_tokens, stream_interval)

    def _init_scheduling(self, max_concurrency: int, max_pending_tokens: int, stream_interval: int) -> None:
        """The request machinery every stepped engine shares (the ONNX engine too): workers, gate, channels."""
        self._steps = FairStepGate()
        self._active_lock = threading.Lock()
        self._active: dict[str, _Request] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="llm-transformers"
        )
        # Background requests: one worker of their own, so a waiting one never holds a live request's worker
        self._background_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llm-transformers-background"
        )
        self._live_turn = threading.Condition()  # notified when the last live request stops generating
        self._live_generating = 0
        self._max_pending = max_pending_tokens
        self._stream_interval = max(1, stream_interval)
        self._closed = False
        self.steps_total = 0  # forward steps run (= tokens generated) over the engine's life

    @property
    def step_gate(self) -> FairStepGate:
        """The gate the steps take turns in (the CPU codec scheduler shares its usage account: key_share.CpuTurns)."""
        return self._steps

    @classmethod
    def from_pretrained(
        cls,
        llm_dir: str | Path,
        device: str = "cpu",
        dtype: str = "float32",
        head_ids: Sequence[int] | None = None,
        **kwargs: int,
    ) -> TransformersEngine:
        """Load `llm_dir` (HF Qwen2). dtype: float32 | bfloat16 | auto; float16 raises ValueError."""
        name = check_dtype(dtype)  # refuse fp16 before touching the disk
        name = resolve_dtype(name, device)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=_TORCH_DTYPES[name])
        # transformers types `to` on PreTrainedModel as taking the model again: its own stubs are wrong here.
        model.to(device).eval()  # type: ignore[arg-type]
        return cls(model, device=device, head_ids=head_ids, **kwargs)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def head_size(self) -> int:
        """Rows of the language-model head a step computes (the vocabulary unless `head_ids` restricted it)."""
        return self._vocab_size if self._head_rows is None else int(self._head_rows.numel())

    def active_requests(self) -> set[str]:
        with self._active_lock:
            return set(self._active)

    def stepping_requests(self) -> int:
        """Every active request (this engine holds none back for its pace)."""
        with self._active_lock:
            return len(self._active)

    async def stream(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncGenerator[list[int], None]:
        prompt = checked_prompt(prompt_token_ids, closed=self._closed, vocab_size=self._vocab_size)
        request = _Request(
            _DeltaChannel(asyncio.get_running_loop(), self._max_pending, self._stream_interval)
        )
        with self._active_lock:
            if request_id in self._active:
                raise ValueError(f"request id {request_id!r} is already generating")
            self._active[request_id] = request
        try:
            executor = self._executor if sampling.work_class == "live" else self._background_executor
            request.future = executor.submit(self._generate, prompt, sampling, request_id, request)
        except RuntimeError:  # executor shut down between the check above and here
            self._forget(request_id, request)
            raise
        try:
            while True:
                ids, done = await request.channel.get()
                if ids:
                    yield ids
                if done:
                    return
        finally:
            # Reached on normal end, aclose() (GeneratorExit) and task cancellation alike.
            self._stop(request_id, request)

    async def abort(self, request_id: str) -> None:
        with self._active_lock:
            request = self._active.get(request_id)
        if request is not None:
            self._stop(request_id, request)

    async def shutdown(self) -> None:
        self._closed = True
        with self._active_lock:
            requests = list(self._active.items())
        for request_id, request in requests:
            self._stop(request_id, request)
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        await asyncio.to_thread(self._background_executor.shutdown, wait=True)

    # --- memory snapshots: not supported (the weights stay where they are) ----------------------
    supports_sleep = False

    async def sleep(self, level: int = 1) -> None:
        raise NotImplementedError("the transformers engine cannot sleep; GPU snapshots need TTS_ENGINE=vllm")

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return False

    # --- internals -----------------------------------------------------------------------------
    def _stop(self, request_id: str, request: _Request) -> None:
        request.channel.cancel()
        if request.future is not None and request.future.cancel():  # never started: nothing will clean up
            request.channel.finish()
            self._forget(request_id, request)

    def _forget(self, request_id: str, request: _Request) -> None:
        with self._active_lock:
            if self._active.get(request_id) is request:
                del self._active[request_id]

    def _generate(
        self, prompt: list[int], sampling: SamplingConfig, request_id: str, request: _Request
    ) -> None:
        """Worker thread: decode until a stop id, max_tokens or cancellation."""
        channel = request.channel
        error: BaseException | None = None
        live = sampling.work_class == "live"
        if live:
            with self._live_turn:
                self._live_generating += 1
            self._steps.note_request(sampling.owner)
        try:
            with torch.inference_mode():
                self._decode(prompt, sampling, channel)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            error = exc
        finally:
            if live:
                with self._live_turn:
                    self._live_generating -= 1
                    if not self._live_generating:
                        self._live_turn.notify_all()
            self._forget(request_id, request)
            channel.finish(error)

    def _wait_for_live(self, channel: _DeltaChannel) -> None:
        """A background request's turn: none while a live request is generating (or until cancelled)."""
        with self._live_turn:
            while self._live_generating and not channel.cancelled:
                self._live_turn.wait(0.05)

    def _decode(self, prompt: list[int], sampling: SamplingConfig, channel: _DeltaChannel) -> None:
        generator = torch.Generator(device=self._device)
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed)
        stop = frozenset(sampling.stop_token_ids)
        seen = torch.zeros(self._vocab_size, dtype=torch.bool, device=self._device)
        seen[torch.tensor(prompt, device=self._device)] = True
        banned = None
        if sampling.allowed_token_ids is not None:
            banned = torch.ones(self._vocab_size, dtype=torch.bool, device=self._device)
            banned[torch.tensor(sampling.allowed_token_ids, device=self._device)] = False
        input_ids = torch.tensor([prompt], dtype=torch.long, device=self._device)
        cache = None
        background = sampling.work_class == "background"
        for _ in range(sampling.max_tokens):
            if background:
                self._wait_for_live(channel)
            if channel.cancelled:
                return
            # The draw is part of the step: the gate hands the next step on the moment this one ends.
            with self._steps.turn(sampling.owner, background=background):
                if channel.cancelled:  # re-check: other requests may have stepped while this one waited
                    return
                logits, cache = self._step(input_ids, cache)
                self.steps_total += 1
                token = self._pick(logits, seen, sampling, generator, banned)
            seen[token] = True
            if not channel.put(token) or token in stop:
                return
            input_ids = torch.tensor([[token]], dtype=torch.long, device=self._device)

    def _step(self, input_ids: torch.Tensor, cache: object) -> tuple[torch.Tensor, object]:
        """One forward: float32 logits of the last position (over the head's rows) and the new KV cache."""
        if self._head_weight is None:
            out = self._model(
                input_ids=input_ids, **{self._cache_name: cache}, use_cache=True, logits_to_keep=1
            )
            return out.logits[0, -1].float(), getattr(out, self._cache_name)
        # The decoder without its head; the head's matmul on the last position's [1, 1, hidden], as the full head does.
        out = self._model.get_decoder()(input_ids=input_ids, **{self._cache_name: cache}, use_cache=True)
        logits = torch.nn.functional.linear(out.last_hidden_state[:, -1:], self._head_weight, self._head_bias)
        return logits[0, -1].float(), getattr(out, self._cache_name)

    def _pick(
        self,
        logits: torch.Tensor,
        seen: torch.Tensor,
        sampling: SamplingConfig,
        generator: torch.Generator,
        banned: torch.Tensor | None,
    ) -> int:
        """The next id from the step's logits. With the grammar head, greedy picks and top-k below the head's size
        sample its rows directly (the same values in the same order as the full head's); any other draw runs on the
        full vocabulary with -inf outside the rows, since a multinomial draw's randomness depends on the tensor's
        length and positions: so a seed draws the same id either way."""
        rows = self._head_rows
        if rows is None:
            return sample_next(logits, seen, sampling, generator, banned)
        if sampling.greedy or 0 < sampling.top_k < rows.numel():
            row = sample_next(
                logits, seen[rows], sampling, generator, None if banned is None else banned[rows]
            )
            return int(rows[row])
        full = torch.full((self._vocab_size,), float("-inf"), device=logits.device)
        full[rows] = logits
        return sample_next(full, seen, sampling, generator, banned)


def engine_from_settings(llm_dir: str | Path, settings: Settings) -> TransformersEngine:
    """The registry's builder (core/llm/__init__.py)."""
    device = resolve_device(settings.model.device)
    return TransformersEngine.from_pretrained(
        llm_dir,
        device=device,
        dtype=resolve_dtype(settings.llm.llm_dtype, device),
        max_concurrency=settings.llm.llm_max_concurrency,
        stream_interval=settings.llm.llm_stream_interval,
        head_ids=grammar_head_ids_of(llm_dir) if settings.llm.llm_grammar_head else None,
    )


def grammar_head_ids_of(llm_dir: str | Path) -> list[int] | None:
    """`grammar_head_ids` of the tokenizer in `llm_dir`; None (the full head) when it is no Spark-TTS tokenizer."""
    from transformers import AutoTokenizer

    try:
        # Any, as the runtime holds it: transformers' backend classes type convert_tokens_to_ids loosely.
        tokenizer: Any = AutoTokenizer.from_pretrained(str(llm_dir))
        layout = VocabLayout.from_tokenizer(tokenizer)
    except (OSError, ValueError) as exc:  # no tokenizer, or not a Spark one (VocabularyError)
        logger.warning("LLM head not restricted to the Spark grammar: %s", exc)
        return None
    return grammar_head_ids(layout)
