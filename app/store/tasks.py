"""Named transitions of the tables, each one transaction: tasks (create, claim, progress, finish,
fail, cancel, requeue), workers (beat, forget), webhook deliveries and cluster leases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer, sessionmaker

from app.store.db import migrate
from app.store.models import Delivery, Lease, SpeakerProfile, Task, TaskStatus, TaskType, Worker

CANCELLED = "cancelled: stopped at the user's request"
SILENT_SECONDS = 30
"""A worker that has not reported for this long is dead: its task is taken over."""
ENDED = (TaskStatus.completed, TaskStatus.failed)
UNFINISHED = (TaskStatus.queued, TaskStatus.processing)


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
        self._skip_locked = engine.dialect.name == "postgresql"

    def create_schema(self) -> None:
        migrate(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def create(self, task_type: TaskType, task_params: dict[str, Any], **fields: Any) -> Task:
        """A new queued task; `fields` are Task columns (file_name, input_key, inputs, …)."""
        if fields.get("audio_duration") is not None:
            fields["audio_duration"] = round(fields["audio_duration"], 3)
        task = Task(
            identifier=str(uuid.uuid4()), status=TaskStatus.queued, task_type=task_type,
            task_params=task_params, info={}, progress=0.0, created_at=now(), **fields,
        )  # fmt: skip
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
        for column, value in ((Task.owner, owner), (Task.status, status),
                              (Task.task_type, task_type)):  # fmt: skip
            if value is not None:
                query, count = query.where(column == value), count.where(column == value)
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

    def ended(self, identifiers: list[str]) -> set[str]:
        """Which of these tasks have completed or failed (long polls watch this)."""
        with self.session() as s:
            query = select(Task.identifier).where(
                Task.identifier.in_(identifiers), Task.status.in_(ENDED)
            )
            return set(s.scalars(query))

    def _update(self, identifier: str, *conditions: Any, **values: Any) -> bool:
        with self.session.begin() as s:
            result = s.execute(
                update(Task).where(Task.identifier == identifier, *conditions).values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _claim(self, which: Any, worker: str) -> Task | None:
        values = {
            "status": TaskStatus.processing, "start_time": now(), "stage": "starting",
            "progress": 0.0, "attempts": Task.attempts + 1, "worker": worker,
            "heartbeat_at": now(), "cancel_requested": False, "partial_text": None,
        }  # fmt: skip
        with self.session.begin() as s:
            query = update(Task).where(which).values(**values).returning(Task)
            return s.scalars(query, execution_options={"synchronize_session": False}).first()

    def claim(
        self, identifier: str, worker: str, silent_since: datetime, attempts: int
    ) -> Task | None:
        """`identifier` → processing by `worker`, returning the row: when queued, or when its
        worker has been silent since `silent_since` (dead: a redelivered task is taken over)
        and it has run fewer than `attempts` times. None when it is not to be run here."""
        taken_over = and_(
            Task.status == TaskStatus.processing,
            or_(Task.heartbeat_at.is_(None), Task.heartbeat_at < silent_since),
            Task.attempts < attempts,
            Task.cancel_requested.is_(False),
        )
        return self._claim(
            and_(Task.identifier == identifier, or_(Task.status == TaskStatus.queued, taken_over)),
            worker,
        )

    def claim_next(self, worker: str) -> Task | None:
        """The oldest queued task → processing by `worker` (QUEUE=local: the rows are the
        queue); SKIP LOCKED lets PostgreSQL workers claim side by side."""
        oldest = select(Task.identifier).where(Task.status == TaskStatus.queued)
        oldest = oldest.order_by(Task.created_at).limit(1)
        if self._skip_locked:
            oldest = oldest.with_for_update(skip_locked=True)
        return self._claim(
            and_(Task.identifier == oldest.scalar_subquery(), Task.status == TaskStatus.queued),
            worker,
        )

    def progress(
        self, identifier: str, worker: str, stage: str, percent: float, **values: Any
    ) -> bool:
        """Record progress; False when `worker` should stop (cancelled, gone, taken over)."""
        return self._update(
            identifier,
            Task.status == TaskStatus.processing,
            Task.worker == worker,
            Task.cancel_requested.is_(False),
            stage=stage,
            progress=round(min(max(percent, 0.0), 100.0), 1),
            heartbeat_at=now(),
            **values,
        )

    def _end(
        self, identifier: str, status: TaskStatus, worker: str | None, **values: Any
    ) -> Task | None:
        """End the task (unless it ended already or `worker` no longer runs it) and queue its
        webhook delivery in the same transaction: each final status is delivered once."""
        end = now()
        with self.session.begin() as s:
            task = s.get(Task, identifier, with_for_update=True)
            if task is None or task.status in ENDED or (worker and task.worker != worker):
                return None
            start = as_utc(task.start_time) or end
            task.status, task.end_time, task.partial_text = status, end, None
            task.duration = round((end - start).total_seconds(), 3)
            for key, value in values.items():
                setattr(task, key, value)
            if task.callback_url:
                s.add(Delivery(task=identifier, state="pending", attempts=0, due_at=end))
            return task

    def finish(self, identifier: str, result: Any, info: dict[str, Any], worker: str | None = None, **values: Any) -> Task | None:  # fmt: skip
        return self._end(
            identifier, TaskStatus.completed, worker, result=result, info=info, stage="done",
            progress=100.0, error=None, **values,
        )  # fmt: skip

    def fail(self, identifier: str, error: str, info: dict[str, Any] | None = None, worker: str | None = None, stage: str = "failed") -> Task | None:  # fmt: skip
        # reasons may quote a decoder's output; PostgreSQL text cannot hold NUL
        values: dict[str, Any] = {"error": error.replace("\x00", ""), "stage": stage}
        if info is not None:
            values["info"] = info
        return self._end(identifier, TaskStatus.failed, worker, **values)

    def fail_cancelled(self, identifier: str, info: dict[str, Any] | None = None, worker: str | None = None) -> Task | None:  # fmt: skip
        return self.fail(identifier, CANCELLED, info, worker, stage="cancelled")

    def cancel(self, identifier: str) -> tuple[TaskStatus | None, Task | None]:
        """Cancel a task: (the status it had, the task when it ended here). A queued task
        fails as cancelled at once; a processing one is flagged, and its worker (on whatever
        machine) stops at its next progress step and fails it then."""
        task = self.get(identifier)
        if task is None:
            return None, None
        if task.status == TaskStatus.queued:
            ended = self.fail_cancelled(identifier)
            if ended is not None:
                return TaskStatus.queued, ended
            task = self.get(identifier)  # claimed meanwhile
            if task is None:
                return None, None
        if task.status == TaskStatus.processing:
            self._update(identifier, Task.status == TaskStatus.processing, cancel_requested=True)
        return TaskStatus(task.status), None

    def correct(
        self,
        identifier: str,
        speakers: dict[str, str | None] | None = None,
        segments: dict[str, dict[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        """Merge speaker names (None: back to the label) and segment edits (by index) into the
        task's corrections, in one transaction; returns them, or None when the task is gone."""
        with self.session.begin() as s:
            task = s.get(Task, identifier, with_for_update=True)
            if task is None:
                return None
            old = task.corrections or {}
            names = {**old.get("speakers", {}), **(speakers or {})}
            edits = dict(old.get("segments", {}))
            for n, edit in (segments or {}).items():
                edits[n] = {**edits.get(n, {}), **edit}
            task.corrections = {
                "speakers": {label: name for label, name in names.items() if name},
                "segments": edits,
            }
            return task.corrections

    def delete(self, identifier: str) -> Task | None:
        if not possible_id(identifier):
            return None
        with self.session.begin() as s:
            task = s.get(Task, identifier)
            if task is not None:
                s.execute(delete(Delivery).where(Delivery.task == identifier))
                s.execute(delete(Task).where(Task.identifier == identifier))
            return task

    def silent(self, since: datetime) -> list[Task]:
        """Processing tasks whose worker has not stamped them since `since` (it died)."""
        with self.session() as s:
            query = select(Task).where(
                Task.status == TaskStatus.processing,
                or_(Task.heartbeat_at.is_(None), Task.heartbeat_at < since),
            )
            return list(s.scalars(query.options(defer(Task.result), defer(Task.inputs))))

    def queued_before(self, before: datetime) -> list[str]:
        """Identifiers of tasks queued since before `before`, oldest first."""
        with self.session() as s:
            query = select(Task.identifier).where(
                Task.status == TaskStatus.queued, Task.created_at < before
            )
            return list(s.scalars(query.order_by(Task.created_at)))

    def requeue(self, identifier: str, worker: str | None = None, attempt_counts: bool = True) -> bool:  # fmt: skip
        """processing → queued: its worker died (the attempt counts) or is stopping (not)."""
        conditions = [Task.status == TaskStatus.processing]
        if worker is not None:
            conditions.append(Task.worker == worker)
        values: dict[str, Any] = {"status": TaskStatus.queued, "start_time": None, "worker": None,
                                  "stage": None, "progress": 0.0, "partial_text": None}  # fmt: skip
        if not attempt_counts:
            values["attempts"] = Task.attempts - 1
        return self._update(identifier, *conditions, **values)

    def media_in_use(self, ended_after: datetime) -> set[str]:
        """Input keys still needed: those of unfinished tasks and of tasks that ended after
        `ended_after` (MEDIA_RETENTION_SECONDS)."""
        with self.session() as s:
            keys = s.scalars(
                select(Task.input_key).where(
                    Task.input_key.is_not(None),
                    Task.status.in_(UNFINISHED) | (Task.end_time >= ended_after),
                )
            )
            return {k for k in keys if k}

    def purge(self, ended_before: datetime) -> int:
        """Delete tasks that ended before `ended_before` (RESULT_RETENTION_HOURS)."""
        old = select(Task.identifier).where(Task.status.in_(ENDED), Task.end_time < ended_before)
        with self.session.begin() as s:
            s.execute(delete(Delivery).where(Delivery.task.in_(old)))
            result = s.execute(delete(Task).where(Task.identifier.in_(old)))
            return int(result.rowcount)  # type: ignore[attr-defined]

    # workers

    def beat(self, worker: Worker) -> None:
        """`worker` is alive: store its report and stamp the tasks it is processing."""
        worker.heartbeat_at = now()
        with self.session.begin() as s:
            s.merge(worker)
            s.execute(
                update(Task)
                .where(Task.worker == worker.name, Task.status == TaskStatus.processing)
                .values(heartbeat_at=worker.heartbeat_at)
            )

    def forget_worker(self, name: str) -> None:
        with self.session.begin() as s:
            s.execute(delete(Worker).where(Worker.name == name))

    def workers(self) -> list[Worker]:
        """Live workers (reported within SILENT_SECONDS), by name; rows silent for a day are
        deleted."""
        alive_since = now() - timedelta(seconds=SILENT_SECONDS)
        with self.session.begin() as s:
            s.execute(delete(Worker).where(Worker.heartbeat_at < alive_since - timedelta(days=1)))
            query = select(Worker).where(Worker.heartbeat_at >= alive_since)
            return list(s.scalars(query.order_by(Worker.name)))

    # leases and deliveries

    def lease(self, name: str, holder: str, seconds: float, renew: bool = True) -> bool:
        """Take (or, with `renew`, keep) the cluster-wide duty `name` for `seconds`."""
        at, until = now(), now() + timedelta(seconds=seconds)
        free = Lease.expires_at < at
        with self.session.begin() as s:
            held = s.execute(
                update(Lease)
                .where(Lease.name == name, or_(free, Lease.holder == holder) if renew else free)
                .values(holder=holder, expires_at=until)
            )
            if held.rowcount:  # type: ignore[attr-defined]
                return True
        try:
            with self.session.begin() as s:
                s.add(Lease(name=name, holder=holder, expires_at=until))
            return True
        except IntegrityError:  # somebody holds it
            return False

    def due_deliveries(self, holder: str, seconds: float, limit: int = 8) -> list[Delivery]:
        """Claim up to `limit` pending deliveries that are due, for `seconds`."""
        at = now()
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Delivery.id)
                    .where(Delivery.state == "pending", Delivery.due_at <= at,
                           or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < at))
                    .order_by(Delivery.due_at)
                    .limit(limit)
                )
            )  # fmt: skip
        claimed = []
        for delivery_id in ids:
            with self.session.begin() as s:
                query = (
                    update(Delivery)
                    .where(Delivery.id == delivery_id, Delivery.state == "pending",
                           or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < at))
                    .values(claimed_by=holder, claimed_until=at + timedelta(seconds=seconds))
                    .returning(Delivery)
                )  # fmt: skip
                row = s.scalars(query, execution_options={"synchronize_session": False}).first()
                if row is not None:
                    claimed.append(row)
        return claimed

    def delivery_attempted(self, delivery: Delivery, state: str, outcome: dict[str, Any], retry_at: datetime | None = None) -> None:  # fmt: skip
        """Record an attempt on the delivery: `state` and (pending) when to try again; once
        it is final, its outcome on the task too (`metadata.webhook`)."""
        with self.session.begin() as s:
            s.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id)
                .values(state=state, attempts=Delivery.attempts + 1, claimed_by=None,
                        claimed_until=None, due_at=retry_at or now())
            )  # fmt: skip
            if state != "pending":
                query = update(Task).where(Task.identifier == delivery.task)
                s.execute(query.values(webhook=outcome))

    # speaker profiles

    def add_profile(self, **fields: Any) -> SpeakerProfile:
        profile = SpeakerProfile(identifier=str(uuid.uuid4()), created_at=now(), **fields)
        with self.session.begin() as s:
            s.add(profile)
        return profile

    def profiles(self, owner: str | None) -> list[SpeakerProfile]:
        """`owner`'s profiles (those made without API keys when None), oldest first."""
        with self.session() as s:
            query = select(SpeakerProfile).where(SpeakerProfile.owner.is_(owner) if owner is None
                                                 else SpeakerProfile.owner == owner)  # fmt: skip
            return list(s.scalars(query.order_by(SpeakerProfile.created_at)))

    def profile(self, identifier: str, owner: str | None) -> SpeakerProfile | None:
        return next((p for p in self.profiles(owner) if p.identifier == identifier), None)

    def rename_profile(self, identifier: str, name: str) -> None:
        with self.session.begin() as s:
            s.execute(update(SpeakerProfile).where(SpeakerProfile.identifier == identifier)
                      .values(name=name))  # fmt: skip

    def delete_profile(self, identifier: str) -> None:
        with self.session.begin() as s:
            s.execute(delete(SpeakerProfile).where(SpeakerProfile.identifier == identifier))
