import threading
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from app.pipeline.models import ModelCache
from app.store.db import MIGRATIONS, make_engine
from app.store.models import Base, TaskStatus, TaskType
from app.store.tasks import TaskStore, as_utc, now
from app.worker.job import Runtime
from app.worker.local import LocalQueue


@pytest.fixture
def store(db_url):
    store = TaskStore(make_engine(db_url))
    store.create_schema()
    yield store
    store.engine.dispose()


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
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0004"


def test_a_database_of_the_first_release_is_upgraded_in_place(db_url):
    """The first release made its table with create_all and had no migration history."""
    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.exec_driver_sql(
            "INSERT INTO tasks (identifier, status, task_type, task_params, info, progress, "
            "created_at, cancel_requested) VALUES ('old', 'completed', 'transcription', '{}', "
            "'{}', 100, '2026-01-01 00:00:00', false)"
        )
    store = TaskStore(engine)
    store.create_schema()
    old = store.get("old")
    assert old is not None and old.status == TaskStatus.completed and old.owner is None
    assert old.attempts == 0
    assert store.list_tasks(owner="someone")[1] == 0
    engine.dispose()


def test_a_task_goes_queued_processing_completed(store):
    task = store.create(TaskType.transcription, task_params={"a": 1}, file_name="x.wav")
    assert store.get(task.identifier).status == TaskStatus.queued
    assert store.claim(task.identifier)
    assert not store.claim(task.identifier)  # claimed once only
    store.progress(task.identifier, "transcribing", 42.42)
    got = store.get(task.identifier)
    assert (got.status, got.stage, got.progress) == (TaskStatus.processing, "transcribing", 42.4)
    assert store.finish(task.identifier, {"segments": []}, {"model": "base"}, language="en")
    done = store.get(task.identifier)
    assert done.status == TaskStatus.completed and done.result == {"segments": []}
    assert done.language == "en" and done.info == {"model": "base"} and done.progress == 100
    assert done.duration is not None and done.duration >= 0
    assert not store.fail(task.identifier, "late")  # a finished task stays finished


