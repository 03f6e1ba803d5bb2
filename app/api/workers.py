"""GET /workers: the live worker processes, as they last reported themselves."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.api.deps import StoreDep
from app.auth import owner
from app.errors import ERROR_RESPONSES
from app.store.views import UtcDatetime

router = APIRouter(tags=["Workers"], responses=ERROR_RESPONSES, dependencies=[Depends(owner)])


class WorkerInfo(BaseModel):
    name: str
    """Unique per process life: `w<pid>-<random>@<host>`."""
    host: str
    pid: int
    state: Literal["warming", "idle", "busy"]
    task: str | None
    """The task it is running, when busy."""
    heartbeat_at: UtcDatetime
    device: str | None
    models: list[dict[str, Any]]
    """Loaded models: kind (whisper, aligner, diarizer, …), name, device, compute type."""


class WorkerList(BaseModel):
    workers: list[WorkerInfo]


@router.get("/workers", response_model=WorkerList)
def list_workers(store: StoreDep) -> WorkerList:
    """Workers that reported within the last 30 s (each reports every 5 s), on any machine."""
    return WorkerList(
        workers=[WorkerInfo.model_validate(w, from_attributes=True) for w in store.workers()]
    )
