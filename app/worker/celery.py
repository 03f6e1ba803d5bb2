"""QUEUE=celery: task identifiers travel through a Redis broker to Celery workers, configured for
long GPU tasks. The task row stays the truth: a redelivered or duplicate message is harmless
(claim refuses it), and a dead worker's task is recovered by our heartbeat, not by the broker."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from celery import Celery, signals

from app.settings import Settings

log = logging.getLogger(__name__)

QUEUE_NAME = "whisperx"
TASK_NAME = "whisperx.run"


def make_celery(settings: Settings) -> Celery:
    app = Celery("whisperx", broker=settings.broker_url, set_as_current=False)
    limit = settings.task_time_limit_seconds
    app.conf.update(
        task_default_queue=QUEUE_NAME,
        task_ignore_result=True,  # results live in the task row
        task_acks_late=True,  # a message is acked when its task ended, not when it started
        task_reject_on_worker_lost=True,  # a killed child's message goes back to the queue
        worker_prefetch_multiplier=1,  # never hold a second long task behind the running one
        task_time_limit=limit + 600,  # backstop: the worker itself stops a task at `limit`
        # above the longest task, so Redis never hands a running task to a second worker
        broker_transport_options={"visibility_timeout": limit + 3600},
        broker_connection_retry_on_startup=True,
        # a broker that is down must not hold up a submission: the janitor re-sends it later
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5},
        broker_connection_timeout=3,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.task(name=TASK_NAME, ignore_result=True)(_run)
    return app


class CeleryQueue:
    name = "celery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_celery(settings)

    def submit(self, identifier: str) -> None:
        # the task id is the task's identifier, so held() can tell which ones the broker has
        try:
            self.app.send_task(TASK_NAME, args=[identifier], task_id=identifier, queue=QUEUE_NAME)
        except Exception as exc:  # the row is stored: the janitor sends it once Redis is back
            log.warning("task %s stays queued: the broker is unreachable (%s)", identifier, exc)

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.settings.broker_url, socket_timeout=3, socket_connect_timeout=3)  # fmt: skip

    def ping(self) -> None:
        self._redis().ping()

    def held(self) -> set[str] | None:
        """Identifiers in the broker's queue lists and in its unacked hash (delivered to a
        worker, not yet acked), read from kombu's Redis layout."""
        client, ids = self._redis(), set[str | None]()
        for key in client.scan_iter(match=f"{QUEUE_NAME}*", _type="list"):
            ids.update(_message_id(raw) for raw in client.lrange(key, 0, -1))
        ids.update(_message_id(raw, unacked=True) for raw in client.hvals("unacked"))
        return {i for i in ids if i}


def _message_id(raw: bytes, unacked: bool = False) -> str | None:
    try:
        message = json.loads(raw)
        return (message[0] if unacked else message)["headers"]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


_runtime: Any = None


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _start_child(**_: Any) -> None:
    """Each prefork child is one of our workers: its own models, heartbeat and webhook sender,
    built once before its first task."""
    global _runtime
    from app.worker.__main__ import start_runtime

    _runtime = start_runtime(Settings().for_worker(), parent=os.getppid())


@signals.worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_child(**_: Any) -> None:
    if _runtime is not None:
        _runtime.close()


def _run(identifier: str) -> None:
    from app.worker.job import run_task

    run_task(identifier, _runtime)


def main(settings: Settings) -> None:
    """`make worker` with QUEUE=celery: a Celery worker with one prefork child per
    MAX_CONCURRENT_TASKS (one per GPU; the solo pool loses its task on shutdown)."""
    app = make_celery(settings)
    app.worker_main([
        "worker", "--pool=prefork", f"--concurrency={settings.max_concurrent_tasks}",
        f"--queues={QUEUE_NAME}", f"--hostname=whisperx-{os.getpid()}@%h",
        f"--loglevel={settings.log_level.upper()}", "--without-gossip", "--without-mingle",
    ])  # fmt: skip
