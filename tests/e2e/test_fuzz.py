"""Fuzz every operation of the service against its own OpenAPI schema (schemathesis, in-process).

Each operation gets schema-driven requests, valid and invalid (schemathesis's coverage phase,
then up to `max_examples` fuzzed ones). Every response must not be a server error, and its
status code, content type and body must be the ones the schema documents.

Each operation runs three times: without API keys, with them (`API_KEYS`), and without keys on
PostgreSQL, each time against a fresh app (own database and media folder) that already holds a
completed, a queued and a cancelled task, and with keys one of another key, so that task
lookups, formats, cancellation and deletion answer from real rows, not only with 404. Random uploads are refused at submission
(400/415), so no model pipeline runs.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth import fingerprint
from app.main import create_app
from app.settings import Settings
from app.store.models import TaskType
from tests.e2e.conftest import worker_thread
from tests.postgres import new_database

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
KEY, OTHER_KEY = "fuzz-key", "other-key"

ALIGNED = {
    "segments": [
        {
            "start": 0.0,
            "end": 1.5,
            "text": " Hello there.",
            "words": [
                {"word": "Hello", "start": 0.0, "end": 0.6, "score": 0.9},
                {"word": "there.", "start": 0.7, "end": 1.5, "score": 0.8},
            ],
        }
    ],
    "language": "en",
}
TURNS = [{"speaker": "SPEAKER_00", "start": 0.0, "end": 1.5, "label": "A"}]


def _live_schema() -> dict:
    """The OpenAPI document the app serves at /openapi.json (built without starting it)."""
    offline = Settings(  # type: ignore[call-arg]
        _env_file=None, db_url="sqlite://", device="cpu", compute_type="int8"
    )
    return create_app(offline).openapi()


schema = schemathesis.openapi.from_dict(_live_schema())


class Fuzzed(NamedTuple):
    app: FastAPI
    headers: dict[str, str]
    """What a client with a valid key sends (nothing without API keys)."""
    completed: str
    queued: str
    """Never handed to a worker: it stays queued until cancelled."""
    cancelled: str
    foreign: str | None
    """A task of another API key (with API keys only)."""


def _call(app: FastAPI, headers: dict[str, str], path: str, method: str, **kwargs) -> dict:
    response = schema[path][method].Case(**kwargs).call(app=app, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _seed(app: FastAPI, headers: dict[str, str], keyed: bool, worker) -> Fuzzed:
    body = {
        "aligned_transcript": json.dumps(ALIGNED).encode(),
        "diarization_result": json.dumps(TURNS).encode(),
    }
    # the first request starts the app's lifespan (database schema, workers)
    completed = _call(app, headers, "/service/combine", "POST", body=body)["identifier"]
    task = _call(
        app,
        headers,
        "/task/{identifier}",
        "GET",
        path_parameters={"identifier": completed},
        query={"wait": 30},
    )
    assert task["status"] == "completed", task
    worker.__exit__(None, None, None)  # from here on, queued tasks stay queued
    store, owner = app.state.store, fingerprint(KEY) if keyed else None
    queued, cancelled = (
        store.create(TaskType.combine, task_params={}, inputs={}, owner=owner).identifier
        for _ in range(2)
    )
    path_parameters = {"identifier": cancelled}
    _call(app, headers, "/task/{identifier}/cancel", "POST", path_parameters=path_parameters)
    foreign = None
    if keyed:
        foreign = store.create(
            TaskType.combine, task_params={}, inputs={}, owner=fingerprint(OTHER_KEY)
        ).identifier
    return Fuzzed(app, headers, completed, queued, cancelled, foreign)


@pytest.fixture(params=["open", "keyed", "postgresql"])
def fuzzed(request, settings, model_cache) -> Iterator[Fuzzed]:
    """A fresh app per operation. Its lifespan is started by the first request and ended by
    schemathesis's pytest plugin when the test tears down, before this fixture's teardown.
    `postgresql`: without keys, on PostgreSQL, which refuses what SQLite stores (NUL, NaN)."""
    keyed = request.param == "keyed"
    # a fuzzed URL that reaches a real address must not hold the test for minutes
    quick: dict[str, object] = {
        "download_timeout_seconds": 2,
        "callback_timeout_seconds": 1,
        "webhook_attempts": 1,
    }
    if keyed:
        quick["api_keys"] = f"{KEY},{OTHER_KEY}"
    if request.param == "postgresql":
        quick["db_url"] = new_database(request.getfixturevalue("postgres_admin"))
    settings = settings.model_copy(update=quick)
    headers = {"Authorization": f"Bearer {KEY}"} if keyed else {}
    app = create_app(settings)
    worker = worker_thread(settings, model_cache)
    worker.__enter__()
    try:
        yield _seed(app, headers, keyed, worker)
    finally:
        worker.__exit__(None, None, None)  # (a second exit does nothing)


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    derandomize=True,  # the same examples every run: CI is reproducible
    deadline=None,
    database=None,  # no example database under .hypothesis/: runs do not replay old failures
    # one app serves every example of an operation, on purpose: it is what a server does
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_schema(case, fuzzed):
    # Choices below follow from the generated request, so Hypothesis can replay and shrink.
    pick = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    path_parameters = case.path_parameters or {}
    if "identifier" in path_parameters:
        # most requests name a task that exists instead of the generated identifier; a queued
        # task never ends here, so GET ?wait= on it would hold the request for up to 600 s
        pending = fuzzed.completed if case.method == "GET" else fuzzed.queued
        known = [fuzzed.completed, fuzzed.cancelled, pending, fuzzed.foreign]
        chosen = known[pick % 5] if pick % 5 < 4 else None
        if chosen is not None:
            path_parameters["identifier"] = chosen
    # with API keys, one request in eight keeps the generated (invalid) bearer token
    headers = fuzzed.headers if (pick >> 8) % 8 else {}
    # no worker is alive any more here: readiness and the synchronous endpoints answer 503
    # (documented) by design
    synchronous = ("/health/ready", "/v1/", "/asr", "/detect-language", "/speakers")
    checks = CHECKS[1:] if case.path.startswith(synchronous) else CHECKS
    case.call_and_validate(checks=checks, app=fuzzed.app, headers=headers)
