"""`read_document` in a short-lived process: what a hostile upload costs stays out of the server.

The reader runs in a fresh interpreter (spawned: it inherits no model, socket or thread of the server) whose
address space is capped (RLIMIT_AS) and whose time is capped by the caller; when it ends, its memory goes back to
the system, whether it read the book or refused it. A reader that runs out of memory or time is a DocumentError
like any other. Blocking: async callers run it in a thread.
"""

from __future__ import annotations

import multiprocessing
import resource
from multiprocessing.connection import Connection
from typing import Any

from services.jobs.documents import Document, DocumentError, read_document


def read_document_isolated(data: bytes, *, timeout_s: float, memory_mb: int, **options: Any) -> Document:
    """`read_document(data, **options)` in a process of at most `memory_mb` of address space, given `timeout_s`."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(send, data, options, memory_mb * 1024 * 1024),
        name="document-reader",
        daemon=True,
    )
    process.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise DocumentError(f"reading the document took longer than {timeout_s:g} s; split it into parts")
        outcome, value = receive.recv()
    except (EOFError, OSError):  # the reader died (killed for memory, or a crash in a library)
        raise DocumentError(
            "the document needs more memory to read than a job allows; split it into parts"
        ) from None
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        process.join()
    if outcome == "error":
        raise DocumentError(value)
    if not isinstance(value, Document):
        raise DocumentError("the document reader answered nothing")
    return value


def _child(send: Connection, data: bytes, options: dict[str, Any], memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        result: tuple[str, Any] = ("ok", read_document(data, **options))
    except DocumentError as error:
        result = ("error", str(error))
    except MemoryError:
        result = ("error", "the document needs more memory to read than a job allows; split it into parts")
    except RecursionError:
        result = ("error", "the document is nested too deeply to read")
    send.send(result)
    send.close()
