"""The CPU engine: the Spark LLM's decoder in ONNX Runtime (weight-only int8 or int4), the head and the sampling in
torch, exactly as the transformers engine does them.

Why ONNX Runtime: at batch 1 a decode step reads every weight once, so a CPU's speed is its memory bandwidth over
the bytes of weights; int8 blocks read ~1/4 of float32's, int4 ~1/8, and ONNX Runtime's MatMulNBits kernels decode
them on x86-64 (AVX2/AVX-512) and arm64 (NEON) alike, from one well-kept wheel per platform
(docs/decisions/cpu-engine.md has the candidates measured side by side and the quality against float32).

What stays as in the transformers engine (it is a subclass that replaces only the forward step): the prompt checks,
the request workers and their fair step gate, the delta channel, stop ids, `max_tokens`, cancellation, background
turns, and `_pick`, the sampler in float32 (repetition penalty, temperature, top-k, top-p, seeded draws), with the
grammar head: logits are computed only for the grammar's rows (`head_ids`), from the checkpoint's own float32
weights, and every other id is unreachable; `allowed_token_ids` masks on top. So the engine never emits an id outside
the allowed ranges, and a seed draws the ids the transformers engine draws from the same logits.

The step: `input_ids`, `attention_mask` (and `position_ids` where the graph takes them) and the past keys and values
of every layer in, the last hidden state and the present keys and values out; the present becomes the next past.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from core.llm.onnx_convert import OnnxModel, Precision, ensure_onnx_model
from core.llm.transformers_engine import TransformersEngine, grammar_head_ids_of

if TYPE_CHECKING:
    from shared.settings import Settings

logger = logging.getLogger(__name__)

_HEAD_KEYS = (
    "lm_head.weight",
    "model.embed_tokens.weight",
)  # tied checkpoints (Qwen2-0.5B) hold only the second


def onnx_runtime_available() -> bool:
    """Whether the CPU engine's packages are installed (the `cpu` extra): the runtime and the converter."""
    try:
        import onnxruntime  # noqa: F401
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return False
    return True


