"""The main flows end to end with PostgreSQL as the store (the other e2e tests use SQLite;
concurrency, restarts, hostile strings and the store itself run on both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import service
from tests.postgres import new_database


@pytest.fixture
def pg_client(settings, model_cache, postgres_admin) -> Iterator[TestClient]:
    settings.db_url = new_database(postgres_admin)
    with service(settings, model_cache) as client:
        yield client


def test_full_pipeline_formats_listing_and_deletion_on_postgresql(pg_client, sample_wav, settings):
    ready = pg_client.get("/health/ready").json()
    assert ready["checks"]["database"] == "ok"
    with open(sample_wav, "rb") as f:
        identifier = pg_client.post("/speech-to-text", files={"file": ("call.wav", f)}).json()[
            "identifier"
        ]
    queued = pg_client.post(
        "/speech-to-text?language=en", files={"file": ("again.wav", sample_wav.read_bytes())}
    ).json()["identifier"]
    assert pg_client.post(f"/task/{queued}/cancel").status_code == 200  # cancelled while queued

    task = pg_client.get(f"/task/{identifier}?wait=300").json()
    assert task["status"] == "completed", task["error"]
    words = [w for s in task["result"]["segments"] for w in s["words"]]
    assert len(words) > 40 and all("start" in w for w in words)
    assert {w.get("speaker") for w in words} >= {"SPEAKER_00", "SPEAKER_01"}
    assert task["metadata"]["start_time"].endswith(("Z", "+00:00"))
    srt = pg_client.get(f"/task/{identifier}?format=srt")
    assert srt.status_code == 200 and "-->" in srt.text and "[SPEAKER_0" in srt.text

    listing = pg_client.get("/task/all?status=failed").json()
    assert listing["total"] == 1 and listing["tasks"][0]["identifier"] == queued
    assert pg_client.get(f"/task/{queued}").json()["error"].startswith("cancelled")
    assert pg_client.delete(f"/task/{identifier}").status_code == 200
    assert pg_client.get(f"/task/{identifier}").status_code == 404
    assert pg_client.get("/task/all").json()["total"] == 1
    assert not any(settings.media_dir.iterdir())


def test_a_worker_waits_out_a_database_outage_and_then_runs_new_tasks(pg_client, settings, caplog):
    import time

    import psycopg

    from tests.e2e.conftest import wait

    admin = settings.db_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://")
    name = settings.db_url.rsplit("/", 1)[1]

    def outage(on: bool) -> None:
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not on).lower()}')
            if on:  # the pooled connections of the API and the worker are cut too
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )

    outage(True)
    try:
        deadline = time.monotonic() + 30
        while "cannot claim tasks" not in caplog.text:
            assert time.monotonic() < deadline, "the worker never noticed the outage"
            time.sleep(0.2)
        assert pg_client.get("/health/ready").status_code == 503
    finally:
        outage(False)
    turns = b'[{"speaker": "A", "start": 0, "end": 1}]'
    aligned = b'{"segments": [{"start": 0, "end": 1, "text": "hi"}], "language": "en"}'
    response = pg_client.post(
        "/service/combine",
        files={"aligned_transcript": ("a.json", aligned), "diarization_result": ("d.json", turns)},
    )
    assert response.status_code == 200, response.text
    assert wait(pg_client, response.json()["identifier"], timeout=60)["status"] == "completed"
