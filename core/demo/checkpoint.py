"""Build the demo checkpoint: a tiny model directory with the released Spark-TTS-0.5B layout.

`python -m core.demo.checkpoint OUT_DIR [--seed N]` or `build_demo_checkpoint(out_dir, seed)`.

What it holds (about 50 MB, built in a few seconds, byte-identical for a seed):
- `config.yaml`: the four keys inference reads (docs/reference/spark-tts.md#checkpoint-layout) plus `demo: true` and
  `demo_seed`.
- `LLM/`: a Qwen2 config with the real vocab_size (166000), tied embeddings and head_dim 64 (vLLM's CPU
  backend refuses smaller heads), but hidden 64, one head, two layers; float32 `model.safetensors` with
  the standard HF tensor names and no `lm_head`. The tokenizer has the real id layout: a byte-level
  base vocabulary (byte b -> id b, fillers up to 151642; no merges, so text costs one token per UTF-8
  byte), the 22 Qwen2.5 control tokens at 151643..151664, then the 13,493 Spark tokens in the released order
  (docs/reference/spark-tts.md#token-ids) (added as non-special, matched atomically). eos `<|im_end|>`, pad
  `<|endoftext|>`, no BOS. No `generation_config.json` is written: callers pass sampling explicitly
  (docs/reference/spark-tts.md#sampling).
- `BiCodec/` (both halves, so the demo clones voices) and `16kto48k/`: random weights from `core.demo.random_bicodec`
  / `core.apbwe`; `wav2vec2-large-xlsr-53/`: a tiny random HF Wav2Vec2Model (`core.demo.random_wav2vec2`).
- `voices.json`: demo voices of every kind (see core/voices.py for the format).

The LLM weights are seeded noise arranged so the model follows the Spark output grammar instead of
emitting random ids, so every code path (parser, streaming decode, stop handling) runs on the demo:
- a controllable prompt yields `<|start_acoustic_token|>` pitch speed `<|end_acoustic_token|>`
  `<|start_global_token|>` + exactly 32 globals + `<|end_global_token|><|start_semantic_token|>`,
  then semantic tokens, then `<|im_end|>`; a clone prompt yields `<|start_semantic_token|>`, semantic
  tokens, `<|im_end|>`; a prompt ending in `<|start_global_token|>` yields 32 globals first;
- the number of semantic tokens is about `SEMANTIC_PER_TEXT_TOKEN` x the prompt's text tokens
  (about 3.5 per byte, roughly real speech rate for English), so longer text gives longer audio;
- which semantic / global / pitch value comes next is random (embedding noise + sampling).
How: embeddings carry one-hot "class" and "is-a" features plus noise. Layer 0's attention measures the
ratio of generated semantic tokens to text tokens; its MLP is a lookup "previous token class -> next
class" plus a "stop when the ratio is reached" unit. Layer 1's attention finds the token 32 positions
after `<|start_global_token|>` with a RoPE phase pattern, and its MLP turns global #32 into
`<|end_global_token|>`. The margins are tens of logits, so temperature up to ~1.5, top-k/top-p and
repetition penalty do not break the grammar; the audio is still noise.

Longer than 500 lines because the demo's tokenizer, LLM, codec and voices are built to one id layout and must
agree with each other; one module keeps that agreement in view.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from core import apbwe
from core.demo import random_bicodec
from core.demo.random_wav2vec2 import write_random_wav2vec2
from core.tokens import (
    END_ACOUSTIC,
    END_GLOBAL,
    END_STYLE_LABEL,
    IM_END,
    NUM_GLOBAL_TOKENS,
    QWEN_CONTROL_TOKENS,
    START_ACOUSTIC,
    START_GLOBAL,
    START_SEMANTIC,
    added_tokens,
    global_token,
    semantic_token,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

FORMAT_VERSION = 2  # 2: the BiCodec encode half and wav2vec2-large-xlsr-53/ (voice cloning)
MARKER_FILE = ".demo_build.json"

BASE_VOCAB_SIZE = 151643  # ids below the Qwen control tokens
FIRST_ADDED_ID = BASE_VOCAB_SIZE + len(QWEN_CONTROL_TOKENS)  # 151665
MODEL_VOCAB_SIZE = 166000
HIDDEN = 64
HEAD_DIM = 64
LAYERS = 2
INTERMEDIATE = 128
ROPE_THETA = 1_000_000.0
SEMANTIC_PER_TEXT_TOKEN = 3.5

# Qwen2.5's pre-tokenizer split (how its tokenizer.json cuts text before byte-level BPE).
_QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


# --------------------------------------------------------------------------------------------------------
# tokenizer


def _byte_symbols() -> list[str]:
    """The byte-level alphabet: symbol for byte b (printable bytes map to themselves, others above U+0100)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def build_tokenizer() -> Tokenizer:  # tokenizers is imported lazily: only the builder needs it
    """The demo tokenizer with the released id layout (see module doc)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = {symbol: b for b, symbol in enumerate(_byte_symbols())}
    # Unreachable fillers (no merges produce them) so the control tokens land on their real ids.
    vocab.update({f"<|demo_filler_{i}|>": i for i in range(256, BASE_VOCAB_SIZE)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    for text, special in QWEN_CONTROL_TOKENS:
        tok.add_tokens([AddedToken(text, special=special, normalized=False)])
    tok.add_tokens([AddedToken(text, special=False, normalized=False) for text in added_tokens()])
    expected = FIRST_ADDED_ID + len(added_tokens())
    if tok.get_vocab_size(with_added_tokens=True) != expected:
        raise RuntimeError(
            f"demo tokenizer has {tok.get_vocab_size(with_added_tokens=True)} entries, expected {expected}"
        )
    return tok


def _tokenizer_config() -> dict[str, Any]:
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
        "model_max_length": 131072,
    }


def _demo_vocab() -> dict[str, int]:
    """token string -> id for the named tokens (everything except the byte/filler base vocabulary)."""
    vocab = {text: BASE_VOCAB_SIZE + i for i, (text, _) in enumerate(QWEN_CONTROL_TOKENS)}
    vocab.update({text: FIRST_ADDED_ID + i for i, text in enumerate(added_tokens())})
    return vocab


# --------------------------------------------------------------------------------------------------------
# LLM weights that follow the grammar

# Residual-stream layout (hidden 64). "C" dims are what the output logits match (tied embeddings);
# "I" dims say what the current token is and are invisible to the logits (final norm weight 0).
_CLASSES = ("SEM", "GLOB", "PITCH", "SPEED", "START_AC", "END_AC", "START_G", "END_G", "START_SEM", "IM_END")
_C = {name: i for i, name in enumerate(_CLASSES)}  # 0..9
_ONE = 10  # logit bias: tokens never generated sit at -1 here; layer 1 adds a constant
_FLAGS = ("TEXT", "END_STYLE", *_CLASSES)
_I = {name: 11 + i for i, name in enumerate(_FLAGS)}  # 11..22
_R = 23  # (text tokens - semantic tokens / ratio) / count, from layer 0's attention
_CNT = 24  # ~c_cnt exactly at global #32, ~0 elsewhere, from layer 1's attention
_NOISE = slice(25, HIDDEN)
_EMB_NORM = 2.0

# "previous class -> next class" lookup (layer 0 MLP).
_NEXT = {
    "END_STYLE": "START_AC",
    "START_AC": "PITCH",
    "PITCH": "SPEED",
    "SPEED": "END_AC",
    "END_AC": "START_G",
    "START_G": "GLOB",
    "GLOB": "GLOB",
    "END_G": "START_SEM",
    "START_SEM": "SEM",
    "SEM": "SEM",
    "IM_END": "IM_END",
}
# Counter head amplitudes (score units) per RoPE pair 0..9: sum_i A_i (1 - cos(w_i d)) >= 34 for
# d = 1..31 (found with a small LP), so global #32 scores 20 and globals #1..#31 score <= -14.
_COUNT_AMPLITUDES = tuple(34.0 * a for a in (1.75, 0.78, 0.38, 0.17, 0.14, 0.09, 0.045, 0.02, 0.009, 0.005))
_COUNT_PEAK = 20.0
_RATIO_SCORE = 30.0  # text and semantic tokens vs every other key: e^30 makes the rest negligible
_K = 8.0  # size of a "next class" write into the residual stream
_S = 0.5  # ratio signal scale
_STOP_GAIN = 600.0  # ratio-crossing sharpness (~4 tokens from crossing to stop at 200 text tokens)
_C_CNT, _C_ONE = 4.0, 3.0
_MIX = 3.0  # rotated noise added before a value is chosen
_W_CLASS, _W_ONE, _W_NOISE = 5.0, 3.0, 2.0  # final norm weights (noise: alternating sign)


def _token_classes() -> tuple[dict[int, str], list[int]]:
    """id -> class for the generated tokens, and the flag-only ids (text; end_style_label)."""
    vocab = _demo_vocab()
    classes: dict[int, str] = {}
    for g in range(4096):
        classes[vocab[global_token(g)]] = "GLOB"
    for s in range(8192):
        classes[vocab[semantic_token(s)]] = "SEM"
    for v in range(1001):
        classes[vocab[f"<|pitch_value_{v}|>"]] = "PITCH"
    for v in range(11):
        classes[vocab[f"<|speed_value_{v}|>"]] = "SPEED"
    for text, name in (
        (START_ACOUSTIC, "START_AC"),
        (END_ACOUSTIC, "END_AC"),
        (START_GLOBAL, "START_G"),
        (END_GLOBAL, "END_G"),
        (START_SEMANTIC, "START_SEM"),
        (IM_END, "IM_END"),
    ):
        classes[vocab[text]] = name
    return classes, [vocab[END_STYLE_LABEL]]


def _embedding(seed: int) -> torch.Tensor:
    classes, end_style = _token_classes()
    structured = np.zeros((MODEL_VOCAB_SIZE, HIDDEN), dtype=np.float64)
    structured[:, _ONE] = -1.0  # default: never generated
    structured[:BASE_VOCAB_SIZE, _I["TEXT"]] = 1.0
    for token_id in end_style:
        structured[token_id, _I["END_STYLE"]] = 1.0
    ids = np.fromiter(classes.keys(), dtype=np.int64)
    names = list(classes.values())
    structured[ids, _ONE] = 0.0
    structured[ids, [_C[n] for n in names]] = 1.0
    structured[ids, [_I[n] for n in names]] = 1.0
    # Every row has the same norm, so layer 0 sees identical scales for every token.
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A7C]))
    noise = rng.standard_normal((MODEL_VOCAB_SIZE, _NOISE.stop - _NOISE.start))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    room = np.sqrt(_EMB_NORM**2 - (structured**2).sum(axis=1, keepdims=True))
    structured[:, _NOISE] = noise * room
    return torch.from_numpy(structured.astype(np.float32))


def _rope_freq(pair: int) -> float:
    freq: float = ROPE_THETA ** (-2 * pair / HEAD_DIM)
    return freq


def _grammar_weights(seed: int) -> dict[str, torch.Tensor]:
    d, h, f = HIDDEN, HEAD_DIM, INTERMEDIATE
    half = h // 2
    w: dict[str, torch.Tensor] = {"model.embed_tokens.weight": _embedding(seed)}

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(*shape, dtype=torch.float64)

    layers = [
        {
            "q_w": zeros(h, d), "q_b": zeros(h), "k_w": zeros(h, d), "k_b": zeros(h), "v_w": zeros(h, d),
            "v_b": zeros(h), "o_w": zeros(d, h), "gate": zeros(f, d), "up": zeros(f, d), "down": zeros(d, f),
        }
        for _ in range(LAYERS)
    ]  # fmt: skip
    flag0 = math.sqrt(d) / _EMB_NORM  # an "is-a" flag after layer 0's RMSNorm (all rows have norm 2)

    # Layer 0 attention: uniform over text + semantic keys (RoPE pair 31 barely turns over 32k positions);
    # value +S per text token, -S/ratio per semantic token -> R crosses zero at the target length.
    l0 = layers[0]
    amp = math.sqrt(_RATIO_SCORE * math.sqrt(h))
    l0["q_b"][half - 1] = amp
    l0["k_w"][half - 1, _I["TEXT"]] = amp / flag0
    l0["k_w"][half - 1, _I["SEM"]] = amp / flag0
    l0["v_w"][0, _I["TEXT"]] = _S / flag0
    l0["v_w"][0, _I["SEM"]] = -_S / (SEMANTIC_PER_TEXT_TOKEN * flag0)
    l0["o_w"][_R, 0] = 1.0

    # Layer 0 MLP: unit = silu(g * flag) * flag -> writes K on the next class; plus the stop unit.
    gain = 3.0
    for unit, (prev, nxt) in enumerate(_NEXT.items()):
        l0["gate"][unit, _I[prev]] = gain
        l0["up"][unit, _I[prev]] = 1.0
        l0["down"][_C[nxt], unit] = _K / (gain * flag0 * flag0)
    stop = len(_NEXT)
    l0["gate"][stop, _R] = -_STOP_GAIN
    l0["up"][stop, _I["SEM"]] = 1.0
    l0["down"][_C["IM_END"], stop] = _K / (2 * flag0)
    l0["down"][_C["SEM"], stop] = -_K / (2 * flag0)

    # Layer 1 attention: key only on <|start_global_token|>, with per-pair phases 32*w_i so the score
    # sum_i A_i cos(w_i (delta - 32)) - B peaks at delta = 32; pair 31 (nearly constant) carries -B.
    l1 = layers[1]
    k_write = _K * (math.sqrt(d) / math.hypot(_EMB_NORM, _S)) ** 2 / flag0**2  # layer 0's write there
    flag1 = math.sqrt(d) / math.sqrt(_EMB_NORM**2 + _S**2 + k_write**2)
    scale = math.sqrt(h)
    pairs = [(i, a) for i, a in enumerate(_COUNT_AMPLITUDES)]
    pairs.append((half - 1, -(sum(_COUNT_AMPLITUDES) - _COUNT_PEAK)))
    for pair, amplitude in pairs:
        qk = math.sqrt(abs(amplitude) * scale)
        phase = NUM_GLOBAL_TOKENS * _rope_freq(pair)
        sign = 1.0 if amplitude >= 0 else -1.0
        l1["q_b"][pair] = qk
        l1["k_w"][pair, _I["START_G"]] = sign * qk * math.cos(phase) / flag1
        l1["k_w"][pair + half, _I["START_G"]] = sign * qk * math.sin(phase) / flag1
    l1["v_w"][0, _I["START_G"]] = _C_CNT / flag1
    l1["v_b"][1] = _C_ONE  # softmax weights sum to 1: a constant for every position
    l1["o_w"][_CNT, 0] = 1.0
    l1["o_w"][_ONE, 1] = 1.0

    # Layer 1 MLP: a global token with the counter firing becomes <|end_global_token|>.
    base = _EMB_NORM**2 + _S**2 + k_write**2 + _C_ONE**2
    glob_idle = math.sqrt(d / base)
    glob_fire, cnt_fire = math.sqrt(d / (base + _C_CNT**2)), _C_CNT * math.sqrt(d / (base + _C_CNT**2))
    g2 = 4.0
    threshold = cnt_fire / 2
    l1["gate"][0, _CNT] = g2
    l1["gate"][0, _I["GLOB"]] = -g2 * threshold / ((glob_idle + glob_fire) / 2)
    l1["up"][0, _I["GLOB"]] = 1.0
    pre_fire = g2 * cnt_fire + l1["gate"][0, _I["GLOB"]].item() * glob_fire
    out_fire = pre_fire / (1 + math.exp(-pre_fire)) * glob_fire
    l1["down"][_C["END_G"], 0] = 1.5 * k_write / out_fire
    l1["down"][_C["GLOB"], 0] = -1.5 * k_write / out_fire

    # Layer 1 MLP, units 1..n: add MIX x (random rotation of the token's noise) before a value is chosen.
    # The logits compare that with each candidate's noise (final weights of alternating sign), so the
    # next value is unrelated to the current one: no self-repeats, no A-B-A cycles (a symmetric form has them).
    n_noise = _NOISE.stop - _NOISE.start
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0D1C]))
    rotation, _ = np.linalg.qr(rng.standard_normal((n_noise, n_noise)))
    choosers = [_I[n] for n, nxt in _NEXT.items() if nxt in ("SEM", "GLOB", "PITCH", "SPEED")]
    units = slice(1, 1 + n_noise)
    for flag in choosers:
        l1["gate"][units, flag] = gain
    l1["up"][units, _NOISE] = torch.from_numpy(rotation)
    l1["down"][_NOISE, units] = torch.eye(n_noise, dtype=torch.float64) * _MIX / (gain * flag1 * flag1)

    for i, layer in enumerate(layers):
        prefix = f"model.layers.{i}"
        for name, key in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
            w[f"{prefix}.self_attn.{name}.weight"] = layer[f"{key}_w"]
            w[f"{prefix}.self_attn.{name}.bias"] = layer[f"{key}_b"]
        w[f"{prefix}.self_attn.o_proj.weight"] = layer["o_w"]
        w[f"{prefix}.mlp.gate_proj.weight"] = layer["gate"]
        w[f"{prefix}.mlp.up_proj.weight"] = layer["up"]
        w[f"{prefix}.mlp.down_proj.weight"] = layer["down"]
        w[f"{prefix}.input_layernorm.weight"] = torch.ones(d)
        w[f"{prefix}.post_attention_layernorm.weight"] = torch.ones(d)
    final = torch.zeros(d)
    final[: len(_CLASSES)] = _W_CLASS
    final[_ONE] = _W_ONE
    final[_NOISE] = torch.tensor([_W_NOISE * (-1) ** k for k in range(_NOISE.stop - _NOISE.start)])
    w["model.norm.weight"] = final
    return {name: t.to(torch.float32).contiguous() for name, t in w.items()}


def _llm_config() -> dict[str, Any]:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HIDDEN // HEAD_DIM,
        "num_key_value_heads": HIDDEN // HEAD_DIM,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "vocab_size": MODEL_VOCAB_SIZE,
        "max_position_embeddings": 32768,
        "rope_theta": ROPE_THETA,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "max_window_layers": LAYERS,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "torch_dtype": "float32",
    }


# --------------------------------------------------------------------------------------------------------
# voices and the directory


def demo_voices(seed: int) -> dict[str, Any]:
    """voices.json content: style voices, one fixed-voice (32 global tokens) and one prompt-prefix voice."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7015]))
    fixed = [int(x) for x in rng.integers(0, 4096, size=NUM_GLOBAL_TOKENS)]
    return {
        "format": 1,
        "default": "default",
        "voices": [
            {
                "id": "default",
                "name": "Default",
                "kind": "style",
                "aliases": ["female", "alloy", "nova"],
                "gender": "female",
                "pitch": "moderate",
                "speed": "moderate",
                "description": "Controllable prompt: female, moderate pitch and speed.",
            },
            {
                "id": "male",
                "name": "Male",
                "kind": "style",
                "aliases": ["echo", "onyx"],
                "gender": "male",
                "pitch": "moderate",
                "speed": "moderate",
                "description": "Controllable prompt: male, moderate pitch and speed.",
            },
            {
                "id": "female_bright",
                "name": "Female, high pitch, fast",
                "kind": "style",
                "aliases": ["shimmer"],
                "gender": "female",
                "pitch": "high",
                "speed": "high",
                "description": "Controllable prompt: female, high pitch, high speed.",
            },
            {
                "id": "male_deep",
                "name": "Male, low pitch, slow",
                "kind": "style",
                "aliases": ["fable"],
                "gender": "male",
                "pitch": "very_low",
                "speed": "low",
                "description": "Controllable prompt: male, very low pitch, low speed.",
            },
            {
                "id": "fixed",
                "name": "Fixed voice (32 global tokens)",
                "kind": "global_tokens",
                "aliases": ["clone_demo"],
                "global_tokens": fixed,
                "description": "Clone prompt with stored global tokens: the same voice on every request.",
            },
            {
                "id": "narrator",
                "name": "Narrator",
                "kind": "prompt_prefix",
                "aliases": ["speaker_3"],
                "prompt_prefix": "<|speaker_3|>",
                "prefix_placement": "content",
                "description": "Fine-tuned-model style: a literal speaker prefix in the content; the model "
                "then generates the 32 global tokens itself.",
            },
        ],
    }