def load_head(llm_dir: Path, ids: Sequence[int] | None) -> tuple[torch.Tensor, int, list[int] | None]:
    """The language-model head's float32 rows read from the checkpoint's safetensors: all of them, or those of `ids`
    in the vocabulary (sorted, returned with them); and the vocabulary size. Tied checkpoints have no
    `lm_head.weight`: their input embedding is the head."""
    from safetensors import safe_open

    files = sorted(llm_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{llm_dir} has no *.safetensors: the head's weights are read from them")
    config = json.loads((llm_dir / "config.json").read_text())
    keys = _HEAD_KEYS if not config.get("tie_word_embeddings", True) else _HEAD_KEYS[::-1]
    for key in keys:
        for path in files:
            with safe_open(str(path), framework="pt") as handle:
                if key in handle.keys():  # noqa: SIM118 - safe_open is no mapping
                    weight = handle.get_tensor(key)
                    vocab = int(weight.shape[0])
                    if ids is None:
                        return weight.float().contiguous(), vocab, None
                    rows = sorted({int(i) for i in ids if 0 <= int(i) < vocab})
                    if not rows:
                        raise ValueError("head_ids holds no id of the model's vocabulary")
                    weight = weight.index_select(0, torch.tensor(rows, dtype=torch.long))
                    return weight.float().contiguous(), vocab, rows
    raise KeyError(f"no language-model head ({' or '.join(_HEAD_KEYS)}) in {llm_dir}")


class _Session:
    """The ONNX decoder and its input/output names; `run` is one forward over new ids with the past cache."""

    def __init__(self, model_file: Path, threads: int | None, spinning: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's choice (the physical cores)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads wait for the next op by burning a core: faster alone, but on a CPU shared with the codec
        # (and other streams) they take the cores the codec needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = sorted(
            (n for n in inputs if n.startswith("past_key_values.")), key=lambda n: (int(n.split(".")[1]), n)
        )
        self.present_names = [n.replace("past_key_values", "present") for n in self.past_names]
        self.takes_positions = "position_ids" in inputs
        # The cache's head count and size are symbolic in the graph: the builder writes them to genai_config.json.
        decoder = json.loads((model_file.parent / "genai_config.json").read_text())["model"]["decoder"]
        self.kv_heads, self.head_dim = int(decoder["num_key_value_heads"]), int(decoder["head_size"])
        self.kv_dtype = np.float16 if "float16" in inputs[self.past_names[0]].type else np.float32
        self.output_name = next(
            o.name for o in self.session.get_outputs() if not o.name.startswith("present")
        )

    def empty_cache(self) -> list[np.ndarray]:
        return [np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype) for _ in self.past_names]

    def run(self, ids: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Hidden state of the last new position [hidden] and the present cache."""
        done = int(past[0].shape[2])
        total = done + int(ids.shape[1])
        feeds: dict[str, np.ndarray] = {
            "input_ids": ids,
            "attention_mask": np.ones((1, total), dtype=np.int64),
        }
        if self.takes_positions:
            feeds["position_ids"] = np.arange(done, total, dtype=np.int64)[None, :]
        feeds.update(zip(self.past_names, past, strict=True))
        outputs = self.session.run([self.output_name, *self.present_names], feeds)
        return outputs[0][0, -1], outputs[1:]


class OnnxEngine(TransformersEngine):
    """`LLMEngine` over the ONNX decoder. Build with `from_checkpoint`."""

    name = "onnx"

    def __init__(
        self,
        model: OnnxModel,
        head_weight: torch.Tensor,
        *,
        vocab_size: int,
        head_ids: Sequence[int] | None = None,
        threads: int | None = None,
        spinning: bool = False,
        head_dtype: torch.dtype = torch.float16,
        max_concurrency: int = 8,
        max_pending_tokens: int = 1024,
        stream_interval: int = 1,
    ) -> None:
        self.model = model
        self._session = _Session(model.model_file, threads, spinning)
        self._device = torch.device("cpu")
        self._vocab_size = vocab_size
        # The head's product runs in torch beside the decoder: in float16 it reads half float32's bytes per step. An
        # fp32 build (the reference the quantised ones are measured against) keeps it in float32 whatever is asked.
        dtype = torch.float32 if model.precision == "fp32" else head_dtype
        self._head_weight = head_weight.to(dtype).contiguous()
        self._head_bias = None
        self._head_rows = None
        if head_ids is not None:
            rows = sorted({int(i) for i in head_ids})
            if len(rows) != head_weight.shape[0]:
                raise ValueError(f"{len(rows)} head ids for {head_weight.shape[0]} head rows")
            self._head_rows = torch.tensor(rows, dtype=torch.long)
        elif head_weight.shape[0] != vocab_size:
            raise ValueError(f"a full head has {vocab_size} rows, got {head_weight.shape[0]}")
        self._init_scheduling(max_concurrency, max_pending_tokens, stream_interval)

    @classmethod
    def from_checkpoint(
        cls,
        llm_dir: str | Path,
        precision: Precision = "int8",
        *,
        cache_dir: str | Path | None = None,
        grammar_head: bool = True,
        **kwargs: Any,
    ) -> OnnxEngine:
        """The engine for a checkpoint's `LLM/` folder: its ONNX build (made and cached on first use) and its head."""
        llm_dir = Path(llm_dir)
        model = ensure_onnx_model(llm_dir, precision, cache_dir)
        weight, vocab, rows = load_head(llm_dir, grammar_head_ids_of(llm_dir) if grammar_head else None)
        return cls(model, weight, vocab_size=vocab, head_ids=rows, **kwargs)

    @property
    def precision(self) -> Precision:
        return self.model.precision

    async def sleep(self, level: int = 1) -> None:
        raise NotImplementedError("the ONNX engine runs on the CPU: there is no GPU memory to free")

    def _step(self, input_ids: torch.Tensor, cache: object) -> tuple[torch.Tensor, object]:
        """One forward: float32 logits of the last position over the head's rows, and the new cache."""
        past = cast("list[np.ndarray] | None", cache)
        if past is None:
            past = self._session.empty_cache()
        hidden, present = self._session.run(input_ids.numpy(), past)
        weight = self._head_weight
        assert weight is not None  # set in __init__: this engine always computes its own head
        hidden_t = torch.from_numpy(np.ascontiguousarray(hidden, np.float32)).to(weight.dtype)
        logits = torch.nn.functional.linear(hidden_t, weight).float()
        return logits, present


def engine_from_settings(llm_dir: str | Path, settings: Settings) -> OnnxEngine:
    """The registry's builder (core/llm/__init__.py)."""
    llm = settings.llm
    engine = OnnxEngine.from_checkpoint(
        llm_dir,
        llm.onnx_precision,
        cache_dir=llm.onnx_cache_dir,
        grammar_head=llm.llm_grammar_head,
        threads=llm.onnx_threads,
        spinning=llm.onnx_spinning,
        head_dtype=getattr(torch, llm.onnx_head_dtype),
        max_concurrency=settings.llm.llm_max_concurrency,
        stream_interval=settings.llm.llm_stream_interval,
    )
    logger.info(
        "LLM engine: onnx %s on the CPU (%s threads), built from %s",
        engine.precision,
        llm.onnx_threads or os.cpu_count(),
        engine.model.path,
    )
    return engine


def pick_engine() -> str:
    """The engine scripts/serve runs when TTS_ENGINE is unset: onnx on a machine without a GPU where its packages
    are installed, transformers otherwise (a GPU machine is configured for vLLM explicitly)."""
    if torch.cuda.is_available() or not onnx_runtime_available():
        return "transformers"
    return "onnx"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--pick"]:
        raise SystemExit("usage: python -m core.llm.onnx_engine --pick")
    print(pick_engine())
