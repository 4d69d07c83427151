"""What the rooms above the pipeline offer it, as protocols: the voice library, pronunciation dictionaries and
continuity sit above the pipeline (tests/unit/test_architecture.py) and are wired in by the app, never imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.voices import Voice
    from processing.lexicon import DictionaryLocator, Lexicon
    from services.pipeline.synthesis import SynthesisJob


class Payer(Protocol):
    """What pays for a request (services/access: `AccessGrant`), as the pipeline asks it: whose key, whether that key
    has credits left before costly work, and the reservation once the text to speak is known."""

    @property
    def key_id(self) -> str: ...

    async def check_balance(self) -> None: ...

    async def check_credits(self, characters: int) -> None: ...


class CustomVoices(Protocol):
    """The voice library (services/voice_library) as the pipeline asks it for a voice: it sits above the pipeline
    and is wired in by the app, never imported here."""

    async def reference_voice(
        self, audio: bytes, transcript: str | None, param: str = ..., key_id: str | None = None
    ) -> Voice: ...

    async def voice_for(self, voice_id: str, key_id: str | None, param: str = ...) -> Voice: ...


class PronunciationLexicons(Protocol):
    """Pronunciation dictionaries (services/pronunciation) as the pipeline asks them for a key's alias rules;
    wired in like the voice library."""

    async def lexicon_for(self, locators: Sequence[DictionaryLocator], key_id: str | None) -> Lexicon: ...


class ContinuityHooks(Protocol):
    """Continuity (services/continuity) as the pipeline asks it to stitch and to remember; wired in like the
    voice library."""

    async def stitched_voice(
        self,
        voice: Voice,
        previous_request_ids: Sequence[str],
        key_id: str | None,
        *,
        voice_named: bool,
        voice_field: str = ...,
    ) -> Voice: ...

    def track(self, job: SynthesisJob, key_id: str | None) -> None: ...
