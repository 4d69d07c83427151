"""What one request or socket may do and how its audio flows: limits, text, streaming, WebSockets, generation guards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings.base import _Group


class LimitsSettings(_Group):
    """Bounds on one request: its text, its audio and its time."""

    max_text_chars: int = Field(50_000, ge=1, description="Longest accepted text in characters.")
    max_normalized_chars: int = Field(
        120_000,
        ge=1,
        description="Longest text after normalisation (digits expand up to ~6x); longer requests get 413.",
    )
    max_text_chunks: int = Field(
        600,
        ge=1,
        description="Most text chunks one request may be split into; more get 413 (split the request).",
    )
    ssml_max_total_break_s: float = Field(
        60.0,
        ge=0,
        description="The most silence SSML <break> tags may add to one request, all breaks together "
        "(each is also at most 3 s); breaks beyond it are dropped.",
    )
    max_audio_s_per_char: float = Field(
        0.5,
        gt=0,
        description="The most speech one request may generate per character of its text (all its chunks "
        "so far, plus max_audio_slack_s); a generation that would pass it is cut there and charged for what it sent.",
    )
    max_audio_slack_s: float = Field(
        2.0, ge=0, description="Seconds of speech added to that limit once per request."
    )
    max_buffered_audio_mb: int = Field(
        64,
        ge=1,
        description="Largest non-streaming response in MiB; larger requests get 413 and are told to stream.",
    )
    max_unstreamed_chars: int = Field(
        4096,
        ge=1,
        description="Longest text a non-streamed /v1/tts/generate or /v1/audio/speech request takes (OpenAI's own "
        "input cap); longer ones get 413 at once, told to stream or to queue a job.",
    )
    http_head_timeout_s: float = Field(
        10.0,
        ge=0,
        description="With `--http api.http_protocol:HeadDeadline` (scripts/serve, the images): a request's "
        "line and headers must arrive within this many seconds of the connection opening or of the previous response, "
        "else the connection is closed (0: no deadline).",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request body must arrive in full within this many seconds (else 408)."
    )
    request_deadline_s: float = Field(
        3000.0,
        gt=0,
        description="Whole-request deadline (all text chunks); past it: 504 GENERATION_TIMEOUT, or a stream ends cleanly "
        "and is recorded. Below the Modal input timeout so the record is always written.",
    )
    generation_timeout_s: float = Field(
        120.0, gt=0, description="Per text-chunk generation deadline (504 after)."
    )


class TextSettings(_Group):
    """How a text is cut into chunks and joined again, and how its words are timed."""

    chunking_threshold_chars: int = Field(
        220, ge=20, description="Texts longer than this (normalised) are split."
    )
    chunk_target_chars: int = Field(170, ge=20, description="Target size of each text chunk.")
    stream_chunk_max_chars: int = Field(
        120,
        ge=20,
        description="WebSocket contexts: a text chunk (one LLM generation) holds at most this many "
        "characters (~8 s of speech; cut at sentence ends first, then clauses), since an engine such as vLLM "
        "generates a chunk to its end even while playback pacing holds the audio: an abandoned reply's generation "
        "runs at most TTS_STREAM_MAX_AHEAD_S plus one such chunk ahead of playback.",
    )
    crossfade_ms: float = Field(50.0, ge=0, le=500, description="Equal-power crossfade between text chunks.")
    align_method: Literal["estimate", "ctc"] = Field(
        "estimate",
        description="How word timestamps are found: estimate (pauses + expected word durations, no "
        "model, near free) or ctc (forced alignment with TTS_ALIGN_CTC_MODEL).",
    )
    align_ctc_model: str | None = Field(
        None,
        description="Wav2Vec2ForCTC checkpoint directory for the ctc method; per language as "
        "'en=DIR,zh=DIR,hi=DIR' (a plain DIR serves every language).",
    )


class StreamSettings(_Group):
    """Decoded chunk sizes, the first-audio schedule and delivery to the client."""

    stream_first_chunk_tokens: int = Field(
        25, ge=1, le=400, description="Semantic tokens in the first decoded chunk."
    )
    stream_max_chunk_tokens: int = Field(200, ge=1, le=1000, description="Largest later decoded chunk.")
    stream_chunk_growth: float = Field(
        1.5,
        ge=1.0,
        description="Each chunk is this many times the previous one. While its chunks grow, a stream needs "
        "about this many times real time from the engine; gentler growth needs less engine and more codec windows "
        "(docs/decisions/chunk-growth.md).",
    )
    stream_left_context_tokens: int = Field(
        24, ge=0, le=200, description="Tokens of left context per chunk decode."
    )
    stream_lookahead_tokens: int = Field(
        24,
        ge=0,
        le=200,
        description="Tokens of look-ahead per chunk decode (24 keeps streamed audio within 1e-3 / 40 dB of offline).",
    )
    stream_cut_runway_ms: int = Field(
        300,
        ge=0,
        le=5000,
        description="A stream's next decoded chunk is cut short, to the tokens that have their look-ahead, once its "
        "client would run dry within this many ms: a slow engine then costs the codec a window more instead of "
        "the listener a gap (0: never; docs/decisions/cut-runway.md).",
    )
    default_latency: Literal["lowest", "balanced", "exact"] = Field(
        "balanced",
        description="First-chunk schedule of a stream when the request names none: lowest (8 engine "
        "steps before audio), balanced (16), exact (49; streamed audio within 1e-3 of offline). See docs/benchmarks.md.",
    )
    stream_queue_chunks: int = Field(16, ge=1, description="Bounded queue between generation and the socket.")
    stream_max_ahead_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description="A streaming reply waits while its audio is this far ahead of what the client "
        "can have played (real time from its first audio), so an abandoned reply wastes at most about this much.",
    )
    send_stall_timeout_s: float = Field(30.0, gt=0, description="A reader stalled this long is cut off.")
    realtime_pacing: bool = Field(False, description="Pace sends at playback speed (plus a small lead).")
    frame_ms: int = Field(40, ge=10, le=200, description="Steady frame size of streamed audio.")


class WebSocketSettings(_Group):
    """WebSocket connections: caps per key and address, message budgets, timeouts."""

    ws_max_connections_per_key: int = Field(
        8,
        ge=0,
        description="WebSocket connections one API key may hold open on one server (0: no cap); more get 429.",
    )
    ws_max_connections_per_address: int = Field(
        0,
        ge=0,
        description="WebSocket connections one client address (TTS_TRUSTED_PROXIES decides which) may hold "
        "open on one server, keys or not (0: no cap); more are refused with 429.",
    )
    ws_max_unauthenticated_per_address: int = Field(
        32,
        ge=0,
        description="WebSocket connections one client address may hold on one server before their key is "
        "accepted (0: no cap); more are refused with 429.",
    )
    ws_auth_deadline_s: float = Field(
        10.0,
        gt=0,
        description="An ElevenLabs connection without a key in its headers or query must send it in its "
        "first message within this many seconds (whatever its inactivity_timeout), else it is closed 1008.",
    )
    ws_max_message_bytes: int = Field(
        1_000_000,
        ge=1,
        description="Largest WebSocket message (checked as characters in the app; the launch command, "
        "python -m api.launch, passes the same number to uvicorn's --ws-max-size as bytes); larger: error, then "
        "close 1009.",
    )
    ws_deflate: bool = Field(
        False,
        description="Let uvicorn accept WebSocket permessage-deflate (python -m api.launch: scripts/serve and the images). "
        "Compressing base64 audio costs ~1 ms of the event loop per audio second for ~1/3 fewer bytes.",
    )
    ws_messages_per_s: float = Field(
        100.0,
        ge=0,
        description="Messages per second one WebSocket connection may send on average, beyond its "
        "burst (0: no limit); past it: RATE_LIMIT_EXCEEDED, then close 1008.",
    )
    ws_message_burst: int = Field(
        1000,
        ge=1,
        description="Messages a WebSocket connection may send at once before ws_messages_per_s applies "
        "(an LLM reply streamed word by word, one message per word, fits).",
    )
    ws_flood_penalty_s: float = Field(
        10.0,
        ge=0,
        description="After one of its WebSocket connections went over its message budget, an API key's new "
        "WebSocket connections on that server are refused (429, Retry-After) for this many seconds (0: never).",
    )
    ws_message_chars_per_s: float = Field(
        50_000.0,
        ge=0,
        description="Characters of messages per second one WebSocket connection may send beyond one "
        "largest message (0: no limit); past it: RATE_LIMIT_EXCEEDED, then close 1008.",
    )
    ws_idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="WebSocket: close a connection after this many seconds with no message either way "
        "while nothing is being synthesised.",
    )
    ws_supersede_after_s: float = Field(
        0.5,
        ge=0,
        description="ElevenLabs/Cartesia sockets: a context opening this long or longer after an earlier "
        "unfinished context's last message is a barge-in and stops that context (sooner: a reply queued on purpose).",
    )


class GuardSettings(_Group):
    """Generation guards (docs/operate/runbook.md section 10: thresholds, calibration)."""

    guard_mode: Literal["act", "count", "off"] = Field(
        "act",
        description="What a tripped guard does: act (retry the text chunk with a new seed, or cut a streamed "
        "chunk whose audio was sent), count (metrics and logs only), off (not run).",
    )
    guard_modes: dict[str, Literal["act", "count", "off"]] = Field(
        {},
        description='Per-guard overrides of guard_mode, e.g. {"alignment":"count"}; guards: length, loop, '
        "silence, empty, alignment.",
    )
    guard_max_tries: int = Field(
        3,
        ge=1,
        le=10,
        description="Generations one text chunk may take (the first and its retries) before the "
        "request fails with GENERATION_FAILED.",
    )
    guard_length_max_ratio: float = Field(
        3.0,
        gt=1,
        description="length: a chunk may generate at most this many times the semantic tokens its text "
        "is expected to need (per-script syllable estimate) plus the slack.",
    )
    guard_length_slack_s: float = Field(
        1.5, ge=0, description="length: seconds of speech added to that limit."
    )
    guard_length_min_ratio: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="length: an engine stop below this share of the expected tokens trips (text "
        "expected to take at least 2 s only).",
    )
    guard_loop_window: int = Field(
        250,
        ge=20,
        description="loop: semantic tokens (50 per second) over which repeated n-grams are counted.",
    )
    guard_loop_max_repeat_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="loop: trip when this share of the window's 4-grams repeat earlier ones.",
    )
    guard_silence_db: float = Field(
        -50.0, le=0, description="silence: 20 ms frames below this RMS level (dBFS) are silent."
    )
    guard_silence_max_s: float = Field(
        2.0,
        gt=0,
        description="silence: longest silent run (or one semantic id held) allowed, plus the longest "
        "pause the text asks for (an ellipsis 1 s, a sentence end 0.4 s).",
    )
    guard_align_min_score: float = Field(
        0.3,
        ge=0,
        le=1,
        description="alignment (with an aligner loaded): words scored below this are missing.",
    )
    guard_align_max_missing: float = Field(
        0.25,
        ge=0,
        le=1,
        description="alignment: trip when more than this share of a chunk's words is missing (or 3 "
        "in a row).",
    )
    guard_fade_ms: float = Field(
        20.0, ge=0, le=200, description="Fade-out at the point a streamed chunk is cut."
    )
    max_tokens_per_char: float = Field(
        6.0,
        gt=0,
        description="Runaway guard: a text chunk may generate at most this many tokens per character "
        "(+100); 50 tokens = 1 s of speech, so 6/char allows very slow speech.",
    )
