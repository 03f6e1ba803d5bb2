"""A worker's background duties: report itself every few seconds and, for the one worker that
holds the cluster's lease, take over the tasks of dead workers, re-send queued tasks the broker
lost, and delete expired media and results."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from app.store.models import Task, TaskType, worker_of
from app.store.tasks import SILENT_SECONDS, as_utc, now
from app.worker.job import MAX_ATTEMPTS, Runtime
from app.worker.queue import release_input

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
LOST_AFTER_SECONDS = 15
"""A task queued this long that the broker does not hold is sent again (its message was lost)."""


class Janitor(threading.Thread):
    def __init__(self, runtime: Runtime, parent: int | None = None) -> None:
        super().__init__(name="janitor", daemon=True)
        self.runtime = runtime
        self.parent = parent
        """Die with this process (a Celery child, a worker that `make run` started)."""

    def run(self) -> None:
        runtime = self.runtime
        while not runtime.stopping.wait(HEARTBEAT_SECONDS):
            if self.parent is not None and os.getppid() != self.parent:
                log.error("worker %s: its parent process died; exiting", runtime.name)
                os._exit(1)
            try:
                self.beat()
            except Exception:  # the janitor must outlive a database or broker hiccup
                log.exception("janitor of %s failed", runtime.name)

    def beat(self) -> None:
        runtime, store = self.runtime, self.runtime.store
        store.beat(runtime.report())
        runtime.cache.release_idle()
        if store.lease("janitor", runtime.name, 4 * HEARTBEAT_SECONDS):
            self.recover()
            if store.lease("housekeeping", runtime.name, 3600, renew=False):
                self.housekeep()

    def recover(self) -> None:
        """Forget workers that died on this host; requeue (and re-send) the tasks of dead
        workers, or fail those that cannot be run again; re-send queued tasks whose broker
        message was lost."""
        runtime, store = self.runtime, self.runtime.store
        here = socket.gethostname()
        for worker in store.workers():  # killed here (SIGKILL leaves its row): not live
            if worker.host == here and worker.pid != os.getpid() and not _alive(worker.pid):
                log.warning("worker %s is gone (process %d ended)", worker.name, worker.pid)
                store.forget_worker(worker.name)
        for task in store.silent(now()):
            if not self._abandoned(task):
                continue
            reason = None
            media = task.input_key and runtime.settings.media_path(task.input_key).is_file()
            if task.task_type != TaskType.combine and not media:
                reason = "interrupted: its worker stopped and the input file is gone"
            if task.attempts >= MAX_ATTEMPTS:
                reason = (
                    f"interrupted: a worker stopped {task.attempts} times while running this "
                    "task, so it is not retried (the input may be too large or corrupt for it)"
                )
            ended = None
            if task.cancel_requested:
                ended = store.fail_cancelled(task.identifier)
            elif reason:
                ended = store.fail(task.identifier, reason)
            elif store.requeue(task.identifier):
                log.warning("task %s requeued: worker %s is gone", task.identifier, task.worker)
                runtime.queue.submit(task.identifier)
            if ended is not None:
                release_input(runtime.settings, ended)
        held = runtime.queue.held()
        if held is not None:
            lost_since = now() - timedelta(seconds=LOST_AFTER_SECONDS)
            for identifier in store.queued_before(lost_since):
                if identifier not in held:
                    log.warning("task %s re-sent: the broker had lost it", identifier)
                    runtime.queue.submit(identifier)

    def _abandoned(self, task: Task) -> bool:
        """Its worker fell silent, or died on this host (a restart: no need to wait)."""
        beat = as_utc(task.heartbeat_at)
        if beat is None or now() - beat > timedelta(seconds=SILENT_SECONDS):
            return True
        who = worker_of(task.worker)
        if who is None or who["host"] != socket.gethostname() or not who["pid"]:
            return False
        return who["pid"] != os.getpid() and not _alive(who["pid"])

    def housekeep(self, grace_seconds: float = 600) -> tuple[int, int]:
        """Delete media no task needs any more (ended past MEDIA_RETENTION_SECONDS, or left by
        a crash; files younger than `grace_seconds` may be uploads in progress) and tasks
        ended past RESULT_RETENTION_HOURS. Returns (files deleted, tasks deleted)."""
        settings, store = self.runtime.settings, self.runtime.store
        purged = 0
        if settings.result_retention_hours:
            purged = store.purge(now() - timedelta(hours=settings.result_retention_hours))
        in_use = store.media_in_use(now() - timedelta(seconds=settings.media_retention_seconds))
        removed, young = 0, time.time() - grace_seconds
        if settings.media_dir.is_dir():
            for path in settings.media_dir.iterdir():
                try:
                    if path.name in in_use or path.stat().st_mtime > young:
                        continue
                    path.unlink()
                    removed += 1
                except OSError:  # deleted meanwhile, or a folder someone put there
                    continue
        if removed or purged:
            log.info("housekeeping: deleted %d media files and %d ended tasks", removed, purged)
        return removed, purged


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