def test_only_one_of_many_concurrent_workers_claims_a_task(store):
    task = store.create(TaskType.transcription, task_params={})
    wins = []
    threads = [
        threading.Thread(target=lambda: wins.append(store.claim(task.identifier)))
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_listing_is_newest_first_with_filters_and_a_total(store):
    ids = [store.create(TaskType.transcription, task_params={}).identifier for _ in range(3)]
    diar = store.create(TaskType.diarization, task_params={}).identifier
    store.claim(ids[0])
    store.fail(ids[0], "boom")
    tasks, total = store.list_tasks()
    assert [t.identifier for t in tasks] == [diar, *reversed(ids)] and total == 4
    tasks, total = store.list_tasks(limit=2, offset=1)
    assert [t.identifier for t in tasks] == [ids[2], ids[1]] and total == 4
    assert [t.identifier for t in store.list_tasks(status=TaskStatus.failed)[0]] == [ids[0]]
    assert [t.identifier for t in store.list_tasks(task_type=TaskType.diarization)[0]] == [diar]


def test_queue_position_counts_the_tasks_ahead(store):
    a = store.create(TaskType.transcription, task_params={})
    b = store.create(TaskType.transcription, task_params={})
    assert store.queue_position(store.get(a.identifier)) == 1
    assert store.queue_position(store.get(b.identifier)) == 2
    store.claim(a.identifier)
    assert store.queue_position(store.get(a.identifier)) is None
    assert store.queue_position(store.get(b.identifier)) == 1


def test_a_restart_requeues_what_it_can_and_fails_what_it_cannot(store, settings, tmp_path):
    kept = tmp_path / "kept.wav"
    kept.write_bytes(b"RIFF")
    running = store.create(TaskType.transcription, task_params={}, input_path=str(kept))
    waiting = store.create(TaskType.diarization, task_params={}, input_path=str(kept))
    lost = store.create(
        TaskType.transcription, task_params={}, input_path=str(tmp_path / "gone.wav")
    )
    combine = store.create(TaskType.combine, task_params={}, inputs={"aligned_transcript": {}})
    store.claim(running.identifier)
    store.claim(lost.identifier)

    queue = LocalQueue(Runtime(settings, store, ModelCache()), workers=1)
    queue.recover()  # without starting threads: only the bookkeeping
    assert store.get(running.identifier).status == TaskStatus.queued
    assert store.get(waiting.identifier).status == TaskStatus.queued
    assert store.get(combine.identifier).status == TaskStatus.queued
    failed = store.get(lost.identifier)
    assert failed.status == TaskStatus.failed and failed.error.startswith("interrupted")
    submitted = []
    while not queue._ids.empty():
        submitted.append(queue._ids.get())
    assert submitted == [running.identifier, waiting.identifier, combine.identifier]


def test_housekeeping_deletes_expired_media_and_results_and_stray_files(store, settings, tmp_path):
    media = settings.media_dir
    media.mkdir(parents=True, exist_ok=True)
    files = {name: media / f"{name}.wav" for name in ("queued", "recent", "old", "stray")}
    for f in files.values():
        f.write_bytes(b"RIFF")
    queued = store.create(TaskType.transcription, task_params={}, input_path=str(files["queued"]))
    recent = store.create(TaskType.transcription, task_params={}, input_path=str(files["recent"]))
    old = store.create(TaskType.transcription, task_params={}, input_path=str(files["old"]))
    for task in (recent, old):
        store.claim(task.identifier)
        store.finish(task.identifier, {"segments": []}, {})
    store._update(old.identifier, end_time=now() - timedelta(hours=30))
    settings.media_retention_seconds, settings.result_retention_hours = 3600, 24

    queue = LocalQueue(Runtime(settings, store, ModelCache()), workers=1)
    assert queue.housekeep(grace_seconds=0) == (2, 1)  # old + stray files; the old task
    assert sorted(f.name for f in media.iterdir()) == ["queued.wav", "recent.wav"]
    assert store.get(old.identifier) is None
    assert store.get(recent.identifier) is not None and store.get(queued.identifier) is not None

    settings.media_retention_seconds = 0  # now only unfinished tasks keep their media
    assert queue.housekeep(grace_seconds=0) == (1, 0)
    assert [f.name for f in media.iterdir()] == ["queued.wav"]
    young = media / "uploading.wav"
    young.write_bytes(b"RIFF")
    assert queue.housekeep() == (0, 0)  # a file being uploaded right now is left alone


def test_a_task_the_service_died_running_twice_is_failed_not_retried(store, settings, tmp_path):
    kept = tmp_path / "kept.wav"
    kept.write_bytes(b"RIFF")
    task = store.create(TaskType.transcription, task_params={}, input_path=str(kept))
    queue = LocalQueue(Runtime(settings, store, ModelCache()), workers=1)
    store.claim(task.identifier)  # first run: the service dies
    queue.recover()
    assert store.get(task.identifier).status == TaskStatus.queued
    store.claim(task.identifier)  # second run: it dies again
    queue.recover()
    failed = store.get(task.identifier)
    assert failed.status == TaskStatus.failed and failed.attempts == 2
    assert failed.error.startswith("interrupted: the service stopped 2 times")


def test_recovery_leaves_the_tasks_of_live_processes_alone(store, settings, tmp_path):
    """Several service processes on one database: a restarting one takes over only the tasks
    whose process is gone (dead here, or silent for STALE_SECONDS elsewhere)."""
    import os
    import socket
    import subprocess

    from app.worker.local import STALE_SECONDS

    kept = tmp_path / "kept.wav"
    kept.write_bytes(b"RIFF")
    dead = subprocess.Popen(["true"])
    dead.wait()
    workers = {
        "live elsewhere": "other-host:41:aaaa",
        "silent elsewhere": "other-host:42:bbbb",
        "dead here": f"{socket.gethostname()}:{dead.pid}:cccc",
        "earlier life of this process": f"{socket.gethostname()}:{os.getpid()}:dddd",
        "live here": f"{socket.gethostname()}:{os.getppid()}:eeee",
    }
    ids = {}
    for label, worker in workers.items():
        ids[label] = store.create(TaskType.transcription, task_params={}, input_path=str(kept))
        assert store.claim(ids[label].identifier, worker)
    stale = now() - timedelta(seconds=STALE_SECONDS + 1)
    store._update(ids["silent elsewhere"].identifier, heartbeat_at=stale)

    queue = LocalQueue(Runtime(settings, store, ModelCache()), workers=1)
    queue.recover()
    status = {label: store.get(task.identifier).status for label, task in ids.items()}
    assert status == {
        "live elsewhere": TaskStatus.processing,
        "silent elsewhere": TaskStatus.queued,
        "dead here": TaskStatus.queued,
        "earlier life of this process": TaskStatus.queued,
        "live here": TaskStatus.processing,
    }

    store.heartbeat("other-host:41:aaaa")  # the live one keeps beating; then it stops
    store._update(ids["live elsewhere"].identifier, heartbeat_at=stale)
    queue.recover(processing_only=True)
    assert store.get(ids["live elsewhere"].identifier).status == TaskStatus.queued
    assert store.get(ids["live here"].identifier).status == TaskStatus.processing


def test_a_heartbeat_stamps_only_its_own_processing_tasks(store):
    mine = store.create(TaskType.transcription, task_params={})
    theirs = store.create(TaskType.transcription, task_params={})
    store.claim(mine.identifier, "h:1:mine")
    store.claim(theirs.identifier, "h:2:theirs")
    old = now() - timedelta(minutes=5)
    for task in (mine, theirs):
        store._update(task.identifier, heartbeat_at=old)
    store.heartbeat("h:1:mine")
    assert as_utc(store.get(mine.identifier).heartbeat_at) > now() - timedelta(seconds=5)
    assert as_utc(store.get(theirs.identifier).heartbeat_at) < now() - timedelta(minutes=4)
