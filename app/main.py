"""create_app(settings): the API (no models, no pipeline: workers run the tasks); `app.main:app`
is the same built from the environment, for `uvicorn app.main:app` and gunicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from app import errors
from app import metrics as app_metrics
from app.api import asr, health, models, openai, services, speakers, speech, tasks, ui, workers
from app.api.deps import Waiter
from app.api.schemas import one_file_a_field
from app.auth import Guard
from app.logs import configure_logging
from app.metrics import HttpMetrics, Metrics
from app.settings import Settings
from app.store.db import make_engine
from app.store.tasks import TaskStore
from app.worker.queue import make_queue
from app.worker.supervisor import Supervisor

DESCRIPTION = """Speech to text with word-level timings and speakers (whisperX), as a REST
service. Submit audio or video, get a task `identifier`, poll `GET /task/{identifier}` or
receive a callback. Drop-in compatible with whisperX-FastAPI."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    store = TaskStore(make_engine(settings.db_url))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        store.create_schema()
        supervisor = Supervisor(settings)
        supervisor.start()
        yield
        supervisor.stop()
        store.engine.dispose()

    app = FastAPI(
        title="whisperX REST service", description=DESCRIPTION, version="1.0.0",
        lifespan=lifespan, dependencies=[Depends(one_file_a_field)],
    )  # fmt: skip
    app.state.settings, app.state.store = settings, store
    app.state.queue, app.state.waiter = make_queue(settings), Waiter(store)
    errors.install(app)
    app.add_middleware(errors.BodyLimit, max_bytes=settings.max_upload_mb << 20)
    metrics = app.state.metrics = Metrics(store, app.version)
    app.add_middleware(Guard, settings=settings, refused=metrics.refusals)  # 401/429 first
    app.add_middleware(HttpMetrics, metrics=metrics)  # outermost: refusals are counted too
    for module in (speech, services, tasks, speakers, models, workers, health, openai, asr, ui,
                   app_metrics):  # fmt: skip
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=ui.ASSETS), name="ui")
    return app


def __getattr__(name: str) -> Any:
    """`app.main:app`, built from the environment on first use (importing stays free)."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
