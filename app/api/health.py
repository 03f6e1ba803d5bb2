"""Liveness and readiness probes, and the redirect from / to the docs."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from app.api.deps import SettingsDep, StoreDep

router = APIRouter(tags=["Health"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")


@router.get("/health")
async def health(settings: SettingsDep) -> dict:
    """The service is up."""
    return {"status": "ok", "message": "Service is running", "environment": settings.environment}


@router.get("/health/live")
async def live() -> dict:
    """The process answers (never blocked by a running task)."""
    return {
        "status": "ok",
        "timestamp": datetime.now(UTC).isoformat(),
        "message": "Application is live",
    }


@router.get("/health/ready")
def ready(request: Request, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Ready to take tasks: the database answers and the decoder is installed (503 otherwise)."""
    checks = {"database": "ok", "ffmpeg": "ok" if shutil.which("ffmpeg") else "missing"}
    try:
        store.ping()
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = {
        "status": "ok" if ok else "error",
        "message": "Ready" if ok else "Not ready",
        "checks": checks,
        "models_loaded": [str(k[1]) for k in request.app.state.cache.loaded() if k[0] == "whisper"],
        "device": settings.device,
    }
    return JSONResponse(body, status_code=200 if ok else 503)
