"""The FastAPI app factory: `uvicorn --factory api:create_app` locally, and Modal's asgi_app on the GPU."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.access_log import AccessLogMiddleware
from api.cors import install_cors
from api.deps import Services, check_upload_credentials
from api.errors import install_error_handlers
from api.middleware import BodySizeLimitMiddleware, HttpMetricsMiddleware, RequestIdMiddleware
from api.protocols.cartesia import errors as cartesia_errors
from api.protocols.cartesia import routes as cartesia_http
from api.protocols.cartesia import socket as cartesia_socket
from api.protocols.cartesia import voices as cartesia_voices
from api.protocols.elevenlabs import dialogue as elevenlabs_dialogue
from api.protocols.elevenlabs import errors as elevenlabs_errors
from api.protocols.elevenlabs import pronunciation as elevenlabs_pronunciation
from api.protocols.elevenlabs import routes as elevenlabs_http
from api.protocols.elevenlabs import socket as elevenlabs_socket
from api.protocols.elevenlabs import subscription as elevenlabs_subscription
from api.protocols.elevenlabs import voices as elevenlabs_voices
from api.protocols.http_errors import DialectErrorsMiddleware
from api.protocols.native import jobs, normalize, voice_pinning, voices
from api.protocols.native import routes as tts
from api.protocols.native import socket as ws
from api.protocols.openai import routes as openai_compat
from api.service import debug, health, keys, models, playground
from api.socket_guard import CoolingGate
from api.upload_grant import grant_before_upload
from core.clone import MAX_REFERENCE_BYTES
from services.access import AccessServices
from services.continuity import Continuity
from services.deployment.metrics_push import MetricsPusher
from services.deployment.missing_package import exit_after_shutdown, stop_for_missing_package
from services.deployment.pin_voices import RuntimePinning, warmup_step_for
from services.deployment.runtime import ModelRuntime
from services.jobs import JobService
from services.pipeline.gpu_faults import GpuFaultDetector
from services.pipeline.speech import SpeechService
from services.pronunciation import PronunciationDictionaries
from services.sessions.entrance import SessionEntrance
from services.voice_library import VoiceLibrary
from shared.logging import configure_logging
from shared.settings import APP_VERSION, Settings, get_settings, unknown_variables

logger = logging.getLogger("api.app")

# JSON bodies: 50,000 characters of text may be up to 4 bytes each in UTF-8, escaped; plus the other fields.
MAX_BODY_BYTES = 1_000_000
# Voice uploads (POST /v1/audio/voices only): the largest reference file plus the form's other parts.
MAX_UPLOAD_BYTES = MAX_REFERENCE_BYTES + 64 * 1024
# The dialects' HTTP routes (their keys come in `xi-api-key`, `X-API-Key` or `Authorization: Bearer`, all of which
# check_upload_credentials reads): credentials are checked before their bodies are read, as on ours.
DIALECT_HTTP_ROUTES = (
    re.compile(r"POST /v1/text-to-speech/[^/]+(/stream)?(/with-timestamps)?"),
    re.compile(r"POST /tts/(sse|bytes)"),
    re.compile(r"POST /v1/pronunciation-dictionaries/add-from-(rules|file)"),
)


def playground_url(settings: Settings) -> str | None:
    """The address a browser on this machine opens for the playground (`/` redirects to it); None when it is off.
    A wildcard bind address is no place to browse to, so it is shown as localhost."""
    if not settings.deployment.playground_enabled:
        return None
    host = settings.deployment.host
    host = "localhost" if host in ("", "0.0.0.0", "::", "[::]") else f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.deployment.port}/"


def missing_keys_warning(settings: Settings, demo: bool) -> str | None:
    """The line to log when auth is on and no key exists: every request would get 401, which looks like a broken
    server. The demo checkpoint is left out: without keys, scripts/serve switches auth off for it."""
    access = settings.access
    if demo or not access.auth_enabled or access.key_backend != "static" or access.api_keys_file is not None:
        return None
    if any(key.strip() for key in access.api_keys.split(",")):
        return None
    return (
        "NO API KEYS: auth is on and no key is configured, so every request will get 401; add keys with "
        "TTS_API_KEYS=key1,key2 (or TTS_API_KEYS_FILE), or set TTS_AUTH_ENABLED=false on a trusted network"
    )


def create_app(
    settings: Settings | None = None,
    runtime: ModelRuntime | None = None,
    access: AccessServices | None = None,
    gpu_faults: GpuFaultDetector | None = None,
) -> FastAPI:
    """Build the app. A given `runtime` is used as is (Modal loads it in @modal.enter); otherwise one is
    created and loaded in the background at start-up, and readiness answers 503 until it is warm."""
    settings = settings or get_settings()
    configure_logging(settings.deployment.log_level, settings.deployment.log_json)
    # A mistyped TTS_ variable would otherwise be ignored in silence (warned, not refused: it changes nothing).
    for variable, meant in unknown_variables(os.environ):
        logger.warning(
            "%s names no setting and is ignored%s", variable, f" (did you mean {meant}?)" if meant else ""
        )
    runtime = runtime or ModelRuntime(settings)
    if runtime.warmup_step is None:
        runtime.warmup_step = warmup_step_for(settings)
    access = access or AccessServices(settings)
    # TTS_METRICS_PUSH_URL: push to a Pushgateway (Modal's containers cannot be scraped one by one); None = off.
    pusher = MetricsPusher.from_settings(settings)

    def warn_if_no_keys() -> None:
        line = missing_keys_warning(settings, runtime.is_demo)
        if line is not None:
            logger.warning(line)

    async def start_runtime() -> None:
        await runtime.start()
        if runtime.missing_package is not None:  # a restart would fail the same way: end with a failed start
            app.state.exit_after_shutdown = stop_for_missing_package()
            return
        if runtime.checkpoint is not None:  # whether it is the demo is known once the checkpoint is read
            warn_if_no_keys()
        url = playground_url(settings)
        # The last start-up line, so the address is what a newcomer sees when the log goes quiet.
        if url is not None and runtime.ready:
            logger.info("ready: open the playground at %s", url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wyoming = None
        if (
            settings.wyoming.wyoming_enabled
        ):  # Home Assistant's protocol on its own TCP port (api/protocols/wyoming)
            from api.protocols.wyoming import WyomingServer, check_settings

            check_settings(settings)  # a bind it refuses fails start-up before anything else starts
            wyoming = app.state.wyoming = WyomingServer(app.state.services)
            try:  # a key every connection would be refused with fails start-up too, before anything starts
                await wyoming.check_key()
            except Exception:
                await access.databases.close()  # the pool the key check may have opened
                raise
        if not settings.access.auth_enabled:
            logger.warning("AUTHENTICATION IS DISABLED (TTS_AUTH_ENABLED=false): anyone can use this server")
        elif runtime.checkpoint is not None:  # loaded before the app (Modal): the checkpoint is known now
            warn_if_no_keys()
        await access.start()
        if pusher is not None:
            pusher.start()
        app.state.exit_after_shutdown = False  # set when a missing package ends the start
        load_task = None
        if runtime.state.value == "starting":
            load_task = asyncio.create_task(start_runtime(), name="runtime-start")
        app.state.load_task = load_task
        if wyoming is not None:
            await wyoming.start()
        if job_service is not None:
            await job_service.start()
        try:
            yield
        finally:
            if job_service is not None:  # running chapters are cut (refunded) and their leases given up
                await job_service.close()
            if wyoming is not None:  # its unfinished requests settle before the request log closes
                await wyoming.stop()
            if load_task is not None and not load_task.done():
                load_task.cancel()
            await library.close()
            await continuity.close()
            await dictionaries.close()
            await access.close()
            if pusher is not None:  # after the request log's flush (its counters), before the engine goes
                await pusher.aclose()
            await runtime.shutdown()
            if app.state.exit_after_shutdown:
                exit_after_shutdown()

    app = FastAPI(
        title="Spark-TTS service",
        version=APP_VERSION,
        description="Streaming text-to-speech with Spark-TTS (vLLM + BiCodec + AP-BWE).",
        lifespan=lifespan,
        # Public deployments may hide the schema and the interactive docs (TTS_DOCS_ENABLED=false).
        docs_url="/docs" if settings.deployment.docs_enabled else None,
        redoc_url="/redoc" if settings.deployment.docs_enabled else None,
        openapi_url="/openapi.json" if settings.deployment.docs_enabled else None,
    )
    gpu_faults = gpu_faults or GpuFaultDetector(runtime)
    app.state.metrics_pusher = (
        pusher  # Modal's exit closes it too (idempotent), should the lifespan not have run
    )
    library = VoiceLibrary.from_settings(settings, runtime, runtime, access.databases)
    continuity = Continuity.from_settings(settings, runtime, access.databases)
    dictionaries = PronunciationDictionaries.from_settings(settings, access.databases)
    speech = SpeechService(runtime, settings, gpu_faults, library, continuity, dictionaries)
    job_service = JobService.from_settings(settings, speech, access) if settings.jobs.jobs_enabled else None
    app.state.runtime = runtime  # the composition root's own handle (tests, Modal's host); routes see `model`
    app.state.services = Services(
        settings=settings,
        model=runtime,
        pinning=RuntimePinning(runtime),
        access=access,
        continuity=continuity,
        library=library,
        speech=speech,
        sessions=SessionEntrance(speech, access),
        dictionaries=dictionaries,
        jobs=job_service,
    )
    install_error_handlers(app)
    if settings.deployment.playground_enabled:
        app.include_router(playground.router)
    app.include_router(playground.icon_router)
    for router in (
        health.router,
        tts.router,
        normalize.router,
        openai_compat.router,
        models.router,
        debug.router,
        keys.router,
        voice_pinning.router,
        voices.router,
        ws.router,
        jobs.router,
        elevenlabs_socket.router,
        elevenlabs_http.router,
        elevenlabs_voices.router,
        elevenlabs_dialogue.router,
        elevenlabs_pronunciation.router,
        elevenlabs_subscription.router,
        cartesia_socket.router,
        cartesia_http.router,
        cartesia_voices.router,
    ):
        app.include_router(router)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=MAX_BODY_BYTES,
        timeout_s=settings.limits.body_timeout_s,
        uploads={
            ("POST", "/v1/audio/voices"): MAX_UPLOAD_BYTES,
            ("POST", "/v1/tts/jobs"): settings.jobs.jobs_max_upload_mb * 2**20,
        },
        check_credentials=check_upload_credentials,
        grant_before_upload=grant_before_upload,
        authenticated={
            ("POST", path)
            for path in (
                "/v1/audio/voices",
                "/v1/tts/generate",
                "/v1/audio/speech",
                "/v1/tts/normalize",
                "/v1/tts/jobs",
            )
        },
        authenticated_patterns=DIALECT_HTTP_ROUTES,
        hints={
            "/v1/tts/generate": "A reference recording larger than this goes to POST /v1/audio/voices "
            "(up to 20 MiB); then name the voice by its id."
        },
    )
    install_cors(app, settings.deployment.cors_origins)
    # Inside the request ids (kept on the re-shaped answer), outside every layer that can refuse.
    app.add_middleware(
        DialectErrorsMiddleware, dialects=(elevenlabs_errors.HTTP_ERRORS, cartesia_errors.HTTP_ERRORS)
    )
    app.add_middleware(
        AccessLogMiddleware
    )  # one line per request, with the ids and the dialect-shaped refusal
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HttpMetricsMiddleware)  # sees every answer, the middlewares' own refusals too
    # A flooding key's reconnects, and the native socket's handshakes from an address throttled for wrong keys, are
    # refused before any other layer runs (api/socket_guard.py); inside the proxy headers (the forwarded address).
    app.state.socket_auth_paths = frozenset({ws.WS_PATH})
    app.add_middleware(CoolingGate, state=app.state)
    if (
        settings.access.trusted_proxies
    ):  # outermost: every layer sees the client address the trusted proxy forwarded
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[h.strip() for h in settings.access.trusted_proxies.split(",") if h.strip()],
        )
    return app
