"""How a session's events are written on the wire: the one place a streaming dialect differs.

The session core (`WsSession`) decides *what* happens (an utterance started, audio, timings, done, an error, a
cancel); a `SessionWire` turns each of those into the dialect's payloads (JSON objects, or bytes for binary
frames). Each transport's wire format lives beside its protocol (api/protocols/*/responses.py; ours is
api/protocols/native/responses.py:NativeWire). Every method returns a list, so a dialect may send nothing (no
`started` in ElevenLabs) or two messages for one event.
"""

from __future__ import annotations

from typing import Any, Protocol

from services.sessions.utterance import Utterance

Payload = dict[str, Any] | bytes


class SessionWire(Protocol):
    def started(self, u: Utterance) -> list[Payload]:
        """Synthesis of the utterance was admitted and begins (stream lane)."""

    def audio(self, u: Utterance, data: bytes) -> list[Payload]:
        """One encoded audio chunk (stream lane). The single place timings meet audio: a wire format that attaches
        alignment to audio messages reads what `timings` stored in `u.wire_state`."""

    def timings(self, u: Utterance, event: Any) -> list[Payload]:
        """Word/character spans settled so far (stream lane, behind the audio they describe; each reaches the client
        before its word has finished playing)."""

    def progress(self, u: Utterance) -> list[Payload]:
        """Every `progress_every` audio chunks."""

    def done(self, u: Utterance) -> list[Payload]:
        """All audio of the utterance was queued (stream lane)."""

    def ended(self, u: Utterance) -> list[Payload]:
        """After the `error` that ended an utterance (a dialect may owe a final message)."""

    def error(
        self, code: str, message: str, param: str | None, u: Utterance | None, context_id: str | None
    ) -> Payload:
        """A refusal or failure, about one utterance/context or (both None) the connection."""

    def flushed(self, u: Utterance) -> list[Payload]:
        """Answer to a flush (reply lane)."""

    def cancelled(self, u: Utterance | None) -> list[Payload]:
        """Answer to a cancel, per utterance stopped; `None`: nothing was running (reply lane)."""

    def pong(self, message_id: Any) -> list[Payload]:
        """Answer to a keep-alive ping (reply lane)."""
