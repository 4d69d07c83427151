"""Every output format, streamed in small irregular pushes, decodes to the audio that went in.

Decoding uses PyAV (and ffprobe when it is installed). Durations must match within the codec's frame,
plus, for streamed mp3 and ADTS aac, the encoder's priming samples: those streams have nowhere to record
the delay (mp3 stores it in a Xing/LAME header written after the fact; ADTS has no field for it).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import warnings
import wave

import av
import numpy as np
import pytest

from audio.alaw import alaw_decode, alaw_to_lin16, lin16_to_alaw
from audio.encoders import FORMATS, create_encoder, supported_rates
from audio.mulaw import lin16_to_mulaw, mulaw_decode, mulaw_encode, mulaw_to_lin16
from audio.pcm import float_to_int16, s16le_to_float
from audio.wav import STREAMING_SIZE, complete_wav, patch_wav_sizes, read_wav_header

CONTAINER_FORMATS = ["wav", "flac", "mp3", "opus", "aac"]
# Samples a decoder may add beyond the input: (priming delay, codec frame) at the encoder's rate.
_SLACK = {"mp3": (576 + 529, 1152), "aac": (1024, 1024)}
G711 = ("mulaw", "alaw")  # 8 kHz only
CASES = [(f, r) for f in FORMATS if f not in G711 for r in (16000, 48000)] + [
    ("mulaw", 8000),
    ("alaw", 8000),
    ("opus", 8000),
]


def _chirp(rate: int, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(rate * seconds) + 7) / rate
    return (0.5 * np.sin(2 * np.pi * (150 + 800 * t) * t)).astype(np.float32)


def _pushes(x: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, 2001))
        out.append(x[i : i + k])
        i += k
    return out


_INT_SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2.0**31, "s32p": 2.0**31}


def _decode(data: bytes) -> tuple[int, np.ndarray, str]:
    """(sample rate, mono float samples, codec name) as PyAV reads the bytes."""
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        name = stream.codec_context.name
        frames = list(c.decode(stream))
    scale = _INT_SCALE.get(frames[0].format.name, 1.0)
    pcm = np.concatenate([f.to_ndarray().reshape(-1)[: f.samples] for f in frames]).astype(np.float32)
    return frames[0].sample_rate, pcm / np.float32(scale), name


def _decoded_rate(fmt: str, rate: int) -> int:
    return (
        48000 if fmt == "opus" else rate
    )  # Opus always decodes at 48 kHz; the stream records the input rate


def _encode_streamed(fmt: str, rate: int, x: np.ndarray, seed: int = 0) -> tuple[bytes, bytes]:
    """(bytes out before flush, all bytes)."""
    enc = create_encoder(fmt, rate)
    early = b"".join(enc.push(p) for p in _pushes(x, seed))
    return early, early + enc.flush()


@pytest.mark.parametrize(("fmt", "rate"), CASES)
def test_streamed_output_decodes_at_the_right_rate_and_length(fmt: str, rate: int) -> None:
    x = _chirp(rate)
    _, data = _encode_streamed(fmt, rate, x, seed=rate)
    if fmt == "pcm":
        y = s16le_to_float(data)
    elif fmt in G711:
        y = (mulaw_decode if fmt == "mulaw" else alaw_decode)(data)
    else:
        got_rate, y, _ = _decode(data)
        assert got_rate == _decoded_rate(fmt, rate)
    scale = _decoded_rate(fmt, rate) / rate
    priming, frame = _SLACK.get(fmt, (0, 0))
    extra = len(y) / scale - len(x)
    assert 0 <= extra <= priming + frame, f"{fmt}: {len(y)} decoded samples for {len(x)} pushed"
    if fmt in ("pcm", "wav", "flac"):
        assert np.max(np.abs(y - x)) < 1e-4  # lossless up to 16-bit rounding


@pytest.mark.parametrize(("fmt", "rate"), [c for c in CASES if c[0] in ("mp3", "opus", "aac", *G711)])
def test_lossy_output_still_sounds_like_the_input(fmt: str, rate: int) -> None:
    """Correlate decoded and input audio (after undoing the codec delay): a garbled stream fails this."""
    x = _chirp(rate)
    _, data = _encode_streamed(fmt, rate, x, seed=rate + 1)
    if fmt in G711:
        y = (mulaw_decode if fmt == "mulaw" else alaw_decode)(data)
    else:
        _, y, _ = _decode(data)
        if fmt == "opus" and rate != 48000:
            y = y[:: 48000 // rate]
    priming = _SLACK.get(fmt, (0, 0))[0]
    best = max(
        float(np.corrcoef(x[: len(x) - 4000], y[d : d + len(x) - 4000])[0, 1])
        for d in range(0, priming + 64)
        if d + len(x) - 4000 <= len(y)
    )
    assert best > 0.9


@pytest.mark.parametrize(("fmt", "rate"), [c for c in CASES if c[0] in CONTAINER_FORMATS])
def test_bytes_leave_before_the_input_ends(fmt: str, rate: int) -> None:
    """Most of the audio is decodable from what came out before flush(): nothing waits for the end."""
    x = _chirp(rate, seconds=2.0)
    early, _ = _encode_streamed(fmt, rate, x, seed=3)
    assert len(early) > 44
    _, y, _ = _decode(early)
    decoded_s = len(y) / _decoded_rate(fmt, rate)
    assert decoded_s >= 2.0 - 0.25, f"{fmt}@{rate}: only {decoded_s:.2f} s of 2 s out before flush"


def test_first_bytes_come_after_the_first_few_pushes() -> None:
    for fmt in CONTAINER_FORMATS + ["pcm"]:
        enc = create_encoder(fmt, 16000)
        out = b""
        for piece in np.array_split(_chirp(16000, 0.4), 20):  # 20 ms pushes
            out += enc.push(piece)
        assert len(out) > 100, f"{fmt}: nothing out after 400 ms of audio"
        enc.close()


def test_streamed_wav_header_and_parsers() -> None:
    x = _chirp(24000, 1.0)
    early, data = _encode_streamed("wav", 24000, x)
    info = read_wav_header(data)
    assert info.data_size == STREAMING_SIZE and info.riff_size == STREAMING_SIZE
    assert early == data  # nothing is held back for the trailer
    rate, y, name = _decode(data)  # PyAV as-is
    assert (rate, name, len(y)) == (24000, "pcm_s16le", len(x))
    with wave.open(io.BytesIO(patch_wav_sizes(data))) as w:
        assert (w.getframerate(), w.getnframes(), w.getsampwidth()) == (24000, len(x), 2)


def test_non_streaming_outputs_carry_exact_lengths() -> None:
    x = _chirp(16000, 1.0)
    enc = create_encoder("wav", 16000, streaming=False)
    assert all(enc.push(p) == b"" for p in _pushes(x, 0))
    data = enc.flush()
    assert read_wav_header(data).data_size == 2 * len(x)
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnframes() == len(x)
    # mp3 gets its LAME header with delay and padding, so decoders return exactly the input length
    enc = create_encoder("mp3", 16000, streaming=False)
    data = b"".join(enc.push(p) for p in _pushes(x, 1)) + enc.flush()
    assert len(_decode(data)[1]) == len(x)
    # FLAC STREAMINFO records the total sample count (bytes 18..21 of the header carry its low 32 bits)
    enc = create_encoder("flac", 16000, streaming=False)
    data = b"".join(enc.push(p) for p in _pushes(x, 2)) + enc.flush()
    assert data[:4] == b"fLaC" and struct.unpack(">I", data[22:26])[0] == len(x)


def test_opus_stream_records_the_input_rate() -> None:
    for rate in supported_rates("opus"):
        _, data = _encode_streamed("opus", rate, _chirp(rate, 0.3))
        assert data[:4] == b"OggS"
        head = data.index(b"OpusHead")
        assert struct.unpack_from("<I", data, head + 12)[0] == rate


def test_content_types_and_properties() -> None:
    expected = {
        "wav": "audio/wav",
        "pcm": "audio/pcm",
        "mulaw": "audio/basic",
        "alaw": "audio/x-alaw-basic",
        "flac": "audio/flac",
        "mp3": "audio/mpeg",
        "opus": "audio/ogg",
        "aac": "audio/aac",
    }
    for fmt, content_type in expected.items():
        rate = 8000 if fmt in G711 else 16000
        enc = create_encoder(fmt.upper() if fmt == "mp3" else fmt, rate)
        assert (enc.format, enc.content_type, enc.sample_rate) == (fmt, content_type, rate)
        enc.close()


def test_rate_validation_lists_accepted_rates() -> None:
    assert supported_rates("mulaw") == supported_rates("alaw") == (8000,)
    assert supported_rates("opus") == (8000, 12000, 16000, 24000, 48000)
    assert 44100 in supported_rates("mp3") and 96000 not in supported_rates("mp3")
    assert 96000 in supported_rates("aac")
    with pytest.raises(ValueError, match="accepted sample rates: 8000$"):
        create_encoder("mulaw", 16000)
    with pytest.raises(ValueError, match="8000, 12000, 16000, 24000, 48000"):
        create_encoder("opus", 44100)
    with pytest.raises(ValueError, match="accepted: wav, pcm"):
        create_encoder("ogg", 16000)
    with pytest.raises(ValueError, match="unsupported audio format"):
        supported_rates("aiff")


def test_encoder_lifecycle() -> None:
    enc = create_encoder("mp3", 16000)
    enc.push(_chirp(16000, 0.1))
    enc.close()  # client went away: no trailer, no error
    enc.close()
    with pytest.raises(RuntimeError):
        enc.push(_chirp(16000, 0.1))
    enc = create_encoder("pcm", 16000)
    assert enc.push(np.zeros(0, np.float32)) == b""
    assert enc.push(np.array([2.0, -2.0], np.float32)) == struct.pack("<hh", 32767, -32767)  # clipped
    assert enc.flush() == b""
    with pytest.raises(RuntimeError):
        enc.flush()
    empty = create_encoder("wav", 16000)
    assert len(empty.flush()) == 44  # a stream with no audio is still a valid WAV


def _ffmpeg_mulaw(pcm: np.ndarray) -> np.ndarray:
    ctx = av.CodecContext.create("pcm_mulaw", "w")
    ctx.sample_rate, ctx.format, ctx.layout = 8000, "s16", "mono"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode(None))
    return np.frombuffer(data, np.uint8)


def test_mulaw_matches_the_g711_reference_and_ffmpeg() -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    ours = lin16_to_mulaw(pcm)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop  # CPython's C implementation of the G.711 reference code (gone in 3.13)
    except ImportError:
        audioop = None
    if audioop is not None:
        assert ours.tobytes() == audioop.lin2ulaw(pcm.astype("<i2").tobytes(), 2)
    # ffmpeg quantises to the nearest level: at most one code apart, and the same 256 output levels
    theirs = _ffmpeg_mulaw(pcm)
    assert np.max(np.abs(mulaw_to_lin16(ours).astype(int) - mulaw_to_lin16(theirs).astype(int))) <= 1024
    assert np.mean(ours == theirs) > 0.95
    codes = np.arange(256, dtype=np.uint8)
    with av.open(io.BytesIO(complete_wav(codes.tobytes(), 8000, fmt="mulaw"))) as c:
        ffmpeg_levels = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert np.array_equal(mulaw_to_lin16(codes), ffmpeg_levels)


def test_alaw_matches_the_g711_reference_and_ffmpeg(tmp_path) -> None:
    """A-law (ElevenLabs' alaw_8000): the G.711 reference bit for bit, and ffmpeg decodes our bytes to our levels."""
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    ours = lin16_to_alaw(pcm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # CPython's C G.711 (gone in 3.13)
    assert ours.tobytes() == audioop.lin2alaw(pcm.astype("<i2").tobytes(), 2)
    codes = np.arange(256, dtype=np.uint8)
    assert alaw_to_lin16(codes).tobytes() == audioop.alaw2lin(codes.tobytes(), 2)
    path = tmp_path / "codes.alaw"
    path.write_bytes(codes.tobytes())
    with av.open(str(path), format="alaw", options={"sample_rate": "8000"}) as c:
        ffmpeg_levels = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert np.array_equal(alaw_to_lin16(codes), ffmpeg_levels)
    x = _chirp(8000)
    assert np.max(np.abs(alaw_decode(create_encoder("alaw", 8000).push(x)) - x)) < 1024 / 32767


def test_mulaw_round_trip_error_is_small() -> None:
    x = _chirp(8000)
    y = mulaw_decode(mulaw_encode(x))
    assert len(y) == len(x)
    err = y - x
    assert np.max(np.abs(err)) < 1024 / 32767  # the coarsest segment's step
    snr_db = 10 * np.log10(np.mean(x**2) / np.mean(err**2))
    assert snr_db > 30


def test_mulaw_encoder_is_raw_bytes() -> None:
    x = _chirp(8000, 0.5)
    _, data = _encode_streamed("mulaw", 8000, x)
    assert data == mulaw_encode(x)
    assert float_to_int16(mulaw_decode(data)).dtype == np.int16


@pytest.mark.skipif(
    shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None, reason="ffmpeg/ffprobe not installed"
)
@pytest.mark.parametrize("fmt", CONTAINER_FORMATS)
def test_ffprobe_reads_streamed_output(fmt: str, tmp_path) -> None:
    x = _chirp(16000)
    _, data = _encode_streamed(fmt, 16000, x)
    path = tmp_path / f"out.{FORMATS[fmt].extension}"
    path.write_bytes(data)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-count_packets", "-show_entries",
         "stream=sample_rate,codec_name", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stream = json.loads(probe.stdout)["streams"][0]
    assert int(stream["sample_rate"]) == _decoded_rate(fmt, 16000)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
    ).stdout
    seconds = len(decoded) / 2 / _decoded_rate(fmt, 16000)
    priming, frame = _SLACK.get(fmt, (0, 0))
    assert len(x) / 16000 - 0.001 <= seconds <= (len(x) + priming + frame) / 16000 + 0.001
