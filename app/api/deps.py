"""Dependency aliases over app.state, and the long-poll waiter that lives there."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.settings import Settings
from app.store.tasks import TaskStore
from app.worker.queue import Queue

POLL_SECONDS = 0.25
"""How often a waiting API process asks the database whether watched tasks ended."""


class Waiter:
    """Long polls (`?wait=`, the synchronous endpoints): tasks end in worker processes, maybe
    on other machines, so one loop per API process asks the database every POLL_SECONDS which
    of the watched tasks ended, and only while someone waits."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self._waiting: dict[str, list[asyncio.Event]] = {}
        self._poller: asyncio.Task | None = None

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
