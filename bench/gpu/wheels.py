"""The service's Python packages that the lent GPU image lacks, downloaded as wheels into `.whl/` to carry there.

    .venv/bin/python bench/gpu/wheels.py            # download into .whl/ (ignored via .git/info/exclude)
    .venv/bin/python bench/gpu/wheels.py --list     # only print name==version, one a line

Which packages: every distribution the service loads when it serves, as bench/gpu/record_packages.py recorded it
from a real run (its warm-up and one request of each kind a user sends; committed in `served_packages.json`), minus
what the lent image already has (`GPU_IMAGE`, the device tool's KINDS.md list). Versions are this venv's, as cp312
manylinux wheels (the lent machine runs Python 3.12). The lent image's own torch/numpy/transformers are kept: the
service's ranges accept them. The total must stay well inside the 64 MiB the device tool carries.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "bench" / "gpu" / "served_packages.json"  # written by bench/gpu/record_packages.py
# The lent image's Python packages: the device tool's KINDS.md, "Python packages already there", copied as it is (all
# of them, not only what the service uses, so a test can compare the two: tests/unit/bench/gpu/test_gpu_wheels.py). To refresh:
# paste KINDS.md's list here (one name per entry, as written there), then rerun this script.
GPU_IMAGE = frozenset(
    {
        "absl-py",
        "accelerate",
        "aiofiles",
        "aiohappyeyeballs",
        "aiohttp",
        "aiosignal",
        "annotated-doc",
        "anyio",
        "attrs",
        "botorch",
        "build",
        "certifi",
        "charset-normalizer",
        "chex",
        "click",
        "cloudpickle",
        "cmake",
        "colorama",
        "contourpy",
        "coverage",
        "cuda-bindings",
        "cuda-core",
        "cuda-pathfinder",
        "cuda-toolkit",
        "cupy-cuda13x",
        "cycler",
        "cython",
        "diffrax",
        "e3nn",
        "einops",
        "equinox",
        "etils",
        "execnet",
        "filelock",
        "flatbuffers",
        "flax",
        "fonttools",
        "formulaic",
        "frozenlist",
        "fsspec",
        "gpytorch",
        "grpcio",
        "h11",
        "h5py",
        "hf-xet",
        "httpcore",
        "httpx",
        "huggingface-hub",
        "humanize",
        "hypothesis",
        "idna",
        "imageio",
        "iniconfig",
        "interface-meta",
        "jax",
        "jax-cuda13-pjrt",
        "jax-cuda13-plugin",
        "jaxlib",
        "jaxtyping",
        "jinja2",
        "joblib",
        "kiwisolver",
        "lazy-loader",
        "lightning",
        "lightning-utilities",
        "linear-operator",
        "lineax",
        "llvmlite",
        "lxml",
        "markdown",
        "markdown-it-py",
        "markupsafe",
        "matplotlib",
        "mdurl",
        "meson",
        "ml-dtypes",
        "mpi4py",
        "mpmath",
        "msgpack",
        "multidict",
        "multipledispatch",
        "mypy-extensions",
        "nanobind",
        "narwhals",
        "networkx",
        "ninja",
        "numba",
        "numba-cuda",
        "numpy",
        "numpyro",
        "nvidia-cublas",
        "nvidia-cuda-cupti",
        "nvidia-cuda-nvrtc",
        "nvidia-cuda-runtime",
        "nvidia-cudnn-cu13",
        "nvidia-cufft",
        "nvidia-cufile",
        "nvidia-curand",
        "nvidia-cusolver",
        "nvidia-cusparse",
        "nvidia-cusparselt-cu13",
        "nvidia-ml-py",
        "nvidia-nccl-cu13",
        "nvidia-nvjitlink",
        "nvidia-nvshmem-cu13",
        "nvidia-nvtx",
        "onnx",
        "onnx-ir",
        "onnxruntime",
        "onnxscript",
        "opencv-python-headless",
        "optax",
        "opt-einsum",
        "opt-einsum-fx",
        "optimistix",
        "orbax-checkpoint",
        "packaging",
        "pandas",
        "pathspec",
        "patsy",
        "peft",
        "pillow",
        "pip",
        "pluggy",
        "portalocker",
        "prometheus-client",
        "propcache",
        "protobuf",
        "psutil",
        "pyarrow",
        "pybind11",
        "py-cpuinfo",
        "pygments",
        "pyparsing",
        "pyproject-hooks",
        "pyre-extensions",
        "pytest",
        "pytest-benchmark",
        "pytest-cov",
        "pytest-mock",
        "pytest-timeout",
        "pytest-xdist",
        "python-dateutil",
        "pytorch-lightning",
        "pyyaml",
        "regex",
        "requests",
        "rich",
        "sacrebleu",
        "safetensors",
        "scikit-build-core",
        "scikit-image",
        "scikit-learn",
        "scipy",
        "seaborn",
        "sentencepiece",
        "sentence-transformers",
        "setuptools",
        "shellingham",
        "simplejson",
        "six",
        "sortedcontainers",
        "statsmodels",
        "sympy",
        "tabulate",
        "tensorboard",
        "tensorboard-data-server",
        "tensorstore",
        "threadpoolctl",
        "tifffile",
        "tiktoken",
        "timm",
        "tokenizers",
        "toolz",
        "torch",
        "torchaudio",
        "torchdiffeq",
        "torch-geometric",
        "torchmetrics",
        "torchvision",
        "tqdm",
        "transformers",
        "treescope",
        "triton",
        "typer",
        "typing-extensions",
        "typing-inspect",
        "urllib3",
        "uvloop",
        "wadler-lindig",
        "werkzeug",
        "wheel",
        "wrapt",
        "xarray",
        "xxhash",
        "yarl",
        "zipp",
    }
)
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]


def served() -> dict[str, list[str]]:
    """The committed record of the distributions the service loads when it serves (bench/gpu/record_packages.py)."""
    return dict(json.loads(RECORD.read_text())["distributions"])


def carried(distributions: Iterable[str]) -> list[str]:
    """Of `distributions` (normalised names), those the lent image lacks: what is carried as wheels."""
    return sorted(d for d in distributions if d not in GPU_IMAGE and not d.startswith("nvidia-"))


def needed() -> list[str]:
    """name==version (this venv's version) of every distribution the service loads that the image lacks."""
    out = []
    for name in carried(served()):
        try:
            out.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            raise SystemExit(
                f"{name} is in {RECORD.name} but not installed here: install the project's dev extras"
            ) from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the list only")
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    args = parser.parse_args(argv)
    packages = needed()
    if args.list:
        print("\n".join(packages))
        return 0
    args.dest.mkdir(exist_ok=True)
    platform_flags = [flag for p in PLATFORMS for flag in ("--platform", p)]
    for spec in packages:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                *platform_flags,
                "-d",
                str(args.dest),
                spec,
            ],
            check=True,
        )
    total = sum(p.stat().st_size for p in args.dest.glob("*.whl"))
    print(
        f"{len(packages)} wheels, {total / 2**20:.1f} MiB in {args.dest.name}/ (the device tool carries 64 MiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
