import threading

import pytest

from app.pipeline.models import ModelCache
from app.store.db import make_engine
from app.store.models import TaskStatus, TaskType
from app.store.tasks import TaskStore
from app.worker.job import Runtime
from app.worker.local import LocalQueue


@pytest.fixture
def store(settings):
    store = TaskStore(make_engine(settings.db_url))
    store.create_schema()
    yield store
    store.engine.dispose()


def test_sqlite_runs_in_wal_mode(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


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
