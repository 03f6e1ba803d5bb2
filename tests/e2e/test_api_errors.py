"""Bad input gets a clear 4xx in one envelope (or FastAPI's 422 list), never a 500."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from tests.e2e.conftest import service, wait
from tests.speech import empty_wav


def _envelope(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["detail"] == body["error"]["message"]
    return body["error"]["message"]


def test_unknown_task_is_a_404_naming_task_not_found(client):
    _envelope(client.get("/task/does-not-exist"), 404, "TASK_NOT_FOUND")
    _envelope(client.delete("/task/does-not-exist/delete"), 404, "TASK_NOT_FOUND")


def test_a_text_file_is_refused_as_unsupported_media(client, settings):
    message = _envelope(
        client.post("/speech-to-text", files={"file": ("notes.txt", b"just some text")}),
        415,
        "UNSUPPORTED_MEDIA",
    )
    assert ".wav" in message and ".mp4" in message
    assert not any(settings.media_dir.iterdir())  # nothing left on disk


def test_an_empty_file_is_refused(client):
    _envelope(client.post("/speech-to-text", files={"file": ("a.wav", b"")}), 400, "EMPTY_FILE")


def test_a_corrupt_file_with_an_audio_name_is_refused(client):
    _envelope(
        client.post("/service/transcribe", files={"file": ("a.mp3", b"\x00\x01garbage" * 100)}),
        415,
        "UNSUPPORTED_MEDIA",
    )


def test_content_decides_not_the_name(client, sample_wav):
    with open(sample_wav, "rb") as f:
        response = client.post("/service/diarize", files={"file": ("recording.bin", f)})
    assert response.status_code == 200
    assert wait(client, response.json()["identifier"])["status"] == "completed"


@pytest.mark.parametrize(
    "query, field",
    [
        ("language=xx", "language"),
        ("language=de&model=tiny.en", "language"),
        ("model=huge", "model"),
        ("min_speakers=3&max_speakers=2", "min_speakers"),
        ("min_speakers=0", "min_speakers"),
        ("beam_size=0", "beam_size"),
        ("temperatures=2", "temperatures"),
        ("suppress_tokens=a,b", "suppress_tokens"),
        ("vad_onset=1.5", "vad_onset"),
        ("interpolate_method=cubic", "interpolate_method"),
        ("compute_type=int4", "compute_type"),
    ],
)
def test_invalid_options_are_a_422_naming_the_field(client, sample_wav, query, field):
    with open(sample_wav, "rb") as f:
        response = client.post(f"/speech-to-text?{query}", files={"file": ("s.wav", f)})
    assert response.status_code == 422, response.text
    assert any(field in err["loc"] for err in response.json()["detail"])


def test_comma_lists_and_repeated_keys_both_work(client, sample_wav):
    with open(sample_wav, "rb") as f:
        r = client.post(
            "/service/transcribe?suppress_tokens=1,2&suppress_tokens=3&temperatures=0,0.2",
            files={"file": ("s.wav", f)},
        )
    task = client.get(f"/task/{r.json()['identifier']}").json()
    assert task["metadata"]["task_params"]["asr"]["suppress_tokens"] == [1, 2, 3]
    assert task["metadata"]["task_params"]["asr"]["temperatures"] == [0.0, 0.2]


def test_a_model_that_cannot_be_served_offline_is_refused_at_once(client, sample_wav):
    with open(sample_wav, "rb") as f:
        response = client.post("/speech-to-text?model=large-v3", files={"file": ("s.wav", f)})
    message = _envelope(response, 400, "MODEL_UNAVAILABLE")
    assert "large-v3" in message and "HF_HUB_OFFLINE" in message


@pytest.mark.parametrize(
    "query", ["device=cuda", "compute_type=float16", "device=cpu&compute_type=float16"]
)
def test_a_gpu_option_on_a_cpu_only_cluster_is_refused_at_submit(
    client, settings, sample_wav, query
):
    with open(sample_wav, "rb") as f:
        response = client.post(f"/speech-to-text?{query}", files={"file": ("s.wav", f)})
    message = _envelope(response, 400, "DEVICE_UNAVAILABLE")
    assert "CUDA" in message and ("float16" in message) == ("float16" in query)
    assert not any(settings.media_dir.iterdir())  # nothing stored, no task made


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"segments": "nope"}', b'{"segments": [{"start": 0}]}', b"\xff\xfe"]
)
def test_malformed_json_on_align_is_a_422(client, sample_wav, content):
    with open(sample_wav, "rb") as f:
        response = client.post(
            "/service/align",
            files={"transcript": ("t.json", io.BytesIO(content)), "file": ("s.wav", f)},
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "transcript"]


def test_malformed_json_on_combine_is_a_422(client):
    good = json.dumps({"segments": [], "word_segments": []}).encode()
    response = client.post(
        "/service/combine",
        files={"aligned_transcript": ("a.json", good), "diarization_result": ("d.json", b"[{]")},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "diarization_result"]


def test_a_file_with_no_samples_fails_the_task_with_a_reason(client):
    response = client.post("/service/transcribe", files={"file": ("empty.wav", empty_wav())})
    assert response.status_code == 200
    task = wait(client, response.json()["identifier"])
    assert task["status"] == "failed"
    assert task["error"] == "The file contains no audio samples."
    assert task["metadata"]["stage"] == "failed"


def test_a_cut_off_mp3_is_refused_or_fails_as_too_short_never_completed_empty(
    client, sample_wav, tmp_path
):
    mp3 = tmp_path / "call.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(sample_wav), "-b:a", "64k", str(mp3)], check=True
    )
    for size in (300, 1000):  # no frame left / a few frames (0.04 s) left
        cut = mp3.read_bytes()[:size]
        response = client.post("/service/transcribe", files={"file": ("cut.mp3", cut)})
        if response.status_code == 200:
            task = wait(client, response.json()["identifier"])
            assert task["status"] == "failed" and "too short" in task["error"], task
        else:
            assert response.status_code == 415, response.text


def test_delete_removes_the_task(client, sample_wav):
    with open(sample_wav, "rb") as f:
        identifier = client.post("/service/diarize", files={"file": ("s.wav", f)}).json()[
            "identifier"
        ]
    wait(client, identifier)
    response = client.delete(f"/task/{identifier}/delete")
    assert response.json() == {"identifier": identifier, "message": "Task deleted"}
    assert client.get(f"/task/{identifier}").status_code == 404
    assert client.delete(f"/task/{identifier}").status_code == 404


def test_probes_docs_and_listing(client):
    assert client.get("/health").json()["status"] == "ok"
    live = client.get("/health/live").json()
    assert live["status"] == "ok" and live["timestamp"]
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    root = client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/docs"
    assert client.get("/docs").status_code == 200
    assert client.get("/task/all").json() == {"tasks": [], "total": 0}


def test_ready_is_503_when_the_database_is_gone(client, settings):
    import os

    database = settings.db_url.removeprefix("sqlite:///")
    client.app.state.store.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(database + suffix):
            os.remove(database + suffix)
    os.mkdir(database)  # a folder where the database file was: no connection can open it
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "error" and response.json()["checks"][
        "database"
    ].startswith("error")
    assert client.get("/health/live").status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(settings, model_cache):

    settings.max_upload_mb = 1
    with service(settings, model_cache) as client:
        response = client.post("/speech-to-text", files={"file": ("big.wav", b"\0" * (3 << 20))})
        message = _envelope(response, 413, "PAYLOAD_TOO_LARGE")
        assert "1 MiB" in message
        # a body just over the limit passes the header check; the copy stops at the limit
        response = client.post(
            "/service/transcribe", files={"file": ("big.wav", b"\0" * ((1 << 20) + 10))}
        )
        _envelope(response, 413, "PAYLOAD_TOO_LARGE")
        assert not any(settings.media_dir.iterdir())


def test_paging_beyond_any_database_integer_is_a_422(client):
    assert client.get("/task/all?offset=9223372036854775808").status_code == 422
    assert client.get("/task/all?offset=1000000000").json()["tasks"] == []


@pytest.mark.parametrize("route", ["/speech-to-text", "/asr", "/v1/audio/transcriptions"])
@pytest.mark.parametrize("field", ["language", "model"])
def test_a_huge_bad_value_is_named_but_not_echoed_back_whole(client, sample_wav, route, field):
    huge = "x" * 50_000
    openai = route.startswith("/v1")
    with open(sample_wav, "rb") as f:
        response = client.post(
            route if openai else f"{route}?{field}={huge}",
            files={"file" if route != "/asr" else "audio_file": ("s.wav", f)},
            data={"model": "whisper-1", field: huge} if openai else None,
        )
    assert response.status_code == (400 if openai else 422), response.text[:300]
    assert len(response.content) < 2_000
    assert field in response.text  # which field is wrong
    if not openai:  # FastAPI's list repeats the start of the value
        assert any(e["input"].startswith("xxxxxxxxxx") for e in response.json()["detail"])


def test_an_align_model_that_is_not_there_fails_the_task_before_transcription(client, sample_wav):
    with open(sample_wav, "rb") as f:
        response = client.post(
            "/speech-to-text?align_model=nonexistent/model&language=en",
            files={"file": ("s.wav", f)},
        )
    task = wait(client, response.json()["identifier"])
    assert task["status"] == "failed"
    assert "align_model 'nonexistent/model'" in task["error"]
    assert "leave align_model out" in task["error"]
    assert set(task["metadata"]["processing"]["stage_seconds"]) == {"decode"}  # no Whisper run


@pytest.mark.parametrize(
    "route, field",
    [("/speech-to-text", "file"), ("/service/align", "transcript"), ("/asr", "audio_file"),
     ("/v1/audio/transcriptions", "file")],
)  # fmt: skip
def test_two_files_in_one_field_are_refused_not_one_dropped(client, settings, sample_wav, route, field):  # fmt: skip
    audio = sample_wav.read_bytes()
    files = [(field, ("a.wav", audio)), (field, ("b.wav", audio))]
    if field == "transcript":
        files.append(("file", ("a.wav", audio)))
    response = client.post(route, files=files, data={"model": "whisper-1"})
    assert response.status_code == (400 if route.startswith("/v1") else 422), response.text
    assert f"2 files were sent as '{field}'" in response.text
    assert client.get("/task/all").json()["total"] == 0 and not any(settings.media_dir.iterdir())
