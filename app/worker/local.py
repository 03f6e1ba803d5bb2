"""In-process worker pool: MAX_CONCURRENT_TASKS threads taking task ids from a queue."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.store.models import Task, TaskStatus, TaskType
from app.store.tasks import as_utc, now
from app.worker.job import NEEDS_AUDIO, Runtime, run_task

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15
STALE_SECONDS = 90
"""A processing task whose process has not stamped it for this long is taken over."""
MAX_ATTEMPTS = 2
"""A task the service died running this many times is failed at restart, not retried: a file
that crashes the process must not crash it again after every restart."""


class LocalQueue:
    def __init__(self, runtime: Runtime, workers: int) -> None:
        self.runtime = runtime
        self._ids: queue.Queue[str | None] = queue.Queue()
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"worker-{n}", daemon=True)
            for n in range(workers)
        ]

    def submit(self, identifier: str) -> None:
        self._ids.put(identifier)

    def enqueue(self, task_type: TaskType, **fields: Any) -> str:
        """Store a new task (queued) and hand its identifier to the workers."""
        identifier = self.runtime.store.create(task_type, **fields).identifier
        self.submit(identifier)
        return identifier

    def start(self) -> None:
        self.recover()
        self.housekeep(grace_seconds=0)  # nothing is uploading yet: every stray file can go
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._janitor, name="janitor", daemon=True).start()

    def _janitor(self) -> None:
        """Stamp this process's tasks as alive; unload models unused for MODEL_IDLE_SECONDS
        (also while no task runs); take over tasks whose process died; delete expired media
        and results."""
        idle = self.runtime.cache.idle_seconds
        period = max(1.0, min(HEARTBEAT_SECONDS, idle / 2)) if idle else HEARTBEAT_SECONDS
        last = time.monotonic()
        while not self._stopped.wait(period):
            try:
                self.runtime.store.heartbeat(self.runtime.instance)
                self.runtime.cache.release_idle()
                if time.monotonic() - last >= 60:
                    last = time.monotonic()
                    self.recover(processing_only=True)
                    self.housekeep()
            except Exception:  # the janitor must outlive a database hiccup
                log.exception("janitor failed")

    def housekeep(self, grace_seconds: float = 600) -> tuple[int, int]:
        """Delete media no task needs any more (ended past MEDIA_RETENTION_SECONDS, or left by
        a crash; files younger than `grace_seconds` may be uploads in progress) and tasks
        ended past RESULT_RETENTION_HOURS. Returns (files deleted, tasks deleted)."""
        settings, store = self.runtime.settings, self.runtime.store
        purged = 0
        if settings.result_retention_hours:
            purged = store.purge(now() - timedelta(hours=settings.result_retention_hours))
        in_use = store.media_in_use(now() - timedelta(seconds=settings.media_retention_seconds))
        in_use = {str(Path(p).resolve()) for p in in_use}
        removed, young = 0, time.time() - grace_seconds
        if settings.media_dir.is_dir():
            for path in settings.media_dir.iterdir():
                try:
                    if str(path.resolve()) in in_use or path.stat().st_mtime > young:
                        continue
                    path.unlink()
                    removed += 1
                except OSError:  # deleted meanwhile, or a folder someone put there
                    continue
        if removed or purged:
            log.info("housekeeping: deleted %d media files and %d ended tasks", removed, purged)
        return removed, purged

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        for _ in self._threads:
            self._ids.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def recover(self, processing_only: bool = False) -> None:
        """Re-queue what a previous run left unfinished, from its stored input; fail what
        cannot be re-run. The task row is the source of truth, not the lost in-memory queue.
        Tasks another live process is running (same database, e.g. PostgreSQL) are left to it;
        the janitor calls this again (`processing_only`) to take over those whose process died."""
        store = self.runtime.store
        for task in store.unfinished():
            if task.status == TaskStatus.processing and not self._abandoned(task):
                continue
            if processing_only and task.status == TaskStatus.queued:
                continue
            missing = task.task_type in NEEDS_AUDIO and not (
                task.input_path and Path(task.input_path).is_file()
            )
            if task.cancel_requested:
                store.fail_cancelled(task.identifier)
                self.runtime.task_ended(task.identifier)
                continue
            if missing:
                store.fail(
                    task.identifier, "interrupted: the service restarted and the input file is gone"
                )
                self.runtime.task_ended(task.identifier)
                continue
            if task.status == TaskStatus.processing and task.attempts >= MAX_ATTEMPTS:
                store.fail(
                    task.identifier,
                    f"interrupted: the service stopped {task.attempts} times while running this "
                    "task, so it is not retried (the input may be too large or corrupt for this host)",
                )
                self.runtime.task_ended(task.identifier)
                continue
            if task.status == TaskStatus.processing:
                store.requeue(task.identifier)
            log.info("re-queued task %s after restart", task.identifier)
            self.submit(task.identifier)

    def _abandoned(self, task: Task) -> bool:
        """Whether the process that was running `task` is gone: not recorded (older rows), a
        dead process or an earlier life of this one on this host, or silent for STALE_SECONDS."""
        if task.worker is None:
            return True
        if task.worker == self.runtime.instance:
            return False
        host, _, rest = task.worker.partition(":")
        pid = rest.partition(":")[0]
        here = host == socket.gethostname() and pid.isdigit()
        if here and (int(pid) == os.getpid() or not _alive(int(pid))):
            return True
        beat = as_utc(task.heartbeat_at)
        return beat is None or now() - beat > timedelta(seconds=STALE_SECONDS)

    def _work(self) -> None:
        while (identifier := self._ids.get()) is not None:
            try:
                run_task(identifier, self.runtime)
            except Exception:  # a worker thread must survive anything one task does
                log.exception("worker crashed on task %s", identifier)
            finally:
                self.runtime.cache.release_idle()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
