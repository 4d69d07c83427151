"""`POST /v1/tts/generate`: streaming and non-streaming synthesis."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response

from api.access import AccessGrant, require_access
from api.delivery import Delivery
from api.errors import ApiError
from api.schemas import TTSGenerateRequest
from services.synthesis import (
    SamplingOptions,
    SynthesisError,
    SynthesisJob,
    SynthesisRequest,
    check_plan_fits,
    plan_request_text,
)

logger = logging.getLogger("api.tts")
router = APIRouter(tags=["tts"])

_ERROR_RESPONSES = {
    400: {"description": "Invalid request (error envelope)"},
    401: {"description": "Missing or invalid API key"},
    403: {"description": "Key suspended or out of credits"},
    413: {"description": "Text or body too long"},
    429: {"description": "Rate or concurrency limit (Retry-After set)"},
    503: {"description": "Model not loaded or GPU fault"},
    504: {"description": "Generation timed out"},
}


@dataclass(frozen=True)
class SynthesisParams:
    """The request, reduced to what the pipeline needs (shared by the native and OpenAI routes)."""

    text: str
    speaker: str | None
    audio_format: str
    sample_rate: int
    want_sr: bool
    stream: bool
    normalize: bool
    chunking: bool
    sampling: SamplingOptions
    speed: float | None = None
    normalize_verbose: bool = False  # return the normalised text (X-Normalized-Text) and log it at DEBUG
    # Request field names for error messages (the OpenAI route calls them `input` and `voice`).
    text_field: str = "text"
    voice_field: str = "speaker"


def sampling_from(body: TTSGenerateRequest, request: Request) -> SamplingOptions:
    settings = request.app.state.settings
    return SamplingOptions(
        temperature=body.temperature if body.temperature is not None else settings.default_temperature,
        top_k=body.top_k if body.top_k is not None else settings.default_top_k,
        top_p=body.top_p if body.top_p is not None else settings.default_top_p,
        max_tokens=body.max_tokens if body.max_tokens is not None else settings.default_max_tokens,
        repetition_penalty=(body.repetition_penalty if body.repetition_penalty is not None
                            else settings.default_repetition_penalty),
        seed=body.seed,
    )


def resolve_voice(request: Request, name: str | None, speed: float | None = None, field: str = "speaker"):
    runtime = request.app.state.runtime
    from core.voices import UnknownVoiceError

    wanted = name or runtime.voices.default_voice_id
    try:
        voice = runtime.voices.resolve(wanted)
    except UnknownVoiceError as exc:
        raise ApiError("INVALID_SPEAKER", f"Invalid '{field}': {exc}", param=field) from exc
    if speed is not None:
        voice = runtime.voices.with_speed(voice, speed)
    return voice


# Bytes per sample of each format, roughly (compressed formats at their usual bitrates), to refuse before any GPU
# work a non-streaming request whose file could not be buffered; speech runs ~14 characters a second, 12 is slow.
_BYTES_PER_SAMPLE = {"wav": 2.0, "pcm": 2.0, "flac": 1.2, "mulaw": 1.0, "mp3": 0.25, "opus": 0.15, "aac": 0.25}


def estimated_audio_bytes(characters: int, audio_format: str, sample_rate: int) -> int:
    return int(characters / 12 * sample_rate * _BYTES_PER_SAMPLE.get(audio_format, 2.0))


NORMALIZED_HEADER_MAX_CHARS = 2000  # of the normalised text, before percent-encoding (headers stay < 8 KB or so)


def normalized_text_headers(text: str) -> dict[str, str]:
    """`X-Normalized-Text`: the normalised text, percent-encoded (UTF-8), cut at NORMALIZED_HEADER_MAX_CHARS
    characters with `X-Normalized-Text-Truncated: true`. POST /v1/tts/normalize returns it whole."""
    shown = text[:NORMALIZED_HEADER_MAX_CHARS]
    headers = {"X-Normalized-Text": quote(shown, safe="")}
    if len(shown) < len(text):
        headers["X-Normalized-Text-Truncated"] = "true"
    return headers


async def start_synthesis(request: Request, params: SynthesisParams, grant: AccessGrant, *, sse: bool = False,
                          extra_headers: dict[str, str] | None = None) -> Response:
    """Validate against the loaded models, build the job, and answer (streaming or complete)."""
    try:
        return await _start_synthesis(request, params, grant, sse=sse, extra_headers=extra_headers)
    except BaseException:
        if grant.delivery is None:  # failed before the delivery took over accounting: give back slot and credits
            await grant.abandon()
        raise


async def _start_synthesis(request: Request, params: SynthesisParams, grant: AccessGrant, *, sse: bool,
                           extra_headers: dict[str, str] | None) -> Response:
    runtime = request.app.state.runtime
    settings = request.app.state.settings
    started = request.scope.get("state", {}).get("received_at", time.perf_counter())
    if len(params.text) > settings.max_text_chars:
        raise ApiError("TEXT_TOO_LONG", f"Invalid '{params.text_field}': at most {settings.max_text_chars} "
                       f"characters per request on this deployment, got {len(params.text)}; split the text.",
                       param=params.text_field)
    detector = getattr(request.app.state, "gpu_fault_detector", None)
    if detector is not None and detector.tripped:
        raise ApiError("GPU_FAULT", "This container hit a GPU fault and is being replaced; retry the request.",
                       headers={"Retry-After": "1"})
    if not runtime.ready:
        raise ApiError("MODEL_NOT_LOADED", f"The model is not ready yet (state: {runtime.state.value}); retry shortly.",
                       headers={"Retry-After": "5"})
    voice = resolve_voice(request, params.speaker, params.speed, params.voice_field)
    def plan_and_check():
        text_plan = plan_request_text(params.text, settings, normalize=params.normalize, chunking=params.chunking)
        check_plan_fits(runtime, text_plan, voice)
        if not params.stream and not sse:
            estimate = estimated_audio_bytes(len(text_plan.text), params.audio_format, params.sample_rate)
            if estimate > settings.max_buffered_audio_mb * 2**20:
                raise SynthesisError(
                    "PAYLOAD_TOO_LARGE",
                    f"Invalid 'stream': this text makes about {estimate // 2**20} MiB of {params.audio_format} audio, "
                    f"more than a non-streaming response holds ({settings.max_buffered_audio_mb} MiB); "
                    "send stream=true.", "stream")
        return text_plan

    try:
        # Off the event loop: normalising and tokenising 50,000 characters takes long enough to stall others.
        plan = await asyncio.to_thread(plan_and_check)
    except SynthesisError as exc:
        message = exc.message.replace("'text'", f"'{params.text_field}'")
        param = params.text_field if exc.param in (None, "text") else exc.param
        raise ApiError(exc.code, message, param=param) from exc
    request_id = request.scope["state"]["request_id"]
    synth_request = SynthesisRequest(
        request_id=request_id, text=params.text, voice=voice, sampling=params.sampling,
        audio_format=params.audio_format, sample_rate=params.sample_rate, want_sr=params.want_sr,
        stream=params.stream, normalize=params.normalize, chunking=params.chunking,
    )
    # Credits count what the model is asked to speak (normalised text: "1,000" costs "one thousand").
    await grant.check_credits(len(plan.text))
    job = SynthesisJob(runtime, synth_request, plan)
    speaker_label = voice.id
    from shared import metrics

    metrics.REQUESTS.labels(speaker_label, "true" if params.stream else "false", params.audio_format).inc()
    logger.info("request_received", extra={
        "event": "request_received", "speaker": speaker_label, "format": params.audio_format,
        "sample_rate": params.sample_rate, "stream": params.stream, "text_length": len(params.text),
        "text_chunks": len(plan.chunks), "key_id": grant.key_id,
    })
    if params.normalize_verbose:
        # Opted in by the client: the only place the service logs (normalised) request text.
        logger.debug("normalized_text", extra={"event": "normalized_text", "normalized": plan.text,
                                               "text_chunks": len(plan.chunks)})
    headers = {
        "X-Model-Version": runtime.model_version,
        "X-Format": params.audio_format,
        "X-Sample-Rate": str(params.sample_rate),
        "X-Stream": "true" if params.stream else "false",
        "X-Text-Chunked": "true" if plan.chunked else "false",
        "X-Chunking-Enabled": "true" if params.chunking else "false",
        **(normalized_text_headers(plan.text) if params.normalize_verbose else {}),
        "X-SR-Applied": "true" if job.sr_applied else "false",
        "X-Voice": speaker_label,
        **grant.headers,
        **(extra_headers or {}),
    }
    delivery = Delivery(job, started=started, speaker_label=speaker_label, headers=headers,
                        on_complete=grant.on_complete, stall_timeout_s=settings.send_stall_timeout_s,
                        realtime_pacing=settings.realtime_pacing,
                        gpu_faults=getattr(request.app.state, "gpu_fault_detector", None),
                        max_buffered_bytes=settings.max_buffered_audio_mb * 2**20)
    grant.attach(delivery)
    if params.stream or sse:
        return await delivery.streaming_response(sse=sse)
    return await delivery.complete_response(request.receive)


@router.post("/v1/tts/generate", responses=_ERROR_RESPONSES, summary="Synthesise speech (streaming or complete file)")
async def generate(body: TTSGenerateRequest, request: Request, grant: AccessGrant = Depends(require_access)) -> Response:
    rate = body.output_rate()
    params = SynthesisParams(
        text=body.text, speaker=body.speaker, audio_format=body.format, sample_rate=rate,
        want_sr=rate > 16000, stream=body.stream, normalize=body.normalize, chunking=body.chunking,
        sampling=sampling_from(body, request), normalize_verbose=body.normalize_verbose,
    )
    return await start_synthesis(request, params, grant)
