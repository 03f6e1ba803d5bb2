"""What a worker process holds (`Runtime`) and `run_task(identifier)`: claim, stages, result."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.pipeline.audio import AudioError
from app.pipeline.models import ModelCache, ModelUnavailable
from app.pipeline.options import TaskParams
from app.pipeline.run import Stages, run
from app.settings import Settings
from app.store.models import Task, Worker, worker_name
from app.store.tasks import SILENT_SECONDS, TaskStore, now
from app.worker.queue import Queue, release_input

log = logging.getLogger("app.tasks")

MAX_ATTEMPTS = 2
"""A task whose worker died this many times while running it is failed, not retried: a file
that crashes a worker must not crash the next one too."""


@dataclass
class Runtime:
    """What a worker needs, built once at its start and shared by every task it runs."""

    settings: Settings
    """Resolved for this worker's device (`Settings.for_worker`)."""
    store: TaskStore
    cache: ModelCache
    queue: Queue
    name: str = field(default_factory=worker_name)
    state: str = "idle"
    task: str | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    started_at: Any = field(default_factory=now)
    helpers: list[threading.Thread] = field(default_factory=list)
    """The janitor and the webhook sender, which stop with `stopping`."""

    def close(self) -> None:
        """Stop the helpers, leave the workers table, then close the database connections (no
        helper still at work opens one again)."""
        self.stopping.set()
        for helper in self.helpers:
            helper.join(self.settings.callback_timeout_seconds + 30)
        self.store.forget_worker(self.name)
        self.store.engine.dispose()

    def report(self) -> Worker:
        """This worker as the workers table shows it."""
        return Worker(
            name=self.name, host=socket.gethostname(), pid=os.getpid(), queue=self.queue.name,
            state=self.state, task=self.task, device=self.settings.device,
            models=self.cache.describe(), started_at=self.started_at,
            stats={"model_loads": self.cache.loads, "model_releases": self.cache.releases},
        )  # fmt: skip


class TaskCancelled(Exception):
    """Raised from a progress callback to stop the stages of a cancelled task."""


class TaskLost(Exception):
    """Another worker took the task over (this one was silent too long): stop, write nothing."""


class WorkerStopping(Exception):
    """The worker is shutting down: the task goes back to the queue."""


class TaskTimedOut(Exception):
    """The task ran past TASK_TIME_LIMIT_SECONDS."""


class _Reporter:
    """Writes progress to the task row (at most twice a second, on a stage change, or with
    facts such as the audio duration) and stops the stages when the task is cancelled, taken
    over, past its time limit, or the worker is stopping."""

    def __init__(self, runtime: Runtime, identifier: str) -> None:
        self.runtime, self.identifier = runtime, identifier
        self.deadline = time.monotonic() + runtime.settings.task_time_limit_seconds
        self._stage, self._last, self._began = "", 0.0, time.monotonic()

    def __call__(self, stage: str, percent: float, **facts: Any) -> None:
        runtime, at = self.runtime, time.monotonic()
        if runtime.stopping.is_set():
            raise WorkerStopping(self.identifier)
        if at > self.deadline:
            raise TaskTimedOut(self.identifier)
        if stage != self._stage or at - self._last >= 0.5 or percent >= 100 or facts:
            if stage != self._stage:
                if self._stage:
                    log.info(
                        "task %s %s took %.1f s", self.identifier, self._stage, at - self._began
                    )
                self._began = at
            self._stage, self._last = stage, at
            if not runtime.store.progress(self.identifier, runtime.name, stage, percent, **facts):
                task = runtime.store.get(self.identifier)
                if task is not None and task.cancel_requested:
                    raise TaskCancelled(self.identifier)
                raise TaskLost(self.identifier)


def run_task(identifier: str, runtime: Runtime) -> bool:
    """Claim the task (a queued one, or one whose worker died) and run it; False when it is
    not to be run here (ended, cancelled, or running on a live worker)."""
    silent_since = now() - timedelta(seconds=SILENT_SECONDS)
    task = runtime.store.claim(identifier, runtime.name, silent_since, MAX_ATTEMPTS)
    if task is None:
        return False
    run_claimed(task, runtime)
    return True


def run_claimed(task: Task, runtime: Runtime) -> None:
    """Run the stages of a task this worker has claimed and store how it ended."""
    store, identifier, name = runtime.store, task.identifier, runtime.name
    log.info(
        "task %s claimed by %s (%s, attempt %d)", identifier, name, task.task_type, task.attempts
    )
    runtime.state, runtime.task = "busy", identifier
    stages = Stages(task.task_type, runtime.settings, runtime.cache, _Reporter(runtime, identifier))
    ended = None
    try:
        params = TaskParams.model_validate(task.task_params)
        audio = runtime.settings.media_path(task.input_key) if task.input_key else None
        if audio is not None and not audio.is_file():
            raise AudioError("interrupted: the input file is gone; submit the file again")
        result, language = run(task.task_type, params, task.inputs, audio, stages)
    except TaskCancelled:
        ended = store.fail_cancelled(identifier, stages.info, name)
    except TaskLost:
        log.warning("task %s was taken over by another worker; %s stops it", identifier, name)
    except WorkerStopping:
        if store.requeue(identifier, name, attempt_counts=False):
            runtime.queue.submit(identifier)
            log.info("task %s handed back to the queue: %s is stopping", identifier, name)
    except TaskTimedOut:
        limit = runtime.settings.task_time_limit_seconds
        reason = f"The task ran longer than the limit of {limit} s (TASK_TIME_LIMIT_SECONDS)."
        ended = store.fail(identifier, reason, stages.info, name)
    except (AudioError, ModelUnavailable, ValueError) as exc:
        ended = store.fail(identifier, str(exc), stages.info, name)
    except Exception as exc:
        log.exception("task %s failed", identifier)
        reason = f"Internal error: {type(exc).__name__}: {exc}"
        ended = store.fail(identifier, reason, stages.info, name)
    else:
        ended = store.finish(
            identifier, result, stages.info, name, language=language or task.language
        )
    finally:
        runtime.state, runtime.task = "idle", None
        runtime.cache.release_idle()
    if ended is not None:
        seconds = ", ".join(f"{k} {v:.1f} s" for k, v in stages.info["stage_seconds"].items())
        outcome = "completed" if ended.error is None else f"failed: {ended.error}"
        log.info("task %s %s in %.1f s (%s)", identifier, outcome, ended.duration or 0, seconds)
        release_input(runtime.settings, ended)
