"""The `ctc` method: CTC forced alignment with a wav2vec2-CTC checkpoint (Hugging Face `Wav2Vec2ForCTC` layout:
config.json, weights, vocab.json, optionally preprocessor_config.json).

The Viterbi is our own (`forced_path`, ~30 lines of numpy): torchaudio's `forced_align` needs a torchaudio built for
the pinned torch 2.13 and the package index has none (torchaudio 2.11 pins torch 2.11), and `ctc-forced-aligner` /
`ctc-segmentation` are not on it either. The model runs batched on the device (one padded forward pass for every
piece in a batch); the path search runs on the CPU per piece, O(frames x tokens).

Text becomes the model's characters (lower- or upper-cased to match the vocabulary; characters it does not know are
left out: romanise first for a Latin-only model). A word with no known character gets a zero-length span where it
falls. Each word's `score` is the mean log-probability of its frames on the best path (0 best; core/guards reads it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.align.estimate import SAMPLE_RATE, estimate_alignment
from core.align.types import Alignment, WordSpan

if TYPE_CHECKING:  # transformers is imported when a model is loaded, not with this module
    from transformers import Wav2Vec2ForCTC


class CtcModelError(ValueError):
    """A checkpoint directory that is not a usable Wav2Vec2ForCTC."""


def model_dir_for(setting: str | None, language: str) -> Path:
    """The checkpoint for `language` from a TTS_ALIGN_CTC_MODEL value: 'DIR' or 'en=DIR,zh=DIR'."""
    if not setting:
        raise CtcModelError("the ctc method needs a model directory (--model DIR or TTS_ALIGN_CTC_MODEL)")
    if "=" not in setting:
        return Path(setting)
    table = dict(part.split("=", 1) for part in setting.split(",") if "=" in part)
    if language not in table:
        raise CtcModelError(f"no ctc model for language {language!r} (have: {', '.join(sorted(table))})")
    return Path(table[language])


def load_aligners(setting: str | None, device: str = "cpu") -> dict[str, CtcAligner]:
    """Every model a TTS_ALIGN_CTC_MODEL value names, by language ("*": a plain DIR, for every language)."""
    if not setting:
        raise CtcModelError("TTS_ALIGN_METHOD=ctc needs TTS_ALIGN_CTC_MODEL (a Wav2Vec2ForCTC directory)")
    if "=" not in setting:
        return {"*": CtcAligner.load(setting, device)}
    return {
        language: CtcAligner.load(model_dir_for(setting, language), device)
        for language in (part.split("=", 1)[0].strip() for part in setting.split(",") if "=" in part)
    }


def forced_path(log_probs: np.ndarray, targets: list[int], blank: int) -> tuple[np.ndarray, float]:
    """Best CTC path of `targets` through `log_probs` (frames x vocabulary): for each frame, the index of the target
    it emits (-1: blank), and the path's total log-probability. Needs frames >= len(targets) + repeats."""
    frames = log_probs.shape[0]
    states = 2 * len(targets) + 1
    labels = np.full(states, blank)
    labels[1::2] = targets
    # A state may skip the blank before it when its label differs from the one two states back.
    skip = np.zeros(states, bool)
    skip[3::2] = np.asarray(targets[1:]) != np.asarray(targets[:-1]) if len(targets) > 1 else skip[3::2]
    skip[1] = False
    neg = -np.inf
    score = np.full(states, neg)
    score[0] = log_probs[0, blank]
    if states > 1:
        score[1] = log_probs[0, labels[1]]
    back = np.zeros((frames, states), np.int8)  # 0 stay, 1 from previous state, 2 skip one
    for t in range(1, frames):
        stay = score
        step = np.concatenate(([neg], score[:-1]))
        jump = np.where(skip, np.concatenate(([neg, neg], score[:-2])), neg)
        choice = np.argmax(np.stack((stay, step, jump)), axis=0)
        best = np.maximum(np.maximum(stay, step), jump)
        back[t] = choice
        score = best + log_probs[t, labels]
    end = states - 1 if states == 1 or score[-1] >= score[-2] else states - 2
    total = float(score[end])
    if not np.isfinite(total):
        raise ValueError("the audio is too short for the text (fewer frames than characters)")
    path = np.empty(frames, np.int64)
    state = end
    for t in range(frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    emits = np.where(path % 2 == 1, (path - 1) // 2, -1)
    return emits, total


@dataclass(frozen=True)
class _Vocab:
    ids: dict[str, int]
    blank: int
    lower: bool

    def encode(self, word: str) -> list[int]:
        text = word.lower() if self.lower else word.upper()
        return [self.ids[ch] for ch in text if ch in self.ids and self.ids[ch] != self.blank]


def _now(forward: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
    return forward()


class CtcAligner:
    """A loaded Wav2Vec2ForCTC; `align_batch` is safe from several threads (the model is only read)."""

    def __init__(
        self, model: Wav2Vec2ForCTC, vocab: _Vocab, *, device: str = "cpu", normalize: bool = True
    ) -> None:
        self.model = model
        self.vocab = vocab
        self.device = device
        self.normalize = normalize
        self._lock = threading.Lock()  # one forward pass at a time per model: batches are the unit of work
        # How a forward pass reaches the device: at once here (offline tools); while serving, the runtime hands it to
        # the codec scheduler, the device's one owner (`run_forward` is called from a worker thread).
        self.run_forward: Callable[[Callable[[], list[np.ndarray]]], list[np.ndarray]] = _now

    @classmethod
    def load(cls, directory: Path | str, device: str = "cpu") -> CtcAligner:
        import torch
        from transformers import Wav2Vec2ForCTC

        path = Path(directory)
        vocab_file = path / "vocab.json"
        if not (path / "config.json").is_file() or not vocab_file.is_file():
            raise CtcModelError(
                f"{path} is not a Wav2Vec2ForCTC directory (config.json and vocab.json needed)"
            )
        try:
            # transformers types `to` on PreTrainedModel as taking the model again: its own stubs are wrong here.
            model = Wav2Vec2ForCTC.from_pretrained(str(path)).to(device).eval()  # type: ignore[arg-type]
            ids = json.loads(vocab_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CtcModelError(f"cannot load the ctc model from {path}: {exc}") from exc
        if isinstance(next(iter(ids.values()), None), dict):  # a per-language vocab: take its only entry
            ids = next(iter(ids.values()))
        blank = int(
            model.config.pad_token_id if model.config.pad_token_id is not None else ids.get("<pad>", 0)
        )
        letters = [k for k in ids if len(k) == 1 and k.isalpha()]
        lower = sum(k.islower() for k in letters) >= sum(k.isupper() for k in letters)
        if "|" in ids:
            ids = {(" " if k == "|" else k): v for k, v in ids.items()}
        normalize = True
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            normalize = bool(json.loads(pre.read_text(encoding="utf-8")).get("do_normalize", True))
        torch.set_grad_enabled(False)
        return cls(model, _Vocab(ids, blank, lower), device=device, normalize=normalize)

    def emissions(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Log-probabilities (frames x vocabulary) per piece, from one padded forward pass."""
        import torch

        lengths = [len(a) for a in audios]
        batch = np.zeros((len(audios), max(lengths)), np.float32)
        mask = np.zeros_like(batch, dtype=np.int64)
        for i, audio in enumerate(audios):
            x = audio.astype(np.float32)
            if self.normalize and len(x):
                x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
            batch[i, : len(x)] = x
            mask[i, : len(x)] = 1

        def forward() -> list[np.ndarray]:
            with self._lock, torch.inference_mode():
                logits = self.model(
                    torch.from_numpy(batch).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                ).logits
                log_probs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
                # transformers annotates the lengths as LongTensor, a type torch.tensor's stubs never return.
                frames = self.model._get_feat_extract_output_lengths(torch.tensor(lengths)).tolist()  # type: ignore[arg-type]
            return [log_probs[i, : int(n)] for i, n in enumerate(frames)]

        return self.run_forward(forward)

    def align_batch(self, items: list[tuple[np.ndarray, list[str]]]) -> list[Alignment]:
        """Each (16 kHz audio, words) aligned; the model sees the whole batch at once."""
        emissions = self.emissions([audio for audio, _ in items])
        out = []
        for log_probs, (audio, words) in zip(emissions, items, strict=True):
            try:
                out.append(
                    align_emissions(
                        log_probs, words, self.vocab.encode, self.vocab.blank, len(audio) / SAMPLE_RATE
                    )
                )
            except ValueError:  # more characters than frames: no CTC path exists; place the words by estimate
                out.append(estimate_alignment(audio, words))
        return out


def align_emissions(
    log_probs: np.ndarray, words: list[str], encode: Callable[[str], list[int]], blank: int, duration: float
) -> Alignment:
    """Word spans from emissions: the forced path's frames of each word's characters, in seconds."""
    tokens = [encode(w) for w in words]
    flat = [t for word in tokens for t in word]
    frames = log_probs.shape[0]
    if not flat or frames == 0:
        return Alignment(tuple(WordSpan(w, 0.0, 0.0) for w in words), "ctc", duration)
    emits, _ = forced_path(log_probs, flat, blank)
    seconds = duration / frames
    owner = np.repeat(np.arange(len(words)), [len(t) for t in tokens])  # target index -> word index
    spans: list[WordSpan] = []
    last_end = 0.0
    for index, word in enumerate(words):
        hit = np.flatnonzero((emits >= 0) & (owner[np.maximum(emits, 0)] == index))
        if not len(hit):
            spans.append(WordSpan(word, round(last_end, 3), round(last_end, 3)))
            continue
        first, last = int(hit[0]), int(hit[-1]) + 1
        score = float(np.mean(log_probs[hit, np.asarray(flat)[emits[hit]]]))
        start, end = max(first * seconds, last_end), min(last * seconds, duration)
        spans.append(WordSpan(word, round(start, 3), round(max(start, end), 3), round(score, 4)))
        last_end = max(start, end)
    return Alignment(tuple(spans), "ctc", duration)
