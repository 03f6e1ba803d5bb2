"""Named task transitions, each one transaction: create, claim, progress, finish, fail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import defer, sessionmaker

from app.store.db import migrate
from app.store.models import Task, TaskStatus, TaskType

CANCELLED = "cancelled: stopped at the user's request"


def now() -> datetime:
    return datetime.now(UTC)


def possible_id(identifier: str) -> bool:
    """Whether `identifier` could name a task; anything else is simply not found (PostgreSQL
    refuses NUL in text, and no id is longer than a UUID)."""
    return len(identifier) <= 64 and "\x00" not in identifier


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every time we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class TaskStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)

    def create_schema(self) -> None:
        migrate(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def create(
        self,
        task_type: TaskType,
        *,
        task_params: dict[str, Any],
        file_name: str | None = None,
        url: str | None = None,
        callback_url: str | None = None,
        input_path: str | None = None,
        inputs: dict[str, Any] | None = None,
        language: str | None = None,
        audio_duration: float | None = None,
        identifier: str | None = None,
        owner: str | None = None,
    ) -> Task:
        task = Task(
            identifier=identifier or str(uuid.uuid4()),
            status=TaskStatus.queued,
            task_type=task_type,
            task_params=task_params,
            file_name=file_name,
            url=url,
            callback_url=callback_url,
            input_path=input_path,
            inputs=inputs,
            language=language,
            audio_duration=None if audio_duration is None else round(audio_duration, 3),
            info={},
            progress=0.0,
            created_at=now(),
            owner=owner,
        )
        with self.session.begin() as s:
            s.add(task)
        return task

    def get(self, identifier: str) -> Task | None:
        if not possible_id(identifier):
            return None
        with self.session() as s:
            return s.get(Task, identifier)

    def list_tasks(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        status: TaskStatus | None = None,
        task_type: TaskType | None = None,
        owner: str | None = None,
    ) -> tuple[list[Task], int]:
        """Tasks newest first, and how many match in all; only `owner`'s when given. Only the
        summary columns are loaded: results and inputs can be megabytes each."""
        query = select(Task).options(defer(Task.result), defer(Task.inputs))
        count = select(func.count()).select_from(Task)
        if owner is not None:
            query, count = query.where(Task.owner == owner), count.where(Task.owner == owner)
        if status is not None:
            query, count = query.where(Task.status == status), count.where(Task.status == status)
        if task_type is not None:
            query = query.where(Task.task_type == task_type)
            count = count.where(Task.task_type == task_type)
        query = query.order_by(Task.created_at.desc(), Task.identifier).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.session() as s:
            return list(s.scalars(query)), s.scalar(count) or 0

    def queue_position(self, task: Task) -> int | None:
        """1 for the next task to be claimed; None unless queued."""
        if task.status != TaskStatus.queued:
            return None
        with self.session() as s:
            ahead = s.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.status == TaskStatus.queued, Task.created_at < task.created_at)
            )
        return (ahead or 0) + 1

    def _update(self, identifier: str, *conditions: Any, **values: Any) -> bool:
        with self.session.begin() as s:
            result = s.execute(
                update(Task).where(Task.identifier == identifier, *conditions).values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def claim(self, identifier: str, worker: str | None = None) -> bool:
        """queued → processing by `worker`; False when another worker got it first or it is
        gone."""
        return self._update(
            identifier,
            Task.status == TaskStatus.queued,
            status=TaskStatus.processing,
            start_time=now(),
            stage="starting",
            progress=0.0,
            attempts=Task.attempts + 1,
            worker=worker,
            heartbeat_at=now(),
        )

    def heartbeat(self, worker: str) -> None:
        """`worker` is alive: stamp the tasks it is processing."""
        with self.session.begin() as s:
            s.execute(
                update(Task)
                .where(Task.worker == worker, Task.status == TaskStatus.processing)
                .values(heartbeat_at=now())
            )

    def progress(self, identifier: str, stage: str, percent: float, **values: Any) -> bool:
        """Record progress; False when the task should stop (cancelled or gone)."""
        return self._update(
            identifier,
            Task.status == TaskStatus.processing,
            Task.cancel_requested.is_(False),
            stage=stage,
            progress=round(min(max(percent, 0.0), 100.0), 1),
            heartbeat_at=now(),
            **values,
        )

    def _end(self, identifier: str, status: TaskStatus, **values: Any) -> bool:
        end = now()
        with self.session.begin() as s:
            task = s.get(Task, identifier, with_for_update=True)
            if task is None or task.status in (TaskStatus.completed, TaskStatus.failed):
                return False
            start = as_utc(task.start_time) or end
            task.status = status
            task.end_time = end
            task.duration = round((end - start).total_seconds(), 3)
            for key, value in values.items():
                setattr(task, key, value)
        return True

    def finish(self, identifier: str, result: Any, info: dict[str, Any], **values: Any) -> bool:
        return self._end(
            identifier,
            TaskStatus.completed,
            result=result,
            info=info,
            stage="done",
            progress=100.0,
            error=None,
            **values,
        )

    def fail(self, identifier: str, error: str, info: dict[str, Any] | None = None) -> bool:
        # reasons may quote a decoder's output; PostgreSQL text cannot hold NUL
        values: dict[str, Any] = {"error": error.replace("\x00", ""), "stage": "failed"}
        if info is not None:
            values["info"] = info
        return self._end(identifier, TaskStatus.failed, **values)

    def fail_cancelled(self, identifier: str, info: dict[str, Any] | None = None) -> bool:
        values: dict[str, Any] = {"error": CANCELLED, "stage": "cancelled"}
        if info is not None:
            values["info"] = info
        return self._end(identifier, TaskStatus.failed, **values)

    def cancel(self, identifier: str) -> TaskStatus | None:
        """Cancel a task; returns the status it had (None when it does not exist). A queued task
        fails as cancelled at once; a processing one is flagged, and its worker stops at the next
        progress step and fails it then."""
        if not possible_id(identifier):
            return None
        with self.session.begin() as s:
            task = s.get(Task, identifier, with_for_update=True)
            if task is None:
                return None
            before = TaskStatus(task.status)
            if before == TaskStatus.queued:
                task.status, task.stage, task.error = TaskStatus.failed, "cancelled", CANCELLED
                task.end_time, task.duration = now(), 0.0
            elif before == TaskStatus.processing:
                task.cancel_requested = True
            return before

    def set_webhook(self, identifier: str, outcome: dict[str, Any]) -> None:
        self._update(identifier, webhook=outcome)

    def delete(self, identifier: str) -> Task | None:
        if not possible_id(identifier):
            return None
        with self.session.begin() as s:
            task = s.get(Task, identifier)
            if task is not None:
                s.execute(delete(Task).where(Task.identifier == identifier))
            return task

    def unfinished(self) -> list[Task]:
        """Tasks a previous run left queued or processing, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(Task)
                    .where(Task.status.in_([TaskStatus.queued, TaskStatus.processing]))
                    .order_by(Task.created_at)
                )
            )

    def requeue(self, identifier: str) -> bool:
        """processing → queued, after a restart interrupted it."""
        return self._update(
            identifier,
            Task.status == TaskStatus.processing,
            status=TaskStatus.queued,
            start_time=None,
            worker=None,
            stage=None,
            progress=0.0,
        )

    def media_in_use(self, ended_after: datetime) -> set[str]:
        """Input files still needed: those of unfinished tasks and of tasks that ended after
        `ended_after` (MEDIA_RETENTION_SECONDS)."""
        unfinished = Task.status.in_([TaskStatus.queued, TaskStatus.processing])
        with self.session() as s:
            paths = s.scalars(
                select(Task.input_path).where(
                    Task.input_path.is_not(None), unfinished | (Task.end_time >= ended_after)
                )
            )
            return {p for p in paths if p}

    def purge(self, ended_before: datetime) -> int:
        """Delete tasks that ended before `ended_before` (RESULT_RETENTION_HOURS)."""
        with self.session.begin() as s:
            result = s.execute(
                delete(Task).where(
                    Task.status.in_([TaskStatus.completed, TaskStatus.failed]),
                    Task.end_time < ended_before,
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
