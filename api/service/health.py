"""Liveness, readiness and Prometheus scrape routes."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.delivery import refresh_queue_gauges
from api.deps import Access, Model, SettingsDep, check_admin
from shared.metrics import render_metrics
from shared.settings import APP_VERSION

router = APIRouter(tags=["health"])


@router.get("/v1/tts/health", summary="Liveness and model state")
async def health(model: Model) -> JSONResponse:
    report = model.health()
    # Liveness: 200 while the process can answer; an unhealthy container answers 503 so Modal/LBs replace it.
    status_code = 503 if report.status == "unhealthy" else 200
    return JSONResponse(
        asdict(report),
        status_code=status_code,
        headers={"X-Model-Version": report.model_version, "X-App-Version": APP_VERSION},
    )


@router.get("/v1/tts/ready", summary="Readiness: 200 once models are loaded and warmed up")
async def ready(model: Model) -> JSONResponse:
    report = model.health()
    body = {"ready": model.ready, "state": report.state, "error": report.error}
    return JSONResponse(body, status_code=200 if model.ready else 503)


@router.get("/metrics", include_in_schema=False)
@router.get("/v1/tts/metrics", summary="Prometheus metrics (text format)")
async def prometheus_metrics(
    request: Request, settings: SettingsDep, access: Access, model: Model
) -> Response:
    if settings.deployment.metrics_require_admin:
        check_admin(request)  # TTS_METRICS_REQUIRE_ADMIN: scrape with X-Admin-Key / Bearer admin key
    refresh_queue_gauges()
    model.refresh_codec_gauges()
    access.request_logger.refresh_gauges()
    payload, content_type = render_metrics()
    return Response(payload, media_type=content_type)
