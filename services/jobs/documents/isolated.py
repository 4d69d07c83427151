"""`read_document` in a short-lived process: what a hostile upload costs stays out of the server.

The reader runs as `python -m services.jobs.documents.isolated`, a fresh interpreter that inherits no model,
socket or thread of the server. Its address space is capped (RLIMIT_AS) before it reads a byte, its CPU priority
lowered (`READER_NICENESS`: live streams' threads go first) and its time capped by the caller; when it ends, its
memory goes back to the system, whether it read the book or refused it. The options go in as one JSON argument, the
document on stdin; the chapters (or the refusal) come back as JSON on stdout, so nothing the child sends is executed.
A reader that runs out of memory or time is a DocumentError like any other.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import resource
import sys
from pathlib import Path
from typing import Any

from services.jobs.documents import Chapter, Cover, Document, DocumentError, read_document
from services.jobs.documents.reader_slots import reader_slots

_ROOT = Path(__file__).resolve().parents[3]  # the folder holding `services`, for the child's import path
_OUT_OF_MEMORY = "the document needs more memory to read than a job allows; split it into parts"
_FAILED = "the document cannot be read (its reader stopped without an answer)"
logger = logging.getLogger("services.jobs")
MAX_READERS = 2  # children reading at once per server process, per lane
MAX_READERS_PER_KEY = 1  # of those, what one key may hold: another key's read never waits behind its uploads
# A reader is batch work beside live streams: on a machine whose CPU also runs the engine and the codec (a CPU
# deployment, or a GPU's feeding threads), the serving process's threads go first and a hostile document's read
# takes what they leave. 10 of the 19 steps down: still scheduled when the CPU is busy, so its timeout holds.
READER_NICENESS = 10


async def read_document_isolated(
    data: bytes,
    *,
    timeout_s: float,
    memory_mb: int,
    key: str = "",
    lane: str = "upload",
    **options: Any,
) -> Document:
    """`read_document(data, **options)` in a process of at most `memory_mb` of address space, given `timeout_s`
    (waiting for a turn included). Asynchronous all the way (no thread held while the child reads), and at most
    `MAX_READERS` children at once per server process and lane, shared fairly between keys (reader_slots.py):
    `key` holds at most `MAX_READERS_PER_KEY` of them; `lane` "text" (JSON text) never waits behind "upload"."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    header = json.dumps({"options": options, "memory_bytes": memory_mb * 1024 * 1024})
    try:
        async with asyncio.timeout(timeout_s):
            async with reader_slots(lane, MAX_READERS, MAX_READERS_PER_KEY).slot(key):
                stdout, stderr, returncode = await _run(
                    [sys.executable, "-m", "services.jobs.documents.isolated", header], data, env
                )
    except TimeoutError:
        raise DocumentError(
            f"reading the document took longer than {timeout_s:g} s; split it into parts"
        ) from None
    try:
        answer = json.loads(stdout)
    except ValueError:  # no answer: killed (out of memory, most likely) or the interpreter itself failed
        logger.warning(
            "document reader ended without an answer",
            extra={"returncode": returncode, "stderr": stderr[-2000:].decode("utf-8", "replace")},
        )
        raise DocumentError(
            _OUT_OF_MEMORY if returncode < 0 or b"MemoryError" in stderr else _FAILED
        ) from None
    if "error" in answer:
        raise DocumentError(str(answer["error"]))
    cover = answer.get("cover")
    return Document(
        answer.get("title"),
        tuple(Chapter(str(title), str(text)) for title, text in answer["chapters"]),
        author=answer.get("author"),
        cover=Cover(base64.b64decode(cover["data"]), cover["media_type"]) if cover else None,
    )


async def _run(command: list[str], data: bytes, env: dict[str, str]) -> tuple[bytes, bytes, int]:
    """The child's stdout, stderr and exit status; killed and reaped if the caller is cancelled (the timeout)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await process.communicate(data)
    except BaseException:
        if process.returncode is None:
            process.kill()
        await asyncio.shield(process.wait())
        raise
    return stdout, stderr, process.returncode if process.returncode is not None else -1


def _as_json(document: Document) -> dict[str, Any]:
    cover = document.cover
    return {
        "title": document.title,
        "author": document.author,
        "chapters": [[c.title, c.text] for c in document.chapters],
        "cover": {"media_type": cover.media_type, "data": base64.b64encode(cover.data).decode()}
        if cover
        else None,
    }


def main() -> None:
    request = json.loads(sys.argv[1])
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(request["memory_bytes"])
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )
    os.nice(READER_NICENESS)
    try:
        answer = _as_json(read_document(sys.stdin.buffer.read(), **request["options"]))
    except DocumentError as error:
        answer = {"error": str(error)}
    except MemoryError:
        answer = {"error": _OUT_OF_MEMORY}
    except RecursionError:
        answer = {"error": "the document is nested too deeply to read"}
    except Exception as error:  # a library's own failure on a malformed file: still the document's fault
        answer = {"error": f"the document cannot be read ({type(error).__name__}: {str(error)[:200]})"}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
