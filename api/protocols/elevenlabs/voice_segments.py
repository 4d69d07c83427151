"""ElevenLabs' `voice_segments` on the text-to-dialogue answers with timestamps: one per dialogue input, in order,
`{voice_id, start_time_seconds, end_time_seconds, character_start_index, character_end_index,
dialogue_input_index}`. Character indices point into `alignment.characters` joined over the whole answer (end
exclusive); times are those of the segment's first and last character.

Which characters belong to which input: the alignment is the inputs' text with their words apart (whitespace may be
added or dropped between them, never a visible character), so input i is the run of visible characters that comes
after the visible characters of the inputs before it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Span = tuple[str, float, float]  # one character, start and end in seconds


class VoiceSegments:
    """Reads the alignment's characters in order (all at once, or line by line as a stream sends them) and gives
    each input's segment once its last character has been read."""

    def __init__(self, inputs: Sequence[tuple[str, str]]) -> None:
        """`inputs`: (voice id, text) per dialogue input, in order."""
        self.inputs = list(inputs)
        self._visible = [sum(1 for c in text if not c.isspace()) for _, text in self.inputs]
        self._current = 0  # the input being read
        self._seen = 0  # its visible characters read so far
        self._index = 0  # characters read over the whole answer
        self._start: tuple[int, float] | None = None  # its first character: index and start time
        self._last: tuple[int, float] = (0, 0.0)  # the last visible character read: index after it, end time

    def feed(self, spans: Sequence[Span]) -> list[dict[str, Any]]:
        """The segments that end within `spans` (the next characters of the alignment)."""
        done = self._empty_inputs()
        for text, start, end in spans:
            index = self._index
            self._index += 1
            if text.isspace() or self._current >= len(self.inputs):
                continue
            if self._start is None:
                self._start = (index, start)
            self._seen += sum(1 for c in text if not c.isspace())
            self._last = (index + 1, end)
            if self._seen >= self._visible[self._current]:
                done.append(self._close())
                done += self._empty_inputs()
        return done

    @property
    def unfinished(self) -> bool:
        """Some input's segment has not been given yet."""
        return self._current < len(self.inputs)

    def finish(self) -> list[dict[str, Any]]:
        """What is left when the answer ends: the segment being read (cut short) and the inputs never reached."""
        done: list[dict[str, Any]] = []
        while self._current < len(self.inputs):
            done.append(self._close())
        return done

    def _empty_inputs(self) -> list[dict[str, Any]]:
        done = []
        while self._current < len(self.inputs) and self._visible[self._current] == 0:
            done.append(self._close())
        return done

    def _close(self) -> dict[str, Any]:
        voice_id, _ = self.inputs[self._current]
        first, started = self._start if self._start is not None else self._last
        segment = {
            "voice_id": voice_id,
            "start_time_seconds": started,
            "end_time_seconds": max(started, self._last[1]),
            "character_start_index": first,
            "character_end_index": max(first, self._last[0]),
            "dialogue_input_index": self._current,
        }
        self._current += 1
        self._seen = 0
        self._start = None
        return segment
