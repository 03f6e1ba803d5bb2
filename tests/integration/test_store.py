"""The store's transitions and the janitor's recovery, on SQLite and PostgreSQL."""

import os
import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from app.pipeline.models import ModelCache
from app.store.db import MIGRATIONS, make_engine
from app.store.models import Base, Delivery, TaskStatus, TaskType, Worker, worker_of
from app.store.tasks import SILENT_SECONDS, TaskStore, as_utc, now
from app.worker.janitor import Janitor
from app.worker.job import MAX_ATTEMPTS, Runtime
from app.worker.queue import LocalQueue


@pytest.fixture
def store(db_url):
    store = TaskStore(make_engine(db_url))
    store.create_schema()
    yield store
    store.engine.dispose()


class RecordingQueue(LocalQueue):
    """A queue whose broker holds `held` and records what is sent to it."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.sent: list[str] = []
        self._held = held

    def submit(self, identifier: str) -> None:
        self.sent.append(identifier)

    def held(self) -> set[str] | None:
        return self._held


def _alive_since():
    return now() - timedelta(seconds=SILENT_SECONDS)


def _silent(store: TaskStore, identifier: str) -> None:
    store._update(identifier, heartbeat_at=now() - timedelta(seconds=SILENT_SECONDS + 5))


def _janitor(store, settings, queue=None) -> Janitor:
    return Janitor(Runtime(settings.for_worker(), store, ModelCache(), queue or RecordingQueue()))


def test_sqlite_runs_in_wal_mode(settings):
    store = TaskStore(make_engine(settings.db_url))
    store.create_schema()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.engine.dispose()


def test_the_migrations_build_exactly_the_models_schema(store):
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0008"


def test_a_database_of_the_first_release_is_upgraded_in_place(db_url):
    """The first release made its table with create_all, had no migration history and stored
    inputs as paths: they become keys inside MEDIA_DIR."""
    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.exec_driver_sql(
            "INSERT INTO tasks (identifier, status, task_type, task_params, info, progress, "
            "created_at, cancel_requested, input_path) VALUES ('old', 'completed', "
            "'transcription', '{}', '{}', 100, '2026-01-01 00:00:00', false, "
            "'/srv/media/1234.wav')"
        )
    store = TaskStore(engine)
    store.create_schema()
    old = store.get("old")
    assert old is not None and old.status == TaskStatus.completed and old.owner is None
    assert old.attempts == 0 and old.input_key == "1234.wav"
    assert store.list_tasks(owner="someone")[1] == 0
    engine.dispose()


def test_a_task_goes_queued_processing_completed(store):
    task = store.create(TaskType.transcription, {"a": 1}, file_name="x.wav")
    assert store.get(task.identifier).status == TaskStatus.queued
    claimed = store.claim(task.identifier, "w1@h", _alive_since(), MAX_ATTEMPTS)
    assert claimed.status == TaskStatus.processing and claimed.worker == "w1@h"
    assert claimed.file_name == "x.wav" and claimed.attempts == 1
    assert store.claim(task.identifier, "w2@h", now() - timedelta(seconds=60), 2) is None
    assert store.progress(task.identifier, "w1@h", "transcribing", 42.42, partial_text="Hi.")
    assert not store.progress(task.identifier, "w2@h", "transcribing", 50)  # not its task
    got = store.get(task.identifier)
    assert (got.status, got.stage, got.progress) == (TaskStatus.processing, "transcribing", 42.4)
    assert got.partial_text == "Hi."
    assert store.finish(task.identifier, {"segments": []}, {}, "w2@h") is None
    done = store.finish(task.identifier, {"segments": []}, {"model": "base"}, "w1@h", language="en")
    assert done.status == TaskStatus.completed and done.result == {"segments": []}
    assert done.language == "en" and done.info == {"model": "base"} and done.progress == 100
    assert done.partial_text is None  # the result holds the text now
    assert done.duration is not None and done.duration >= 0
    assert store.fail(task.identifier, "late") is None  # a finished task stays finished


def test_only_one_of_many_concurrent_workers_claims_a_task(store):
    task = store.create(TaskType.transcription, {})
    wins = []
    threads = [
        threading.Thread(target=lambda n=n: wins.append(store.claim(task.identifier, f"w{n}@h", _alive_since(), 2)))
        for n in range(10)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(w is not None for w in wins) == 1


def test_workers_claiming_the_next_task_side_by_side_each_get_their_own(store):
    ids = {store.create(TaskType.transcription, {}).identifier for _ in range(12)}
    got: list = []
    lock = threading.Lock()

    def drain(name: str) -> None:
        while (task := store.claim_next(name)) is not None:
            with lock:
                got.append(task.identifier)

    threads = [threading.Thread(target=drain, args=(f"w{n}@h",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)  # every task once, none twice


def test_a_task_of_a_silent_worker_is_taken_over_by_a_redelivery(store):
    task = store.create(TaskType.transcription, {})
    store.claim(task.identifier, "dead@h", _alive_since(), MAX_ATTEMPTS)
    silent_since = now() - timedelta(seconds=SILENT_SECONDS)
    assert store.claim(task.identifier, "new@h", silent_since, MAX_ATTEMPTS) is None  # alive
    _silent(store, task.identifier)
    store.progress(task.identifier, "dead@h", "transcribing", 10, partial_text="Hello")
    _silent(store, task.identifier)
    taken = store.claim(task.identifier, "new@h", silent_since, MAX_ATTEMPTS)
    assert taken.worker == "new@h" and taken.attempts == 2
    assert taken.partial_text is None  # the new attempt transcribes from the start
    assert not store.progress(task.identifier, "dead@h", "transcribing", 10)  # the old one stops
    _silent(store, task.identifier)  # the second worker dies too: no third attempt
    assert store.claim(task.identifier, "third@h", silent_since, MAX_ATTEMPTS) is None


def test_each_end_queues_exactly_one_webhook_delivery(store):
    hooked = store.create(TaskType.transcription, {}, callback_url="https://example.com/hook")
    cancelled = store.create(TaskType.transcription, {}, callback_url="https://example.com/hook")
    plain = store.create(TaskType.transcription, {})
    for task in (hooked, plain):
        store.claim(task.identifier, "w@h", _alive_since(), 2)
        store.finish(task.identifier, {}, {}, "w@h")
        assert store.finish(task.identifier, {}, {}, "w@h") is None
    before, ended = store.cancel(cancelled.identifier)
    assert before == TaskStatus.queued and ended.error.startswith("cancelled")
    with store.session() as s:
        deliveries = sorted(d.task for d in s.query(Delivery))
    assert deliveries == sorted([hooked.identifier, cancelled.identifier])


def test_a_due_delivery_is_claimed_by_one_sender_at_a_time(store):
    task = store.create(TaskType.transcription, {}, callback_url="https://example.com/hook")
    store.claim(task.identifier, "w@h", _alive_since(), 2)
    store.finish(task.identifier, {}, {}, "w@h")
    results: list = []
    threads = [threading.Thread(target=lambda n=n: results.append(store.due_deliveries(f"s{n}", 60)))
               for n in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [d for r in results for d in r]
    assert len(claimed) == 1
    store.delivery_attempted(claimed[0], "pending", {"status": "failed", "attempts": 1},
                             now() + timedelta(hours=1))  # fmt: skip
    assert store.due_deliveries("s9", 60) == []  # not due before its backoff
    assert store.get(task.identifier).webhook is None  # shown once the outcome is final
    with store.session.begin() as s:
        s.get(Delivery, claimed[0].id).due_at = now()
    retry = store.due_deliveries("s9", 60)
    assert [d.attempts for d in retry] == [1]
    store.delivery_attempted(retry[0], "delivered", {"status": "delivered", "attempts": 2})
    assert store.get(task.identifier).webhook == {"status": "delivered", "attempts": 2}


def test_a_lease_has_one_holder_until_it_expires(store):
    assert store.lease("janitor", "a", 60)
    assert not store.lease("janitor", "b", 60)
    assert store.lease("janitor", "a", 60)  # renewed by its holder
    assert not store.lease("janitor", "a", 60, renew=False)  # a due-once duty is not renewed
    store.lease("janitor", "a", -1)  # let it lapse
    assert store.lease("janitor", "b", 60)


def test_live_workers_are_listed_and_silent_ones_are_not(store):
    for name, age in (("w1-aa@h1", 0), ("w2-bb@h2", SILENT_SECONDS + 5)):
        store.beat(Worker(name=name, host="h", pid=1, queue="local", state="idle", models=[],
                          started_at=now()))  # fmt: skip
        if age:
            with store.session.begin() as s:
                s.get(Worker, name).heartbeat_at = now() - timedelta(seconds=age)
    assert [w.name for w in store.workers()] == ["w1-aa@h1"]
    assert worker_of("w41-abc123@gpu-box") == {
        "name": "w41-abc123@gpu-box",
        "host": "gpu-box",
        "pid": 41,
    }


def test_listing_is_newest_first_with_filters_and_a_total(store):
    ids = [store.create(TaskType.transcription, {}).identifier for _ in range(3)]
    diar = store.create(TaskType.diarization, {}).identifier
    store.claim(ids[0], "w@h", _alive_since(), 2)
    store.fail(ids[0], "boom")
    tasks, total = store.list_tasks()
    assert [t.identifier for t in tasks] == [diar, *reversed(ids)] and total == 4
    tasks, total = store.list_tasks(limit=2, offset=1)
    assert [t.identifier for t in tasks] == [ids[2], ids[1]] and total == 4
    assert [t.identifier for t in store.list_tasks(status=TaskStatus.failed)[0]] == [ids[0]]
    assert [t.identifier for t in store.list_tasks(task_type=TaskType.diarization)[0]] == [diar]


def test_queue_position_counts_the_tasks_ahead(store):
    a = store.create(TaskType.transcription, {})
    b = store.create(TaskType.transcription, {})
    assert store.queue_position(store.get(a.identifier)) == 1
    assert store.queue_position(store.get(b.identifier)) == 2
    store.claim(a.identifier, "w@h", _alive_since(), 2)
    assert store.queue_position(store.get(a.identifier)) is None
    assert store.queue_position(store.get(b.identifier)) == 1


def test_recovery_requeues_what_it_can_and_fails_what_it_cannot(store, settings):
    """The janitor takes over tasks whose worker is dead (silent elsewhere, or a dead pid on
    this host), leaves live workers' tasks alone, and fails tasks that cannot run again."""
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    (settings.media_dir / "kept.wav").write_bytes(b"RIFF")
    dead = subprocess.Popen(["true"])
    dead.wait()
    here = socket.gethostname()
    workers = {
        "live elsewhere": "w41-aa@other-host",
        "silent elsewhere": "w42-bb@other-host",
        "dead here": f"w{dead.pid}-cc@{here}",
        "live here": f"w{os.getppid()}-dd@{here}",
        "input gone": "w43-ee@other-host",
        "ran twice": "w44-ff@other-host",
        "combine": "w45-gg@other-host",
    }
    ids = {}
    for label, worker in workers.items():
        key = "gone.wav" if label == "input gone" else "kept.wav"
        kind = TaskType.combine if label == "combine" else TaskType.transcription
        fields = (
            {"inputs": {"aligned_transcript": {}}} if label == "combine" else {"input_key": key}
        )
        ids[label] = store.create(kind, {}, **fields).identifier
        store.claim(ids[label], worker, _alive_since(), MAX_ATTEMPTS)
    for label in ("silent elsewhere", "input gone", "ran twice", "combine"):
        _silent(store, ids[label])
    store._update(ids["ran twice"], attempts=MAX_ATTEMPTS)
    queue = RecordingQueue()
    _janitor(store, settings, queue).recover()
    status = {label: store.get(i).status for label, i in ids.items()}
    assert status == {
        "live elsewhere": TaskStatus.processing,
        "silent elsewhere": TaskStatus.queued,
        "dead here": TaskStatus.queued,
        "live here": TaskStatus.processing,
        "input gone": TaskStatus.failed,
        "ran twice": TaskStatus.failed,
        "combine": TaskStatus.queued,
    }
    assert store.get(ids["input gone"]).error.startswith("interrupted: its worker stopped")
    assert store.get(ids["ran twice"]).error.startswith("interrupted: a worker stopped 2 times")
    assert sorted(queue.sent) == sorted(
        ids[k] for k in ("silent elsewhere", "dead here", "combine")
    )


