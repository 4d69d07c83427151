"""Per-stage counts of one request's pipeline (where a later stage saw less than an earlier one, audio was lost)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PipelineStats:
    """Per-stage counts for one request: where a later stage saw less than an earlier one, audio was lost."""

    llm_tokens: int = 0
    semantic_tokens: int = 0
    decoded_chunks: int = 0
    # decode windows cut short because the listener was about to run dry (DecodePlanner.cut)
    cut_windows: int = 0
    decoded_samples: int = 0
    time_stretch: float = 1.0  # the tempo change applied after decoding (speed); 1.0: none
    stretched_samples: int = 0  # 16 kHz samples out of the time-stretch (when there is one)
    sr_chunks: int = 0
    sr_samples: int = 0
    output_samples: int = 0
    encoded_frames: int = 0
    encoded_bytes: int = 0
    sent_chunks: int = 0
    sent_bytes: int = 0
    sent_samples: int = 0  # output-rate samples in the items handed to the consumer
    text_chunks: int = 0
    text_chunks_done: int = 0
    generation_done: bool = False
    decode_done: bool = False
    encode_done: bool = False
    send_done: bool = False
    global_tokens_per_chunk: list[tuple[int, ...]] = field(default_factory=list)
    decoded_samples_per_chunk: list[int] = field(default_factory=list)  # 16 kHz samples per text chunk
    # Engine ids (one per decode step) generated before the first semantic token, and before the first audio chunk
    # could be decoded (first text chunk): the steps a listener waits for, whatever the timing.
    preamble_ids: int | None = None
    first_audio_engine_ids: int | None = None
    producer_waits: int = 0
    # Generation guards (services/pipeline/chunk_guards.py): text chunks generated again, streamed chunks cut,
    # and every trip as "guard:action". Discarded tries are taken out of the token and sample counts above.
    chunks_retried: int = 0
    chunks_cut: int = 0
    chars_cut: int = (
        0  # characters of cut chunks that their sent audio does not cover: not charged (chunk_guards)
    )
    guard_events: list[str] = field(default_factory=list)
    max_queue_depth: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["global_tokens_per_chunk"] = [list(g) for g in self.global_tokens_per_chunk]
        return data
