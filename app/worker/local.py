"""In-process worker pool: MAX_CONCURRENT_TASKS threads taking task ids from a queue."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from app.store.models import TaskStatus, TaskType
from app.worker.job import NEEDS_AUDIO, Runtime, run_task

log = logging.getLogger(__name__)


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
        for thread in self._threads:
            thread.start()
        if self.runtime.cache.idle_seconds:
            threading.Thread(target=self._release_idle, name="model-janitor", daemon=True).start()

    def _release_idle(self) -> None:
        """Unload models unused for MODEL_IDLE_SECONDS, also while no task runs."""
        period = max(1.0, min(30.0, self.runtime.cache.idle_seconds / 2))
        while not self._stopped.wait(period):
            self.runtime.cache.release_idle()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        for _ in self._threads:
            self._ids.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def recover(self) -> None:
        """Re-queue what a previous run left unfinished, from its stored input; fail what
        cannot be re-run. The task row is the source of truth, not the lost in-memory queue."""
        store = self.runtime.store
        for task in store.unfinished():
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
            if task.status == TaskStatus.processing:
                store.requeue(task.identifier)
            log.info("re-queued task %s after restart", task.identifier)
            self.submit(task.identifier)

    def _work(self) -> None:
        while (identifier := self._ids.get()) is not None:
            try:
                run_task(identifier, self.runtime)
            except Exception:  # a worker thread must survive anything one task does
                log.exception("worker crashed on task %s", identifier)
            finally:
                self.runtime.cache.release_idle()
