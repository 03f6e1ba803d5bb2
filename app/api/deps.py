"""Dependency aliases over app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.settings import Settings
from app.store.tasks import TaskStore
from app.worker.job import Runtime
from app.worker.local import LocalQueue


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> TaskStore:
    return request.app.state.store


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _queue(request: Request) -> LocalQueue:
    return request.app.state.queue


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[TaskStore, Depends(_store)]
QueueDep = Annotated[LocalQueue, Depends(_queue)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]
