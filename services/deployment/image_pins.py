"""The serving image's Python and package pins: one source for the Modal image (app.py) and the Docker image
(deploy/docker/Dockerfile, which runs this file to write its requirements). Standard library only, runnable alone:

    python services/deployment/image_pins.py [--without vllm,torch]   # requirements lines, one per package

Image: vLLM 0.33 pins torch==2.14.0 and needs fastapi[standard]>=0.133,<0.137 and transformers>=5.16.1,<5.21
(docs/reference/modal-vllm.md#packaging). The rest are exact versions from a resolve of this list together with
vllm==0.33.0 for CPython 3.12 / manylinux_2_28 x86_64; pyproject.toml's ranges must admit every one of them
(unit-tested).
"""

from __future__ import annotations

import sys
from collections.abc import Set as AbstractSet

PYTHON_VERSION = "3.12"
IMAGE_PACKAGES: tuple[str, ...] = (
    "vllm==0.33.0",
    "torch==2.14.0",
    "fastapi[standard]==0.136.3",
    "transformers==5.20.2",
    "tokenizers==0.23.3",
    "huggingface-hub==2.4.0",
    "safetensors==0.8.0",
    "uvicorn[standard]==0.54.0",
    "pydantic==2.14.3",
    "pydantic-settings==2.16.3",
    "pyyaml==6.0.3",
    "numpy==2.3.5",
    "soxr==1.1.0",
    "threadpoolctl==3.8.0",  # numpy's BLAS on one thread in the API process (services/deployment/runtime.py)
    "av==19.0.2",
    "prometheus-client==0.26.0",
    "supabase==2.34.1",
    "redis==8.1.0",
    "asyncpg==0.32.0",
    "cn2an==0.5.24",  # Chinese number words (processing/normalize_zh.py); pure Python, needs proces
    "proces==0.1.7",
    "pypdf==7.1.1",  # a runtime dependency of the project (pyproject); the PDF reader itself uses pypdfium2
    "pillow==13.0.0",  # a job's cover checked and scaled as a picture (services/jobs/cover.py)
    "pypdfium2==5.15.2",  # PDF reading for long-form jobs (services/jobs/documents/pdf.py); PDFium in the wheel
    "python-docx==1.2.0",  # DOCX reading for long-form jobs (services/jobs/documents/docx.py); needs lxml
    "lxml==6.1.3",
    "mutagen==1.48.1",  # the M4B's cover and the chapter files' tags (services/jobs/tags.py); no dependencies
    "wyoming==1.10.2",  # Home Assistant's protocol (api/protocols/wyoming/); no dependencies of its own
    "zeroconf==0.154.0",  # the Wyoming server's mDNS announcement (TTS_WYOMING_ZEROCONF); needs ifaddr
    "ifaddr==0.2.0",
    "num2words==0.5.14",  # es/fr/de number words (processing/normalize_latin.py); needs docopt
    "docopt==0.6.2",
    "rjieba==0.2.2",  # Chinese word boundaries for word timestamps (core/align/units.py); no dependencies
    "pyahocorasick==2.3.1",  # alias rules, Aho-Corasick (processing/lexicon.py); no dependencies
)
VLLM_VERSION = next(p.split("==", 1)[1] for p in IMAGE_PACKAGES if p.startswith("vllm=="))
# The official vLLM image of that version (the Docker GPU image builds on it; it already holds vllm and torch).
VLLM_DOCKER_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"


def requirements(without: AbstractSet[str] = frozenset()) -> list[str]:
    """The pins as requirements lines, leaving out the packages named (by distribution name)."""
    return [p for p in IMAGE_PACKAGES if p.split("==", 1)[0].split("[", 1)[0] not in without]


if __name__ == "__main__":
    args = sys.argv[1:]
    skip = set(args[1].split(",")) if len(args) == 2 and args[0] == "--without" else set()
    print("\n".join(requirements(skip)))
