"""The service's Python packages that the lent GPU image lacks, downloaded as wheels into `.whl/` to carry there.

    .venv/bin/python bench/gpu/wheels.py            # download into .whl/ (ignored via .git/info/exclude)
    .venv/bin/python bench/gpu/wheels.py --list     # only print name==version, one a line

Which packages: every distribution imported when the service-under-load step starts (`bench/serve_paced.py`, the
product app, and `bench/bench_ttfa.py`), found by importing them here, minus what the lent image already has
(`GPU_IMAGE`, the lent machine's package list). Versions are this venv's, as cp312 manylinux wheels (the
lent machine runs Python 3.12). The lent image's own torch/numpy/transformers are kept: the service's ranges accept
them. The total must stay well inside the 64 MiB the device tool carries (about 40 MB today, mostly PyAV).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the lent image holds that the service imports (lower-case distribution names).
GPU_IMAGE = {
    "torch",
    "numpy",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface-hub",
    "hf-xet",
    "pyyaml",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "idna",
    "certifi",
    "sniffio",
    "prometheus-client",
    "psutil",
    "click",
    "rich",
    "pygments",
    "markdown-it-py",
    "mdurl",
    "tqdm",
    "typing-extensions",
    "filelock",
    "fsspec",
    "packaging",
    "regex",
    "requests",
    "urllib3",
    "jinja2",
    "markupsafe",
    "uvloop",
    "protobuf",
    "charset-normalizer",
    "sympy",
    "mpmath",
    "networkx",
    "triton",
    "setuptools",
    "zipp",
    "attrs",
    "yarl",
    "multidict",
    "frozenlist",
    "aiohttp",
    "aiosignal",
    "propcache",
    "aiohappyeyeballs",
    "wrapt",
    "six",
    "python-dateutil",
    "msgpack",
    "cuda-bindings",
    "cuda-pathfinder",
}
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]


def needed() -> list[str]:
    """name==version of every distribution the service-under-load step imports that the image lacks."""
    before = set(sys.modules)
    sys.path.insert(0, str(ROOT))
    import bench.bench_ttfa  # noqa: F401
    import bench.serve_paced  # noqa: F401

    top = {name.split(".")[0] for name in set(sys.modules) - before}
    owners = md.packages_distributions()
    dists = {d for module in top for d in owners.get(module, [])}
    out = []
    for dist in sorted(dists, key=str.lower):
        name = dist.lower().replace("_", "-")
        if name in GPU_IMAGE or name == "spark-tts-service" or name.startswith("nvidia-"):
            continue
        out.append(f"{name}=={md.version(dist)}")
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
