"""ElevenLabs' `output_format` (`<codec>_<rate>` or `<codec>_<rate>_<kbps>`) as our format, rate and bit rate.

The HTTP routes take every format ElevenLabs' SDK offers (`TextToSpeechConvertRequestOutputFormat`, elevenlabs
2.78): `pcm_*` raw s16le, `wav_*` a WAV file with its header, `ulaw_8000` / `alaw_8000` raw G.711, `mp3_*_<kbps>` and
`opus_48000_<kbps>` (Ogg Opus) at the bit rate asked. The sockets keep the raw and mp3 ones (`SOCKET_CODECS`): their
audio messages carry alignment that raw formats place by byte count. Anything else is refused naming the accepted
names."""

from __future__ import annotations

from dataclasses import dataclass

from api.errors import ApiError
from audio.encoders import supported_rates

# The rates ElevenLabs' names carry (32 kHz too, which our own routes do not offer).
RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass(frozen=True)
class OutputFormat:
    name: str  # as the client wrote it: pcm_24000, ulaw_8000, mp3_22050_32
    audio_format: str  # ours: pcm | wav | mulaw | alaw | mp3 | opus
    sample_rate: int
    bitrate: int | None = None  # bits per second, where the name gives kbps

    @property
    def bytes_per_second(self) -> int | None:
        """Raw formats: bytes per second of audio (alignment offsets from byte counts); None for the others."""
        return {"pcm": 2, "mulaw": 1, "alaw": 1}.get(self.audio_format, 0) * self.sample_rate or None


@dataclass(frozen=True)
class Codec:
    ours: str  # our format
    kbps: tuple[int, ...] = ()  # the bit rates the name may carry; () means the name has none

    def rates(self) -> tuple[int, ...]:
        return tuple(r for r in RATES if r in supported_rates(self.ours))

    def accepted(self, prefix: str) -> str:
        rates = "|".join(map(str, self.rates()))
        return f"{prefix}_{rates}" + (f"_{'|'.join(map(str, self.kbps))}" if self.kbps else "")


# ElevenLabs' name -> ours. Bit rates are ElevenLabs' own steps; rates are those our encoders write.
CODECS: dict[str, Codec] = {
    "pcm": Codec("pcm"),
    "wav": Codec("wav"),
    "ulaw": Codec("mulaw"),
    "alaw": Codec("alaw"),
    "mp3": Codec("mp3", (32, 48, 64, 96, 128, 192)),
    "opus": Codec("opus", (32, 64, 96, 128, 192)),
}
SOCKET_CODECS = ("pcm", "ulaw", "mp3")


def parse_output_format(value: str, codecs: tuple[str, ...] = tuple(CODECS)) -> OutputFormat:
    """The format `value` names among `codecs`; VALIDATION_ERROR (a 400) naming the accepted ones otherwise."""
    prefix, _, rest = value.partition("_")
    codec = CODECS.get(prefix) if prefix in codecs else None
    if codec is not None:
        parts = rest.split("_")
        if len(parts) == (2 if codec.kbps else 1) and all(
            p.isascii() and p.isdigit() and len(p) <= 6 for p in parts
        ):
            rate = int(parts[0])
            kbps = int(parts[1]) if codec.kbps else None
            if rate in codec.rates() and (kbps is None or kbps in codec.kbps):
                return OutputFormat(value, codec.ours, rate, None if kbps is None else kbps * 1000)
    accepted = "; ".join(CODECS[c].accepted(c) for c in codecs)
    raise ApiError(
        "VALIDATION_ERROR",
        f"Invalid 'output_format' {value!r}; accepted: {accepted}.",
        param="output_format",
    )
