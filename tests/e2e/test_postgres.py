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
