"""The voice-attribute fields of the HTTP synthesis bodies (`gender`, `pitch`, `speed_level`; docs/api/voice-attributes.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from processing.voice_description import VoiceAttributes, attributes_or_none

Level = Literal["very_low", "low", "moderate", "high", "very_high"]
GENDER_DESCRIPTION = "Create a voice from labels (with `pitch`, `speed_level`): female or male."
PITCH_DESCRIPTION = "The created voice's pitch level: very_low, low, moderate, high, very_high."
SPEED_LEVEL_DESCRIPTION = (
    "The created voice's speaking-rate label: very_low ... very_high. `speed` stays a time-stretch on top."
)


class VoiceAttributeFields(BaseModel):
    """`gender`, `pitch`, `speed_level`: any of them makes the request speak a voice created from Spark-TTS's labels
    (services/pipeline/speech.py, described_voice); what they leave out comes from the named voice."""

    gender: Literal["female", "male"] | None = Field(None, description=GENDER_DESCRIPTION)
    pitch: Level | None = Field(None, description=PITCH_DESCRIPTION)
    speed_level: Level | None = Field(None, description=SPEED_LEVEL_DESCRIPTION)

    def voice_attributes(self) -> VoiceAttributes | None:
        return attributes_or_none(self.gender, self.pitch, self.speed_level)
