"""The contexts of one connection that a refusal ended or kept from starting (their error and end marker went out).

The dialects drop such a context's later messages until its client closes it. Agents keep streaming a turn's text
into its context after an error (Pipecat reads only `isFinal`; LiveKit sends each word as the LLM makes it), so
without this a context refused at its first words was asked of admission again at each later one, answered each with
another error, or admitted part-way and spoke the end of a reply without its start.
"""

from __future__ import annotations

# Refusals one connection remembers (the oldest forgotten first): a client that never closes its refused contexts
# cannot grow the memory.
MAX_REFUSED_CONTEXTS = 64


class RefusedContexts:
    def __init__(self, limit: int = MAX_REFUSED_CONTEXTS) -> None:
        self.limit = max(1, limit)
        self._ids: dict[str, None] = {}  # insertion order: oldest first

    def __contains__(self, context_id: object) -> bool:
        return context_id in self._ids

    def remember(self, context_id: str) -> None:
        self._ids.pop(context_id, None)
        self._ids[context_id] = None
        while len(self._ids) > self.limit:
            del self._ids[next(iter(self._ids))]

    def forget(self, context_id: str | None) -> None:
        """The client closed the context: its id may open a new one."""
        if context_id is not None:
            self._ids.pop(context_id, None)