def _root_config(seed: int) -> dict[str, Any]:
    return {
        "sample_rate": 16000,
        "ref_segment_duration": 6,
        "latent_hop_length": 320,
        "volume_normalize": True,
        "demo": True,
        "demo_seed": int(seed),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_tree(root: Path, seed: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(_root_config(seed), sort_keys=False), encoding="utf-8")
    llm = root / "LLM"
    llm.mkdir()
    _write_json(llm / "config.json", _llm_config())
    save_file(_grammar_weights(seed), str(llm / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(llm / "model.safetensors", 0o644)  # safetensors creates it owner-only
    (llm / "tokenizer.json").write_text(build_tokenizer().to_str(pretty=False), encoding="utf-8")
    _write_json(llm / "tokenizer_config.json", _tokenizer_config())
    _write_json(llm / "special_tokens_map.json", {"eos_token": IM_END, "pad_token": "<|endoftext|>"})
    random_bicodec.write_random_checkpoint(root / "BiCodec", random_bicodec.DEMO_CONFIG, seed)
    write_random_wav2vec2(
        root / "wav2vec2-large-xlsr-53", random_bicodec.DEMO_CONFIG["encoder"]["input_channels"], seed
    )
    apbwe.write_random_checkpoint(root / "16kto48k", seed=seed)
    _write_json(root / "voices.json", demo_voices(seed))


def _files(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER_FILE
    }


def is_complete_build(out_dir: Path | str, seed: int) -> bool:
    """True when `out_dir` holds a finished build of this format version for `seed`."""
    marker = Path(out_dir) / MARKER_FILE
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("format_version") != FORMAT_VERSION or info.get("seed") != seed:
        return False
    files = info.get("files", {})
    return bool(files) and all(
        (Path(out_dir) / rel).is_file() and (Path(out_dir) / rel).stat().st_size == size
        for rel, size in files.items()
    )


@contextlib.contextmanager
def _build_lock(out_dir: Path) -> Iterator[None]:
    """Serialise builders of one directory (several workers or test processes may start at once)."""
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_demo_checkpoint(out_dir: Path | str, seed: int = 0) -> Path:
    """Build (or reuse) the demo checkpoint in `out_dir`; returns the directory.

    Idempotent: a finished build of the same seed and format is returned at once. A previous demo build
    (other seed or format) is replaced; any other non-empty directory is refused, never deleted.
    """
    out_dir = Path(out_dir).absolute()
    if is_complete_build(out_dir, seed):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(out_dir):
        if is_complete_build(out_dir, seed):
            return out_dir
        if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER_FILE).exists():
            raise FileExistsError(
                f"{out_dir}: exists and is not a demo checkpoint; refusing to overwrite it "
                "(point the demo directory somewhere else, or empty it)"
            )
        tmp = out_dir.parent / f".{out_dir.name}.build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _write_tree(tmp, seed)
            _write_json(
                tmp / MARKER_FILE, {"format_version": FORMAT_VERSION, "seed": seed, "files": _files(tmp)}
            )
            if out_dir.exists():
                old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
                os.replace(out_dir, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the tiny random-weight Spark-TTS demo checkpoint.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    path = build_demo_checkpoint(args.out_dir, seed=args.seed)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(
        f"demo checkpoint (seed {args.seed}) at {path}: {size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
