"""The ONNX form of the Spark LLM for the CPU engine (core/llm/onnx_engine.py): built once from the released layout
and kept beside the checkpoint, with the digest of what it was made from.

The build is ONNX Runtime GenAI's model builder (`python -m onnxruntime_genai.models.builder`), run in a child
process on the checkpoint's `LLM/` folder (an HF Qwen2 folder with its tokenizer): weight-only quantised MatMuls
(MatMulNBits, int4 or int8 blocks of 32) and fused attention with a KV cache, without the language-model head
(`exclude_lm_head`): the engine computes the head itself from the checkpoint's float32 rows, restricted to the
grammar's ids like the transformers engine, so the head costs no quantisation error and no rows nobody reads.

Layout: `<cache>/<precision>/model.onnx` (+ `model.onnx.data`) and `source.json`, which records every checkpoint
file's size, modification time and sha256. A file whose size and time are unchanged is trusted without hashing
(a start stays fast on a slow disk); any other change is hashed, and a different digest rebuilds. The build writes
into a temporary folder beside and renames it into place, under a lock, so two processes never build twice or read
half a build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Precision = Literal["int4", "int8", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("int4", "int8", "fp32")
MANIFEST = "source.json"
MODEL_FILE = "model.onnx"
# Bump when the build's options change, so caches made with the old ones rebuild.
BUILD_VERSION = 2
# Weight-only quantisation blocks: 32 weights share a scale (the builder's default and its most accurate size).
BLOCK_SIZE = 32
_HASH_CHUNK = 1 << 22


class ConversionError(RuntimeError):
    """The ONNX build failed or its package is missing; the message says which and what to install."""


@dataclass(frozen=True)
class OnnxModel:
    """A built model: its folder, the precision and the checkpoint digest it was made from."""

    path: Path
    precision: Precision
    digest: str

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE


def default_cache_dir(llm_dir: Path) -> Path:
    """Beside the checkpoint's LLM folder: `<model_dir>/LLM-onnx`."""
    return llm_dir.parent / f"{llm_dir.name}-onnx"


def _source_files(llm_dir: Path) -> list[Path]:
    """Every file the build reads: the LLM folder's regular files (config, weights, tokenizer), sorted by name."""
    files = sorted(p for p in llm_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not any(p.suffix == ".safetensors" or p.name.endswith(".bin") for p in files):
        raise ConversionError(f"{llm_dir} holds no weights (*.safetensors): not an HF checkpoint folder")
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_digest(
    llm_dir: Path, known: dict[str, dict[str, object]] | None = None
) -> tuple[str, dict[str, dict[str, object]]]:
    """The checkpoint's digest and per-file record. A file whose size and mtime match `known` reuses its hash."""
    known = known or {}
    files: dict[str, dict[str, object]] = {}
    total = hashlib.sha256()
    for path in _source_files(llm_dir):
        stat = path.stat()
        before = known.get(path.name, {})
        if (
            before.get("size") == stat.st_size
            and before.get("mtime_ns") == stat.st_mtime_ns
            and before.get("sha256")
        ):
            sha = str(before["sha256"])
        else:
            sha = _sha256(path)
        files[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
        total.update(f"{path.name}\0{sha}\n".encode())
    return total.hexdigest(), files


def _read_manifest(folder: Path) -> dict[str, object] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def cached_model(llm_dir: Path, precision: Precision, cache_dir: Path | None = None) -> OnnxModel | None:
    """The cached build for this checkpoint and precision, or None when it is missing or stale."""
    folder = (cache_dir or default_cache_dir(llm_dir)) / precision
    manifest = _read_manifest(folder)
    if (
        manifest is None
        or manifest.get("build_version") != BUILD_VERSION
        or not (folder / MODEL_FILE).is_file()
    ):
        return None
    known = manifest.get("files")
    digest, _ = source_digest(llm_dir, known if isinstance(known, dict) else None)
    if manifest.get("digest") != digest:
        return None
    return OnnxModel(folder, precision, digest)


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def builder_command(llm_dir: Path, out: Path, precision: Precision, hf_cache: Path) -> list[str]:
    """The model builder's command line (one child process: its memory is freed when it ends)."""
    options = ["exclude_lm_head=true"]
    if precision != "fp32":
        # Blocks of 32 weights per scale; activations quantised to int8 per block for the product (accuracy level 4),
        # which runs ONNX Runtime's integer kernels (AVX2/AVX-512 VNNI, arm64 dot products): with float32 activations
        # (level 1) the weights are widened to float32 at every step, and a step costs several times as much.
        options += [f"block_size={BLOCK_SIZE}", "accuracy_level=4"]
    return [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(llm_dir),
        "-o",
        str(out),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(hf_cache),
        "--extra_options",
        *options,
    ]


def ensure_onnx_model(
    llm_dir: str | Path, precision: Precision, cache_dir: str | Path | None = None
) -> OnnxModel:
    """The ONNX build of `llm_dir` at `precision`: the cached one when its digest matches, else built now (about a
    minute for the released 0.5B model) and cached."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown ONNX precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
    llm_dir = Path(llm_dir).resolve()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(llm_dir)
    found = cached_model(llm_dir, precision, cache)
    if found is not None:
        return found
    try:
        import onnxruntime_genai  # noqa: F401  (the builder's package)
    except ImportError as exc:
        raise ConversionError(
            "the ONNX engine's conversion needs onnxruntime-genai: pip install '.[cpu]'"
        ) from exc
    with _locked(cache):
        found = cached_model(llm_dir, precision, cache)  # another process may have built it meanwhile
        if found is not None:
            return found
        digest, files = source_digest(llm_dir)
        started = time.perf_counter()
        logger.info(
            "building the ONNX %s LLM from %s into %s (once per checkpoint)", precision, llm_dir, cache
        )
        with tempfile.TemporaryDirectory(prefix=f".{precision}-", dir=cache) as tmp:
            out = Path(tmp) / "model"
            result = subprocess.run(
                builder_command(llm_dir, out, precision, Path(tmp) / "hf-cache"),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0 or not (out / MODEL_FILE).is_file():
                tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
                raise ConversionError(f"the ONNX {precision} build of {llm_dir} failed:\n" + "\n".join(tail))
            manifest = {
                "build_version": BUILD_VERSION,
                "precision": precision,
                "digest": digest,
                "files": files,
                "builder": _builder_version(),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            target = cache / precision
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
        logger.info("ONNX %s LLM built in %.0f s", precision, time.perf_counter() - started)
        return OnnxModel(target, precision, digest)


def _builder_version() -> str:
    try:
        from importlib.metadata import version

        return f"onnxruntime-genai {version('onnxruntime-genai')}"
    except Exception:  # noqa: BLE001 - informational only
        return "onnxruntime-genai"


def main() -> None:
    """`python -m core.llm.onnx_convert LLM_DIR [--precision int4] [--cache DIR]`: build (or find) and print the path."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Build the CPU engine's ONNX LLM from a checkpoint's LLM folder."
    )
    parser.add_argument("llm_dir", type=Path)
    parser.add_argument("--precision", choices=PRECISIONS, default="int8")
    parser.add_argument("--cache", type=Path, default=None, help="default: <model_dir>/LLM-onnx beside LLM/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_onnx_model(args.llm_dir, args.precision, args.cache).path)


if __name__ == "__main__":
    main()
