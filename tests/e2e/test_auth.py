"""API keys (bearer tokens): each key sees only its own tasks; per-key rate limit; no secret
in the database, the listings or the logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import service, wait

KEY_A, KEY_B = "key-a-5f1e9c2b7d", "key-b-0a8d6e4f3c"
A, B = {"authorization": f"Bearer {KEY_A}"}, {"authorization": f"Bearer {KEY_B}"}
TURNS = b'[{"speaker": "A", "start": 0, "end": 1}]'
ALIGNED = b'{"segments": [{"start": 0, "end": 1, "text": "hi"}], "language": "en"}'


@pytest.fixture
def guarded(settings, model_cache) -> Iterator[TestClient]:
    settings.api_keys = f"{KEY_A}, {KEY_B}"
    with service(settings, model_cache) as c:
        yield c


def _combine(client: TestClient, headers: dict, query: str = "") -> str:
    response = client.post(
        f"/service/combine{query}",
        files={"aligned_transcript": ("a.json", ALIGNED), "diarization_result": ("d.json", TURNS)},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()["identifier"]


def test_requests_without_a_valid_key_get_401_in_the_envelope(guarded):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {KEY_A}"}):
        response = guarded.get("/task/all", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert guarded.get("/task/all", headers=A).status_code == 200


def test_health_and_docs_need_no_key(guarded):
    for path in ("/health", "/health/live", "/health/ready", "/openapi.json", "/docs"):
        assert guarded.get(path).status_code == 200, path
    scheme = guarded.get("/openapi.json").json()["components"]["securitySchemes"]
    assert scheme["HTTPBearer"]["scheme"] == "bearer"


def test_an_upload_without_a_key_is_refused_before_it_is_stored(guarded, settings, sample_wav):
    with open(sample_wav, "rb") as f:
        response = guarded.post("/speech-to-text", files={"file": ("s.wav", f)})
    assert response.status_code == 401
    assert not any(settings.media_dir.iterdir())


def test_each_key_sees_lists_cancels_and_deletes_only_its_own_tasks(guarded):
    mine = _combine(guarded, A)
    theirs = _combine(guarded, B)
    wait_a = wait(guarded_with(guarded, A), mine)
    assert wait_a["status"] == "completed"

    listed = guarded.get("/task/all", headers=A).json()
    assert [t["identifier"] for t in listed["tasks"]] == [mine] and listed["total"] == 1
    assert [t["identifier"] for t in guarded.get("/task/all", headers=B).json()["tasks"]] == [
        theirs
    ]
    for method, path in (
        ("GET", f"/task/{theirs}"),
        ("GET", f"/task/{theirs}?format=json"),
        ("POST", f"/task/{theirs}/cancel"),
        ("DELETE", f"/task/{theirs}"),
        ("DELETE", f"/task/{theirs}/delete"),
    ):
        response = guarded.request(method, path, headers=A)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "FORBIDDEN"
    assert guarded.get(f"/task/{theirs}", headers=B).status_code == 200  # B's task is intact
    assert guarded.delete(f"/task/{mine}", headers=A).status_code == 200
    assert guarded.get(f"/task/{mine}", headers=A).status_code == 404


def guarded_with(client: TestClient, headers: dict) -> TestClient:
    client.headers.update(headers)
    return client


def test_the_rate_limit_answers_429_with_retry_after_per_key(settings, model_cache):
    settings.api_keys, settings.rate_limit_per_minute = f"{KEY_A},{KEY_B}", 5
    with service(settings, model_cache) as client:
        codes = [client.get("/task/all", headers=A).status_code for _ in range(5)]
        assert codes == [200] * 5
        response = client.get("/task/all", headers=A)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "TOO_MANY_REQUESTS"
        assert 1 <= int(response.headers["retry-after"]) <= 12  # one request per 12 s
        assert client.get("/task/all", headers=B).status_code == 200  # other keys unaffected
        assert client.get("/health/live").status_code == 200  # probes are never limited


def test_the_rate_limit_applies_per_client_address_without_keys(settings, model_cache):
    settings.rate_limit_per_minute = 2
    with service(settings, model_cache) as client:
        assert [client.get("/models").status_code for _ in range(3)] == [200, 200, 429]


def test_keys_and_url_secrets_never_reach_the_database_listings_or_logs(guarded, settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings.allow_private_urls = True  # the hook is on loopback
    hook = "http://127.0.0.1:9/hook?token=hook-secret-77"
    identifier = _combine(guarded, A, f"?callback_url={hook}")
    guarded.headers.update(A)
    wait(guarded, identifier)
    task = guarded.get(f"/task/{identifier}").json()
    assert task["metadata"]["callback_url"] == "http://127.0.0.1:9/hook?token=REDACTED"
    shown = guarded.get("/task/all").text + guarded.get(f"/task/{identifier}").text
    assert KEY_A not in shown and "hook-secret-77" not in shown
    database = settings.db_url.removeprefix("sqlite:///")
    files = [Path(database), Path(database + "-wal")]
    stored = b"".join(f.read_bytes() for f in files if f.exists())
    assert KEY_A.encode() not in stored and KEY_B.encode() not in stored
    assert KEY_A not in caplog.text and KEY_B not in caplog.text
