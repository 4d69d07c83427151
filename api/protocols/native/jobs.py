"""Long-form jobs (docs/api/jobs.md): `POST /v1/tts/jobs` takes a document (JSON text or Markdown, or a multipart
upload: EPUB, PDF, DOCX, Markdown, text) and answers 202 with the job; reading, listing, progress events (SSE), chapter and
book downloads, cancel (DELETE on a queued or running job), removal (DELETE on an ended one) and resume. Another
key's job answers 404, as an unknown id does. Every route is rate-limited per key (reads apart); text a
database cannot store (NUL and other control characters, lone surrogates) is refused with 400 before it reaches
one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import ConfigDict, Field, ValidationError

from api.deps import Grant, Speech, services_of
from api.errors import ApiError, body_validation_error
from api.pronunciation_schemas import LexiconField, LocatorsField
from audio.encoders import format_info
from services.access.rate_limit import rate_refusal
from services.errors import ServiceError
from services.jobs import JobService
from services.jobs.submission import JobSubmission
from services.jobs.tags import file_name
from services.jobs.text_checks import unstorable
from services.jobs.watch import RECONNECT_MS
from services.keys.records import ApiKeyRecord

router = APIRouter(tags=["jobs"])

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request or unreadable document (error envelope)"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such job for this key"},
    409: {"description": "The job cannot be resumed (error envelope)"},
    413: {"description": "Document too long"},
}
MAX_AUTHOR_CHARS = 500
# Fields that are JSON values inside a multipart form.
JSON_FORM_FIELDS = ("lexicon", "pronunciation_dictionary_locators")


class JobBody(LexiconField, LocatorsField):
    """The job's fields, as JSON or as form fields beside an uploaded `file` (`lexicon` and
    `pronunciation_dictionary_locators` as JSON text there)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    input_format: Literal["text", "markdown"] | None = None
    voice: str | None = None
    format: str = "mp3"
    book_format: str | None = "m4b"
    sample_rate: int = 24000
    speed: float | None = None
    title: str | None = None
    # The book's author in its tags and file name (else the document's own, where it names one).
    author: str | None = Field(None, min_length=1, max_length=MAX_AUTHOR_CHARS)

    def submission(
        self, data: bytes, filename: str | None = None, content_type: str | None = None
    ) -> JobSubmission:
        return JobSubmission(
            data,
            filename,
            content_type,
            input_format=self.input_format,
            voice=self.voice,
            format=self.format,
            book_format=self.book_format,
            sample_rate=self.sample_rate,
            speed=self.speed,
            title=self.title,
            author=self.author,
            lexicon=tuple(
                (rule.text, rule.alias, rule.case_sensitive, rule.word_boundaries)
                for rule in self.lexicon or ()
            ),
            dictionaries=tuple((locator.dictionary_id, locator.version_id) for locator in self.locators()),
        )


async def _jobs(request: Request) -> JobService:
    jobs = services_of(request).jobs
    if jobs is None:
        raise ApiError("NOT_FOUND", "Jobs are disabled on this server (TTS_JOBS_ENABLED=false).")
    return jobs


async def _key(request: Request) -> ApiKeyRecord:
    """Reads and cancels authenticate the key and count against its per-minute rate of job reads
    (TTS_JOBS_READS_PER_MINUTE, apart from its request rate), without taking a concurrency slot (progress streams
    have their own cap: services/jobs/watch.py)."""
    access = services_of(request).access
    try:
        key = await access.authenticate(request.headers, request.client.host if request.client else None)
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None
    if access.authenticator is not None:
        limit = access.settings.jobs.jobs_reads_per_minute
        decision = await access.limiter.check_rate(f"{key.key_id}:job-reads", limit)
        if not decision.allowed:
            refusal = rate_refusal(decision)
            raise ApiError(refusal.code, refusal.message, headers=decision.headers())
    return key


Jobs = Annotated[JobService, Depends(_jobs)]
Key = Annotated[ApiKeyRecord, Depends(_key)]


