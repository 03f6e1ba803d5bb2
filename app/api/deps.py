"""Dependency aliases over app.state, and the long-poll waiter that lives there (with the wait for
a task that the synchronous endpoints make)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.errors import ServiceError, task_not_found
from app.settings import Settings
from app.store.models import Task
from app.store.tasks import ENDED, TaskStore
from app.worker.queue import Queue

POLL_SECONDS = 0.25
"""How often a waiting API process asks the database whether watched tasks ended."""
WAIT_SECONDS = 3600
"""Longest a synchronous request waits for its task; past it the answer is 504 and the task runs
on."""
RECHECK_SECONDS = 60
"""The waiting request re-reads the task at least this often (the waiter wakes it sooner)."""


class Waiter:
    """Long polls (`?wait=`, the synchronous endpoints): tasks end in worker processes, maybe
    on other machines, so one loop per API process asks the database every POLL_SECONDS which
    of the watched tasks ended, and only while someone waits."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self._waiting: dict[str, list[asyncio.Event]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, identifier: str, timeout: float) -> None:
        """Return when the task has ended, or after `timeout` seconds."""
        event = asyncio.Event()
        self._waiting.setdefault(identifier, []).append(event)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            events = self._waiting.get(identifier, [])
            if event in events:
                events.remove(event)
            if not events:
                self._waiting.pop(identifier, None)

    async def _poll(self) -> None:
        while self._waiting:
            ended = await run_in_threadpool(self.store.ended, list(self._waiting))
            for identifier in ended:
                for event in self._waiting.get(identifier, []):
                    event.set()
            await asyncio.sleep(POLL_SECONDS)


async def wait_for(identifier: str, store: TaskStore, waiter: Waiter, seconds: float) -> Task:
    """The task once it has ended (in whichever worker), or as it is after `seconds`."""
    return [task async for task in watch(identifier, store, waiter, seconds, RECHECK_SECONDS)][-1]


async def watch(
    identifier: str, store: TaskStore, waiter: Waiter, seconds: float, every: float
) -> AsyncIterator[Task]:
    """The task now, then again when it ends or `every` seconds pass, until it has ended or
    `seconds` are up. With no worker alive the request would only hang: the task is failed
    and the answer is a 503."""
    if not await run_in_threadpool(store.workers):
        message = "No worker is running to do this now: start one (`make worker`, or WORKERS=1)."
        await run_in_threadpool(store.fail, identifier, message)
        raise ServiceError(503, "NO_WORKER", message)
    deadline = time.monotonic() + seconds
    while True:
        task = await run_in_threadpool(store.get, identifier)
        if task is None:
            raise task_not_found(identifier)
        yield task
        if task.status in ENDED or time.monotonic() > deadline:
            return
        await waiter.wait(identifier, min(every, max(deadline - time.monotonic(), 0.01)))


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> TaskStore:
    return request.app.state.store


def _queue(request: Request) -> Queue:
    return request.app.state.queue


def _waiter(request: Request) -> Waiter:
    return request.app.state.waiter


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[TaskStore, Depends(_store)]
QueueDep = Annotated[Queue, Depends(_queue)]
WaiterDep = Annotated[Waiter, Depends(_waiter)]
