"""Liveness and readiness probes, and the redirect from / to the docs."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse

from app.api.deps import QueueDep, SettingsDep, StoreDep

router = APIRouter(tags=["Health"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/docs")


@router.get("/health")
async def health(settings: SettingsDep) -> dict[str, str]:
    """The service is up."""
    return {"status": "ok", "message": "Service is running", "environment": settings.environment}


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers (never blocked by a running task: tasks run in workers)."""
    return {
        "status": "ok",
        "timestamp": datetime.now(UTC).isoformat(),
        "message": "Application is live",
    }


@router.get("/health/ready", responses={503: {"description": "Not ready; `checks` says why."}})
def ready(store: StoreDep, queue: QueueDep) -> JSONResponse:
    """Ready to run tasks: the database (and with QUEUE=celery the broker) answers, ffmpeg is
    installed and a worker is alive and warm; 503 otherwise, with what is missing."""
    checks = {"database": "ok", "ffmpeg": "ok" if shutil.which("ffmpeg") else "missing"}
    workers = []
    try:
        store.ping()
        workers = store.workers()
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    if queue.name != "local":
        try:
            queue.ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
    warm = [w for w in workers if w.state != "warming"]
    warming = f", {len(workers) - len(warm)} warming" if len(warm) < len(workers) else ""
    checks["workers"] = (
        f"ok: {len(warm)} alive{warming}" if warm
        else f"warming: {len(workers)} loading models" if workers
        else "none alive: tasks wait until a worker starts (make worker)"
    )  # fmt: skip
    ok = all(v.startswith("ok") for v in checks.values())
    body = {
        "status": "ok" if ok else "error",
        "message": "Ready" if ok else "Not ready",
        "checks": checks,
        "models_loaded": sorted({m["name"] for w in workers for m in w.models if m.get("kind") == "whisper"}),
        "devices": sorted({w.device for w in workers if w.device}),
    }  # fmt: skip
    return JSONResponse(body, status_code=200 if ok else 503)
