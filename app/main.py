"""create_app(settings): the FastAPI application, with its store, models and workers."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app import errors
from app.api import health, models, openai, services, speech, tasks
from app.auth import Guard
from app.net import RedactAccessLog
from app.pipeline.models import ModelCache
from app.settings import Settings
from app.store.db import make_engine
from app.store.tasks import TaskStore
from app.worker.job import Runtime
from app.worker.local import LocalQueue

DESCRIPTION = """Speech to text with word-level timings and speakers (whisperX), as a REST
service. Submit audio or video, get a task `identifier`, poll `GET /task/{identifier}` or
receive a callback. Drop-in compatible with whisperX-FastAPI."""

log = logging.getLogger("app")


def _configure_logging(settings: Settings) -> None:
    # pyannote sends usage telemetry by default; a self-hosted service does not phone home.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    level = "DEBUG" if settings.dev else settings.log_level.upper()
    logging.getLogger("app").setLevel(level)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessLog) for f in access.filters):
        access.addFilter(RedactAccessLog())  # callback URLs in query strings may hold tokens
    if settings.filter_warning:
        for module in (
            "pyannote",
            "torchaudio",
            "speechbrain",
            "lightning",
            "pytorch_lightning",
            "torch",
            "transformers",
            "whisperx",
            "pkg_resources",
            "resemblyzer",
        ):
            warnings.filterwarnings("ignore", module=module)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*torchcodec.*")


def create_app(settings: Settings | None = None, cache: ModelCache | None = None) -> FastAPI:
    """The application; `cache` lets several apps (tests) share loaded models."""
    settings = settings or Settings()
    _configure_logging(settings)
    store = TaskStore(make_engine(settings.db_url))
    cache = cache or ModelCache(settings.model_idle_seconds)
    runtime = Runtime(settings=settings, store=store, cache=cache)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        store.create_schema()
        queue = LocalQueue(runtime, settings.max_concurrent_tasks)
        app.state.queue = queue
        queue.start()
        if settings.preload_models:
            await run_in_threadpool(_preload, runtime)
        yield
        queue.stop()
        runtime.webhooks.shutdown(wait=False, cancel_futures=True)
        store.engine.dispose()

    app = FastAPI(
        title="whisperX REST service", description=DESCRIPTION, version="1.0.0", lifespan=lifespan
    )
    app.state.settings, app.state.store, app.state.cache = settings, store, cache
    app.state.runtime = runtime
    errors.install(app)
    app.add_middleware(errors.BodyLimit, max_bytes=settings.max_upload_mb << 20)
    app.add_middleware(Guard, settings=settings)  # outermost: 401/429 before any body is read
    for module in (speech, services, tasks, models, health, openai):
        app.include_router(module.router)
    return app


def _preload(runtime: Runtime) -> None:
    from app.pipeline.transcribe import load_pipeline

    s = runtime.settings
    assert s.device is not None and s.compute_type is not None
    load_pipeline(runtime.cache, s, s.whisper_model, s.device, s.compute_type)
    log.info("preloaded %s", s.whisper_model)
