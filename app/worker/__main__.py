"""`python -m app.worker` (`make worker`): one worker in the foreground, with the service's
settings. QUEUE=local: it claims queued tasks from the database; QUEUE=celery: a Celery worker."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from typing import Any

from app.logs import configure_logging
from app.pipeline.models import ModelCache
from app.settings import Settings
from app.store.db import make_engine
from app.store.tasks import TaskStore
from app.webhooks import WebhookSender
from app.worker.janitor import Janitor
from app.worker.job import Runtime, run_claimed
from app.worker.queue import make_queue

log = logging.getLogger("app.worker")

POLL_SECONDS = 0.2
"""How often an idle local worker looks for a queued task."""
OUTAGE_SECONDS = 2.0
"""How often it tries again while the database cannot be reached."""


def start_runtime(
    settings: Settings, cache: ModelCache | None = None, parent: int | None = None
) -> Runtime:
    """Build a worker (resolved settings, store, model cache), register it and start its
    heartbeat, janitor and webhook sender; with `parent`, it dies with that process."""
    if settings.cpu_threads:  # torch (aligner, diarizer) and BLAS (numpy) take every core
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(settings.cpu_threads)
        threadpool_limits(settings.cpu_threads)
    store = TaskStore(make_engine(settings.db_url))
    store.create_schema()
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(
        settings, store, cache or ModelCache(settings.model_idle_seconds), make_queue(settings)
    )
    if settings.preload_models or settings.warm_up:
        runtime.state = "warming"
        store.beat(runtime.report())
        if settings.preload_models:  # before the first task
            _warm(runtime)
        else:  # beside it
            threading.Thread(target=_warm, args=(runtime,), name="warm-up", daemon=True).start()
    store.beat(runtime.report())
    runtime.helpers = [Janitor(runtime, parent),
                       WebhookSender(store, settings, runtime.name, runtime.stopping)]  # fmt: skip
    for helper in runtime.helpers:
        helper.start()
    log.info("worker %s ready (queue %s, device %s)", runtime.name, settings.queue, settings.device)
    return runtime


def _warm(runtime: Runtime) -> None:
    from app.pipeline.run import warm_up

    started = time.perf_counter()
    try:
        warm_up(runtime.settings, runtime.cache)
        log.info("worker %s warmed up in %.1f s", runtime.name, time.perf_counter() - started)
    except Exception:  # a task will load what it needs and say what is missing
        log.exception("warm-up of %s failed", runtime.name)
    finally:
        if runtime.state == "warming":
            runtime.state = "idle"


def work(runtime: Runtime) -> None:
    """QUEUE=local: claim the oldest queued task and run it, until the runtime stops; a
    database outage is waited out, as the janitor and the webhook sender do."""
    while not runtime.stopping.is_set():
        try:
            task = runtime.store.claim_next(runtime.name)
        except Exception as exc:
            log.warning("worker %s cannot claim tasks, trying again in %.0f s: %s",
                        runtime.name, OUTAGE_SECONDS, str(exc).splitlines()[0])  # fmt: skip
            runtime.stopping.wait(OUTAGE_SECONDS)
            continue
        if task is None:
            runtime.stopping.wait(POLL_SECONDS)
        else:
            run_claimed(task, runtime)


def main() -> None:
    settings = Settings().for_worker()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    configure_logging(settings)
    os.nice(settings.worker_nice)  # batch work: the API on this machine comes first
    if settings.queue == "celery":
        from app.worker.celery import main as celery_main

        celery_main(settings)
        return
    supervisor = int(os.environ.get("WHISPERX_SUPERVISOR") or 0) or None
    if supervisor:  # started by `make run`: die with it, at once (the kernel sends SIGKILL)
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != supervisor:
            return
    runtime = start_runtime(settings, parent=supervisor)

    def stop(*_: Any) -> None:
        runtime.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    work(runtime)
    runtime.close()


if __name__ == "__main__":
    main()
