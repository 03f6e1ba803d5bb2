"""GET /metrics in Prometheus's text format: counters move with real tasks, labels hold no
identifiers, keys or file names."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import service, wait

ALIGNED = {"segments": [{"start": 0.0, "end": 1.0, "text": "hi", "words": []}], "language": "en"}
TURNS = [{"label": "A", "speaker": "SPEAKER_00", "start": 0.0, "end": 1.0}]


def _scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f.samples for f in text_string_to_metric_families(response.text)}
    return families


def _value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_metrics_follow_real_tasks_and_keep_ids_out_of_labels(client, sample_wav):
    before = _scrape(client)
    assert _value(before["whisperx_workers_alive"], "whisperx_workers_alive", state="idle") == 1
    with open(sample_wav, "rb") as f:
        transcribed = client.post("/service/transcribe?model=tiny.en&language=en",
                                  files={"file": ("secret-name.wav", f)}).json()["identifier"]  # fmt: skip
    files = {"aligned_transcript": ("a.json", json.dumps(ALIGNED)),
             "diarization_result": ("d.json", json.dumps(TURNS))}  # fmt: skip
    combined = client.post("/service/combine", files=files).json()["identifier"]
    for identifier in (transcribed, combined):
        assert wait(client, identifier)["status"] == "completed"
    text = client.get("/metrics").text
    assert transcribed not in text and combined not in text and "secret-name" not in text
    after = _scrape(client)
    tasks = after["whisperx_tasks"]
    assert _value(tasks, "whisperx_tasks", status="completed", task_type="transcription") >= 1
    assert _value(tasks, "whisperx_tasks", status="completed", task_type="combine_transcript&diarization") >= 1  # fmt: skip
    http = after["whisperx_http_requests"]
    assert (
        _value(http, "whisperx_http_requests_total", route="/task/{identifier}", status="200") >= 2
    )
    stages = after["whisperx_task_stage_seconds"]
    assert _value(stages, "whisperx_task_stage_seconds_count", stage="transcribe") >= 1
    assert (
        _value(stages, "whisperx_task_stage_seconds_bucket", stage="transcribe", le="14400.0") >= 1
    )
    rtf = after["whisperx_task_real_time_factor"]
    assert _value(rtf, "whisperx_task_real_time_factor_count") >= 1
    assert (
        _value(after["whisperx_task_queue_wait_seconds"], "whisperx_task_queue_wait_seconds_count")
        >= 2
    )
    assert _value(after["whisperx_model_loads"], "whisperx_model_loads_total") >= 0
    again = _scrape(client)  # each ended task is counted once, however often it is scraped
    for family, sample in (("whisperx_task_queue_wait_seconds", "_count"),
                           ("whisperx_task_stage_seconds", "_count"),
                           ("whisperx_task_run_seconds", "_sum")):  # fmt: skip
        assert _value(again[family], family + sample) == _value(after[family], family + sample)
    assert any(s.labels.get("version") for s in after["whisperx_build_info"])


def test_refusals_are_counted(settings, model_cache):
    settings.api_keys = "k1,k2"
    settings.rate_limit_per_minute = 3  # per key: k2 still has its own
    with service(settings, model_cache) as client:
        headers = {"Authorization": "Bearer k1"}
        assert client.get("/task/all").status_code == 401
        codes = [client.get("/task/all", headers=headers).status_code for _ in range(4)]
        assert 429 in codes
        response = client.get("/metrics", headers={"Authorization": "Bearer k2"})
    assert response.status_code == 200, response.text
    families = {f.name: f.samples for f in text_string_to_metric_families(response.text)}
    samples = families["whisperx_refusals"]
    assert _value(samples, "whisperx_refusals_total", reason="unauthorized") == 1
    assert _value(samples, "whisperx_refusals_total", reason="rate_limited") >= 1


def test_docs_and_static_files_are_counted_by_route_not_as_unmatched(client):
    for path in ("/docs", "/openapi.json", "/ui/static/app.js", "/ui/static/none.js", "/nope"):
        client.get(path)
    http = _scrape(client)["whisperx_http_requests"]
    for route in ("/docs", "/openapi.json", "/ui/static/…"):
        assert _value(http, "whisperx_http_requests_total", route=route, status="200") == 1
    assert _value(http, "whisperx_http_requests_total", route="/ui/static/…", status="404") == 1
    assert _value(http, "whisperx_http_requests_total", route="unmatched") == 1