async def _read_body(request: Request) -> JobSubmission:
    """The job as sent: JSON, or multipart with the document as a `file` part (or a `text` field)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        fields: dict[str, Any] = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        if fields.get("book_format") in ("", "null", "none"):
            fields["book_format"] = None
        for name in JSON_FORM_FIELDS:
            if name in fields:
                try:
                    fields[name] = json.loads(fields[name])
                except (ValueError, RecursionError):  # RecursionError: hostile nesting, a client error
                    raise ApiError("VALIDATION_ERROR", f"Field {name!r} must be JSON.", param=name) from None
        body = _validated(fields)
        if upload is None or isinstance(upload, str):
            if body.text is None:
                raise ApiError(
                    "VALIDATION_ERROR", "Send the document as a 'file' part or a 'text' field.", param="file"
                )
            return body.submission(body.text.encode("utf-8"))
        return body.submission(await upload.read(), upload.filename, upload.content_type)
    try:
        raw = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: hostile nesting ([[[[...]]]]), a client error
        raise ApiError(
            "INVALID_JSON", "The body is not JSON (or send multipart/form-data with a 'file')."
        ) from None
    if not isinstance(raw, dict):
        raise ApiError("VALIDATION_ERROR", "The body must be a JSON object.")
    body = _validated(raw)
    if body.text is None:
        raise ApiError("VALIDATION_ERROR", "Field 'text' is required (or upload a 'file').", param="text")
    return body.submission(body.text.encode("utf-8"))


def _validated(fields: dict[str, Any]) -> JobBody:
    bad = unstorable(fields)
    if bad is not None:
        name, problem = bad
        raise ApiError("VALIDATION_ERROR", f"Invalid {name[:64]!r}: {problem}.", param=name[:64])
    try:
        return JobBody.model_validate(fields)
    except ValidationError as exc:
        raise body_validation_error([dict(error) for error in exc.errors()]) from None


@router.post("/v1/tts/jobs", status_code=202, responses=ERROR_RESPONSES, summary="Queue a long-form job")
async def submit_job(request: Request, grant: Grant, speech: Speech, jobs: Jobs) -> JSONResponse:
    jobs.check_credits(grant.key)  # before the body is read
    job = await jobs.submit(grant.key, speech, await _read_body(request))
    return JSONResponse(jobs.view(job), status_code=202)


@router.get("/v1/tts/jobs", responses=ERROR_RESPONSES, summary="The key's jobs, newest first")
async def list_jobs(key: Key, jobs: Jobs) -> dict[str, Any]:
    return {"jobs": [jobs.view(job) for job in await jobs.jobs(key.key_id)]}


@router.get("/v1/tts/jobs/{job_id}", responses=ERROR_RESPONSES, summary="A job and its progress")
async def get_job(job_id: str, key: Key, jobs: Jobs) -> dict[str, Any]:
    return jobs.view(await jobs.job(job_id, key.key_id))


@router.delete(
    "/v1/tts/jobs/{job_id}",
    status_code=202,
    responses={**ERROR_RESPONSES, 204: {"description": "The ended job and its files are deleted"}},
    summary="Cancel a queued or running job; delete an ended one",
)
async def delete_job(job_id: str, key: Key, jobs: Jobs) -> Response:
    job = await jobs.cancel_or_remove(job_id, key.key_id)
    if job is None:
        return Response(status_code=204)
    return JSONResponse(jobs.view(job), status_code=202)


@router.post(
    "/v1/tts/jobs/{job_id}/resume",
    status_code=202,
    responses=ERROR_RESPONSES,
    summary="Resume a failed or cancelled job from its first chapter not done",
)
async def resume_job(job_id: str, key: Key, jobs: Jobs) -> JSONResponse:
    return JSONResponse(jobs.view(await jobs.resume(job_id, key.key_id)), status_code=202)


@router.get("/v1/tts/jobs/{job_id}/events", responses=ERROR_RESPONSES, summary="Progress events (SSE)")
async def job_events(job_id: str, key: Key, jobs: Jobs) -> StreamingResponse:
    try:
        events = await jobs.events(job_id, key.key_id)  # 404 and 429 before the stream starts
    except ServiceError as exc:
        raise ApiError.from_service(exc) from None

    async def body() -> AsyncIterator[bytes]:
        async for event, data in events:
            # `shutdown`: the server stops; the job goes on (here after a restart, or on another replica).
            retry = f"retry: {RECONNECT_MS}\n" if event == "shutdown" else ""
            yield f"event: {event}\n{retry}data: {data}\n\n".encode()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/v1/tts/jobs/{job_id}/chapters/{index}", responses=ERROR_RESPONSES, summary="A finished chapter")
async def chapter_file(job_id: str, index: int, key: Key, jobs: Jobs) -> FileResponse:
    job = await jobs.job(job_id, key.key_id)
    path = await jobs.chapter_file(job_id, key.key_id, index)
    fmt = job.options.format
    title = next((c.title for c in job.chapters if c.index == index), None)
    name = file_name(
        job.title, f"{index:03d} {title or ''}", fallback=f"{job_id}-{index:03d}", suffix=path.suffix
    )
    return FileResponse(path, media_type=format_info(fmt).content_type, filename=name)


@router.get(
    "/v1/tts/jobs/{job_id}/book", responses=ERROR_RESPONSES, summary="The whole work, with chapter marks"
)
async def book_file(job_id: str, key: Key, jobs: Jobs) -> FileResponse:
    path, fmt = await jobs.book_file(job_id, key.key_id)
    media_type = "audio/mp4" if fmt == "m4b" else "audio/mpeg"
    job = await jobs.job(job_id, key.key_id)
    name = file_name(job.options.author, job.title, fallback=job_id, suffix=path.suffix)
    return FileResponse(path, media_type=media_type, filename=name)
