"""Acceptance step 3, the LLM step: Qwen2 at Spark-TTS's released config (random weights) under transformers.

vLLM cannot be installed on the lent machine, so this measures the same network with Hugging Face transformers:
a prompt of `PROMPT_TOKENS` is prefilled once per batch, then `STEPS` single-token decode steps run with the KV
cache, timed per step for B = 1..64 rows. Per-stream tokens/s = 1 / step latency; the aggregate is B times that.

How it relates to vLLM: eager transformers dispatches every kernel from Python, so its step latency is mostly
dispatch overhead (flat in the batch size on the H100). `graph_step_latency` runs the same step over a static KV
cache as one CUDA graph, which is how vLLM runs a decode step; vLLM adds paged attention and continuous batching.
The service load step is paced at the graph rate when it was measured, else at the eager rate (conservative).

Also: bf16 against fp32 logits on the same prompt (the LLM is the one model the service runs in bf16): top-1
agreement over the decode steps and the largest logit difference.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Spark-TTS LLM/config.json: Qwen2.5-0.5B with the speech vocabulary.
RELEASED = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=166000,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    hidden_act="silu",
)
QUICK = dict(
    RELEASED,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=4096,
)
PROMPT_TOKENS = 320  # a voice prompt with one sentence of text
STEPS = 48  # decode steps timed per batch (about 1 s of speech at 50 tokens/s)


def build(config: dict[str, Any], device: str, dtype: torch.dtype) -> PreTrainedModel:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**config, dtype=dtype))
    torch.nn.Module.to(model, device=device, dtype=dtype)  # in place; transformers types its own `to` loosely
    return model.eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def step_latency(
    model: PreTrainedModel, batch: int, device: str, prompt: int, steps: int
) -> dict[str, float]:
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), device=device)
    _sync(device)
    started = time.perf_counter()
    out = model(input_ids=ids, use_cache=True)
    _sync(device)
    prefill_s = time.perf_counter() - started
    cache = out.past_key_values
    token = out.logits[:, -1:].argmax(-1)
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        out = model(input_ids=token, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cache = out.past_key_values
    times.sort()
    median = times[len(times) // 2]
    return {
        "batch": batch,
        "prefill_ms": prefill_s * 1000,
        "step_ms_p50": median * 1000,
        "step_ms_p90": times[int(len(times) * 0.9)] * 1000,
        "tokens_per_s_per_stream": 1.0 / median,
        "tokens_per_s_total": batch / median,
    }


class StaticStep:
    """One decode step over a static KV cache for `batch` rows after a random prompt of `prompt` tokens, replayed as
    one CUDA graph (`graph=False`: run eagerly, to check it on a CPU). `advance()` runs a step and moves every row one
    position on, up to `cache_len`; `repeat()` runs the same step again at the same position (a load that steps for
    ever at one cost). `compile_step`: the step compiled by TorchInductor first (bench/gpu/engine_step.py), as vLLM
    compiles its model; it compiles on the warm-up before the capture (or on the first call without one)."""

    def __init__(
        self,
        model: PreTrainedModel,
        batch: int,
        device: str,
        prompt: int,
        cache_len: int,
        graph: bool = True,
        *,
        compile_step: bool = False,
    ) -> None:
        from transformers import StaticCache

        self.graph = graph
        cache = StaticCache(config=model.config, max_cache_len=cache_len)
        ids = torch.randint(0, model.config.vocab_size, (batch, prompt), device=device)
        out = model(
            input_ids=ids,
            past_key_values=cache,
            use_cache=True,
            cache_position=torch.arange(prompt, device=device),
            logits_to_keep=1,  # the last position's: all of them at 256 rows would be tens of GB
        )
        self.token = out.logits[:, -1:].argmax(-1)
        self.position = torch.tensor([prompt], device=device)
        self._cache, self._prompt = cache, prompt
        self._room, self._repeats = cache_len - prompt - 1, 0

        def step() -> torch.Tensor:
            logits = model(
                input_ids=self.token,
                past_key_values=cache,
                use_cache=True,
                cache_position=self.position,
                position_ids=self.position.expand(batch, 1),
            ).logits
            return logits[:, -1:].argmax(-1)

        self._step = torch.compile(step, dynamic=False) if compile_step else step
        self._next: torch.Tensor | None = None
        if graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the capture, as CUDA graphs require
                # A compiled step: more than once, so a recompile on a guard or a kernel's first-run tuning
                # happens here, never inside the capture.
                for _ in range(3 if compile_step else 1):
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            self._captured = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._captured):
                self._next = self._step()

    def _rewind(self) -> None:
        """Back to the prompt's end. Recent transformers keep the write position in each layer's own counter (a tensor
        the graph adds to), not in the position passed in: rewind both, in place."""
        for layer in getattr(self._cache, "layers", []):
            counter = getattr(layer, "cumulative_length", None)
            if isinstance(counter, torch.Tensor):
                counter.fill_(self._prompt)
        self.position.fill_(self._prompt)
        self._repeats = 0

    def advance(self) -> None:
        if self.graph:
            self._captured.replay()
            nxt = self._next
        else:
            nxt = self._step()
        assert nxt is not None
        self.token.copy_(nxt)
        # the captured kernels read the position and write the cache slot from these tensors
        self.position += 1

    def repeat(self) -> None:
        self._repeats += 1
        if self._repeats >= self._room:
            self._rewind()
        if self.graph:
            self._captured.replay()
        else:
            self._step()


def timed_steps(
    stepper: StaticStep, device: str, steps: int, tokens: list[torch.Tensor] | None = None
) -> list[float]:
    """`steps` of `stepper.advance()`, each timed alone (synchronised on a GPU): seconds, sorted. Each step's token
    is appended to `tokens` when given."""
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        stepper.advance()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if tokens is not None:
            tokens.append(stepper.token.clone())
    return sorted(times)


@torch.inference_mode()
def graph_step_latency(
    model: PreTrainedModel, batch: int, device: str, prompt: int, steps: int, graph: bool = True
) -> dict[str, Any]:
    """The decode step of `StaticStep`, timed. This is how vLLM runs a decode step (CUDA graphs over a preallocated
    cache), so its latency is the closer bound: one graph launch instead of ~400 Python kernel dispatches."""
    stepper = StaticStep(model, batch, device, prompt, prompt + steps + 8, graph)
    tokens: list[torch.Tensor] = []
    times = timed_steps(stepper, device, steps, tokens)
    median = times[len(times) // 2]
    return {
        "batch": batch,
        "step_ms_p50": median * 1000,
        "step_ms_p90": times[int(len(times) * 0.9)] * 1000,
        "tokens_per_s_per_stream": 1.0 / median,
        "tokens_per_s_total": batch / median,
        "tokens": torch.cat(tokens, dim=1).tolist() if not graph else None,
    }


@torch.inference_mode()
def bf16_vs_fp32(config: dict[str, Any], device: str, steps: int) -> dict[str, Any]:
    fp32 = build(config, device, torch.float32)
    bf16 = build(config, device, torch.bfloat16)
    ids = torch.randint(0, config["vocab_size"], (1, 64), device=device, generator=None)
    agree, max_diff = 0, 0.0
    for _ in range(steps):
        a = fp32(input_ids=ids).logits[:, -1].float()
        b = bf16(input_ids=ids).logits[:, -1].float()
        agree += int(a.argmax() == b.argmax())
        max_diff = max(max_diff, float((a - b).abs().max()))
        ids = torch.cat([ids, a.argmax(-1, keepdim=True)], dim=1)  # follow the fp32 path
    del fp32, bf16
    return {"steps": steps, "top1_agreement": agree / steps, "max_logit_diff": max_diff}


def run(device: str, quick: bool, batches: list[int] | None = None) -> dict[str, Any]:
    config = QUICK if quick else RELEASED
    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32  # the service's dtype on a GPU; fp32 on a CPU
    batches = batches or ([1, 2] if quick else [1, 2, 4, 8, 16, 32, 64])
    prompt, steps = (32, 4) if quick else (PROMPT_TOKENS, STEPS)
    model = build(config, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"Qwen2 {'(quick, tiny)' if quick else 'released config'}: {params / 1e6:.0f} M params, {dtype}, "
        f"prompt {prompt}, {steps} decode steps"
    )
    step_latency(model, 1, device, prompt, 2)  # warm-up: kernels, allocator
    rows: list[dict[str, Any]] = []
    for batch in batches:
        try:
            row = step_latency(model, batch, device, prompt, steps)
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch": batch, "note": "out of memory"})
            break
        rows.append(row)
        print(
            f"  B={batch:<3} step p50 {row['step_ms_p50']:7.2f} ms  {row['tokens_per_s_per_stream']:7.1f} tok/s "
            f"per stream  {row['tokens_per_s_total']:8.0f} tok/s total  prefill {row['prefill_ms']:.1f} ms"
        )
    graph_rows: list[dict[str, Any]] = []
    if cuda:
        for batch in batches:
            try:
                row = graph_step_latency(model, batch, device, prompt, steps)
            except Exception as exc:  # noqa: BLE001 - the eager rows stand; say why the graph rows are missing
                graph_rows.append({"batch": batch, "note": f"{type(exc).__name__}: {exc}"[:300]})
                print(f"  CUDA graph B={batch}: {graph_rows[-1]['note']}")
                break
            row.pop("tokens")
            graph_rows.append(row)
            print(
                f"  CUDA graph B={batch:<3} step p50 {row['step_ms_p50']:7.2f} ms  "
                f"{row['tokens_per_s_per_stream']:7.1f} tok/s per stream  {row['tokens_per_s_total']:8.0f} tok/s total"
            )
    del model
    if cuda:
        torch.cuda.empty_cache()
    parity = bf16_vs_fp32(config, device, 4 if quick else 32)
    print(
        f"  bf16 vs fp32: top-1 agreement {parity['top1_agreement']:.2f}, max logit diff "
        f"{parity['max_logit_diff']:.3f}"
    )
    return {
        "config": "quick" if quick else "released",
        "dtype": str(dtype).removeprefix("torch."),
        "params": params,
        "rows": rows,
        "graph_rows": graph_rows,
        "bf16_vs_fp32": parity,
    }


def rate_at(result: dict[str, Any], streams: int) -> float | None:
    """Tokens/s per stream the LLM gives at `streams` concurrent rows (the nearest measured batch at or above): the
    CUDA-graph rows when they were measured (how vLLM runs a step), else the eager rows."""
    measured = [r for r in result.get("graph_rows", []) if "step_ms_p50" in r] or [
        r for r in result.get("rows", []) if "step_ms_p50" in r
    ]
    above = [r for r in measured if r["batch"] >= streams] or measured[-1:]
    return min(above, key=lambda r: r["batch"])["tokens_per_s_per_stream"] if above else None


def paced_rate(result: dict[str, Any] | None, streams: int) -> dict[str, Any]:
    """Tokens/s per stream for `streams` concurrent streams, 1000 / step_ms(streams), from the CUDA-graph rows (how
    vLLM runs a step): measured at that batch, interpolated linearly between the two measured batches around it, or
    extrapolated linearly beyond the largest from the two largest (said in `source`). Without graph rows (a CPU, or
    the capture failed) the eager rows at the nearest batch at or above (`rate_at`); without an `llm` result, 200."""
    graph = sorted(
        (r for r in (result or {}).get("graph_rows", []) if "step_ms_p50" in r), key=lambda r: r["batch"]
    )
    if not graph:
        eager = rate_at(result, streams) if result else None
        if eager is None:
            return {"rate": 200.0, "step_ms": None, "source": "no llm result: 200 tokens/s assumed"}
        return {"rate": eager, "step_ms": 1000.0 / eager, "source": "eager transformers (no CUDA-graph rows)"}
    points = [(r["batch"], r["step_ms_p50"]) for r in graph]
    exact = dict(points).get(streams)
    if exact is not None:
        step, source = exact, "graph, measured"
    elif len(points) == 1:
        step, source = points[0][1], f"graph, the one measured batch ({points[0][0]})"
    elif streams < points[0][0]:
        step, source = points[0][1], f"graph, the smallest measured batch ({points[0][0]})"
    elif streams > points[-1][0]:
        (b0, s0), (b1, s1) = points[-2], points[-1]
        step = s1 + (s1 - s0) / (b1 - b0) * (streams - b1)
        source = f"graph, extrapolated from B={b0},{b1}"
    else:
        (b0, s0), (b1, s1) = next(
            (a, b) for a, b in zip(points, points[1:], strict=False) if a[0] < streams < b[0]
        )
        step = s0 + (s1 - s0) * (streams - b0) / (b1 - b0)
        source = f"graph, interpolated B={b0}-{b1}"
    return {"rate": 1000.0 / step, "step_ms": step, "source": source}
