"""The lent GPU image recreated on this CPU: a virtual environment holding only the image's packages the service loads
(with the image's packages they need) plus exactly what bench/gpu/wheels.py carries, for the test that runs the
kit's service steps in it (tests/integration/test_gpu_image_venv.py).

    .venv/bin/python bench/gpu/image_venv.py [--venv .venv-image]     # build or reuse; prints its python

Which packages: of the distributions recorded in `served_packages.json`, those in the image (`wheels.GPU_IMAGE`),
closed over their declared requirements that the image also has (transformers checks its own at import), at this
venv's versions (torch 2.13.0+cpu from the local wheel folder pip's find-links names), then `wheels.needed()`: the
carried list, exactly. Everything is installed with `--no-deps`, so nothing the image lacks slips in through a
requirement: a package the carried list leaves out is missing here as it would be there. Packages of the image the
service never loads are left out (jax, cupy, ...): an absent one can only make a run fail, never pass wrongly.
Differences from the image that remain: Python 3.11 (the image's is 3.12), CPU torch, this venv's versions.

The build takes a few minutes (mostly torch); it is reused while the package list is the same (a stamp file in the
venv), under a file lock so scripts/test's background build and a test never build it twice at once.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gpu import wheels  # noqa: E402

DEFAULT_VENV = ROOT / ".venv-image"
STAMP = "image-packages.txt"


def _name(dist: str) -> str:
    return dist.lower().replace("_", "-").replace(".", "-")


def image_packages(served: set[str]) -> list[str]:
    """The image's distributions among `served`, closed over their requirements the image has, as name==version of
    this venv (a requirement not installed here is left out: its version is unknown)."""
    todo, found = [d for d in served if d in wheels.GPU_IMAGE], set()
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        found.add(name)
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            dep = _name(requirement.name)
            if dep in wheels.GPU_IMAGE and dep not in found:
                todo.append(dep)
    return sorted(f"{name}=={md.version(name)}" for name in found)


def specs() -> list[str]:
    served = set(wheels.served())
    return image_packages(served) + wheels.needed()


def ensure(venv: Path = DEFAULT_VENV) -> Path:
    """Build `venv` (or reuse it when its stamp lists the same packages); returns its python."""
    wanted = "\n".join(specs()) + "\n"
    python = venv / "bin" / "python"
    lock_path = ROOT / "var" / "image-venv.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds the venv built
        stamp = venv / STAMP
        if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-compile", *wanted.split()],
            check=True,
        )
        stamp.write_text(wanted)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--list", action="store_true", help="print the packages only")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(specs()))
        return 0
    print(ensure(args.venv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
