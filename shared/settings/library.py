"""What a key keeps: custom voices, recent requests (continuity) and long-form jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.settings.base import _Group


class VoiceSettings(_Group):
    """Voices: built-in names, the voice library and reference cloning."""

    finetune_speakers: str = Field(
        "",
        description="Comma-separated speaker names of a fine-tune served without voices.json: each becomes a voice "
        'prompted as "{speaker}: {text}" (the fine-tuning recipe\'s format). Empty: one voice with no prefix.',
    )
    openai_voice_map: dict[str, str] = Field(
        {},
        description='JSON object overriding which voice an OpenAI voice name uses, e.g. {"alloy": "Asha"} or '
        '{"nova": "voice_3f2a..."} (a custom voice: used for the key that owns it; other keys get 404); names not '
        "given map to a voice of the same gender (docs/api/voices.md).",
    )
    voice_store: Literal["auto", "postgres", "supabase", "file", "none"] = Field(
        "auto",
        description="Where custom (cloned) voices live. auto: postgres when TTS_DATABASE_URL is set, else "
        "supabase when TTS_SUPABASE_URL and TTS_SUPABASE_KEY are, else file (one server only: files are not shared; "
        "on Modal, none). none: no saved voices (creating one answers 501); per-request cloning still works.",
    )
    voice_dir: Path = Field(
        Path("var/voices"), description="The file voice store's directory (one JSON file per voice)."
    )
    voice_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="Synthesis keeps a looked-up custom voice this long (never an absent one); a voice deleted "
        "on another container stops working within it. 0: look it up on every request.",
    )
    voice_library_max_per_key: int = Field(
        200,
        ge=0,
        description="Custom voices one API key may keep (0: no cap); creating or importing one more answers "
        "403 VOICE_LIMIT_REACHED before any encode.",
    )
    clone_max_encodes_per_key: int = Field(
        1,
        ge=1,
        description="Reference encodes one API key may have running or waiting at once per process; more get "
        "429 TOO_MANY_CONCURRENT_REQUESTS with Retry-After (a cached reference needs no encode).",
    )
    clone_max_waiting_encodes: int = Field(
        8,
        ge=0,
        description="Reference encodes that may wait for a free encoder per process; more get 503 "
        "SERVICE_UNAVAILABLE with Retry-After.",
    )
    clone_encode_wait_s: float = Field(
        30.0,
        gt=0,
        description="Longest an encode waits for a free encoder before 503 SERVICE_UNAVAILABLE with "
        "Retry-After.",
    )
    clone_encode_deadline_s: float = Field(
        60.0,
        gt=0,
        description="Longest one reference encode may take, waiting for the encoder included: past it "
        "503 SERVICE_UNAVAILABLE (still waiting) or 504 GENERATION_TIMEOUT (encoding), both with Retry-After; the "
        "encoder slot is given back at once.",
    )
    clone_max_concurrent_encodes: int = Field(
        2,
        ge=1,
        description="Reference encodes (voice creation, per-request cloning) running at once per process; "
        "more wait their turn.",
    )
    clone_reference_cache_size: int = Field(
        128,
        ge=0,
        description="Encoded references kept per process, by SHA-256 of the audio bytes (LRU), so a "
        "reference sent again is not encoded again; 0: no cache.",
    )


class ContinuitySettings(_Group):
    """Request stitching, and keeping the voice of an earlier request."""

    continuity_retention_s: float = Field(
        7200.0,
        ge=1,
        description="How long a finished synthesis is remembered (by its X-Server-Request-ID, per API "
        "key) for previous_request_ids and POST /v1/audio/voices from_request_id: its 32 global tokens, the tail of its "
        "semantic tokens and the text that tail speaks; never audio. Where the voice library uses PostgreSQL or "
        "Supabase this store is shared by every container; otherwise it is a per-process cache.",
    )
    continuity_prefix_s: float = Field(
        4.0,
        ge=3,
        le=6,
        description="Seconds of a previous request's speech (semantic tokens, 50 a second, and the "
        "words they speak) that a stitched request's prompt continues; also how much every request remembers.",
    )


class JobsSettings(_Group):
    """Long-form jobs (POST /v1/tts/jobs): documents rendered chapter by chapter in the device's idle time."""

    jobs_enabled: bool = Field(True, description="Serve the jobs routes and run this process's job worker.")
    jobs_dir: Path = Field(
        Path("var/jobs"),
        description="Where jobs keep their chapter files and books (one folder per job), and their state in "
        "jobs.sqlite3 when the service has no PostgreSQL (TTS_DATABASE_URL). On Modal: the jobs Volume.",
    )
    jobs_max_chars: int = Field(
        2_000_000, ge=1, description="Longest document one job takes, in characters of its chapters' text."
    )
    jobs_max_upload_mb: int = Field(
        50, ge=1, description="Largest document file a job accepts (EPUB, PDF, DOCX, Markdown, text)."
    )
    jobs_read_memory_mb: int = Field(
        512,
        ge=64,
        description="Address space of the process that reads an uploaded document (a ZIP or PDF bomb stops there, "
        "not in the server).",
    )
    jobs_read_timeout_s: float = Field(
        60.0, gt=0, description="Longest a document's reading may take before the upload is refused."
    )
    jobs_max_concurrent: int = Field(
        1, ge=1, description="Jobs this process renders at once (each renders one chapter at a time)."
    )
    jobs_lease_s: float = Field(
        30.0,
        gt=0,
        description="A running job's lease, renewed while it runs: a process that dies leaves its job to another "
        "(or to itself after a restart) once this has passed.",
    )
    jobs_progress_s: float = Field(
        2.0,
        gt=0,
        description="How often a running chapter stores its progress (audio seconds so far) and renews its lease; "
        "a job with no word for five times this shows `stalled`.",
    )
    jobs_eta_rtf: float = Field(
        1.0,
        gt=0,
        description="Seconds of rendering per second of audio that a job's ETA assumes before any chapter has "
        "measured it: the service's figure (a GPU renders far faster than real time) so a new job shows an "
        "estimate from its submission; this process's last finished chapter replaces it, and a job's own "
        "chapters replace that.",
    )
    jobs_queued_chars_per_key: int = Field(
        10_000_000,
        ge=1,
        description="Characters not yet rendered one key may have in the jobs it keeps (queued, running, and failed "
        "or cancelled ones, which may be resumed, until they are deleted or expire).",
    )
    jobs_stored_mb_per_key: int = Field(
        5_000,
        ge=1,
        description="Megabytes one key's kept jobs may hold, their files (chapters, books) and their text, failed "
        "or not; more refuses new jobs.",
    )
    jobs_min_free_mb: int = Field(
        500,
        ge=0,
        description="Free space the jobs directory's disk keeps: below it new jobs are refused (503) and the "
        "worker starts no chapter.",
    )
    jobs_reads_per_minute: int = Field(
        600,
        ge=1,
        description="Job reads and cancels (status, lists, files, progress streams) one key may make per minute, "
        "counted apart from its request rate so polling a job leaves its synthesis budget alone.",
    )
    jobs_events_per_key: int = Field(
        8, ge=1, description="Progress streams (GET /v1/tts/jobs/{id}/events) one key may hold open at once."
    )
    jobs_retention_s: float = Field(
        604_800.0,
        ge=0,
        description="How long a finished, failed or cancelled job (its row and files) is kept after it ended; "
        "the worker deletes older ones when idle. 0 keeps them.",
    )