def test_queued_tasks_the_broker_lost_are_sent_again(store, settings):
    old = [store.create(TaskType.transcription, {}).identifier for _ in range(3)]
    for identifier in old:
        store._update(identifier, created_at=now() - timedelta(minutes=1))
    fresh = store.create(TaskType.transcription, {}).identifier  # may not have arrived yet
    queue = RecordingQueue(held={old[0]})
    _janitor(store, settings, queue).recover()
    assert queue.sent == old[1:] and fresh not in queue.sent


def test_housekeeping_deletes_expired_media_and_results_and_stray_files(store, settings):
    media = settings.media_dir
    media.mkdir(parents=True, exist_ok=True)
    for name in ("queued", "recent", "old", "stray"):
        (media / f"{name}.wav").write_bytes(b"RIFF")
    queued = store.create(TaskType.transcription, {}, input_key="queued.wav")
    recent = store.create(TaskType.transcription, {}, input_key="recent.wav")
    old = store.create(TaskType.transcription, {}, input_key="old.wav")
    for task in (recent, old):
        store.claim(task.identifier, "w@h", _alive_since(), 2)
        store.finish(task.identifier, {"segments": []}, {})
    store._update(old.identifier, end_time=now() - timedelta(hours=30))
    settings.media_retention_seconds, settings.result_retention_hours = 3600, 24

    janitor = _janitor(store, settings)
    assert janitor.housekeep(grace_seconds=0) == (2, 1)  # old + stray files; the old task
    assert sorted(f.name for f in media.iterdir()) == ["queued.wav", "recent.wav"]
    assert store.get(old.identifier) is None
    assert store.get(recent.identifier) is not None and store.get(queued.identifier) is not None

    janitor.runtime.settings.media_retention_seconds = 0  # only unfinished tasks keep media
    assert janitor.housekeep(grace_seconds=0) == (1, 0)
    assert [f.name for f in media.iterdir()] == ["queued.wav"]
    (media / "uploading.wav").write_bytes(b"RIFF")
    assert janitor.housekeep() == (0, 0)  # a file being uploaded right now is left alone


def test_a_heartbeat_stamps_only_its_own_processing_tasks(store):
    mine = store.create(TaskType.transcription, {})
    theirs = store.create(TaskType.transcription, {})
    store.claim(mine.identifier, "w1-a@h", _alive_since(), 2)
    store.claim(theirs.identifier, "w2-b@h", _alive_since(), 2)
    old = now() - timedelta(minutes=5)
    for task in (mine, theirs):
        store._update(task.identifier, heartbeat_at=old)
    store.beat(Worker(name="w1-a@h", host="h", pid=1, queue="local", state="busy",
                      task=mine.identifier, models=[], started_at=now()))  # fmt: skip
    assert as_utc(store.get(mine.identifier).heartbeat_at) > now() - timedelta(seconds=5)
    assert as_utc(store.get(theirs.identifier).heartbeat_at) < now() - timedelta(minutes=4)
