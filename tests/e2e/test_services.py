"""The four per-stage services chained through HTTP, as a client of the old service uses them."""

from __future__ import annotations

import io
import json

from tests.e2e.conftest import wait


def _json_file(name: str, value) -> tuple[str, io.BytesIO, str]:
    return (name, io.BytesIO(json.dumps(value).encode()), "application/json")


def test_transcribe_align_diarize_combine(client, sample_wav):
    with open(sample_wav, "rb") as f:
        audio = f.read()

    tid = client.post("/service/transcribe", files={"file": ("s.wav", audio)}).json()["identifier"]
    transcript = wait(client, tid)
    assert transcript["status"] == "completed", transcript["error"]
    assert transcript["metadata"]["task_type"] == "transcription"
    assert {"segments", "language"} <= set(transcript["result"])

    aid = client.post(
        "/service/align",
        files={"transcript": _json_file("t.json", transcript["result"]), "file": ("s.wav", audio)},
    ).json()["identifier"]
    aligned = wait(client, aid)
    assert aligned["status"] == "completed", aligned["error"]
    assert aligned["metadata"]["task_type"] == "transcription_alignment"
    words = aligned["result"]["word_segments"]
    assert len(words) >= 60 and all("start" in w and "end" in w for w in words)

    did = client.post(
        "/service/diarize?min_speakers=1&max_speakers=3", files={"file": ("s.wav", audio)}
    ).json()["identifier"]
    diarization = wait(client, did)
    assert diarization["status"] == "completed", diarization["error"]
    turns = diarization["result"]
    assert {t["speaker"] for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert all({"label", "speaker", "start", "end"} <= set(t) for t in turns)

    cid = client.post(
        "/service/combine",
        files={
            "aligned_transcript": _json_file("a.json", aligned["result"]),
            "diarization_result": _json_file("d.json", turns),
        },
    ).json()["identifier"]
    combined = wait(client, cid)
    assert combined["status"] == "completed", combined["error"]
    assert combined["metadata"]["task_type"] == "combine_transcript&diarization"
    segments = combined["result"]["segments"]
    assert {s["speaker"] for s in segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert len(combined["result"]["word_segments"]) == len(words)
    assert all("speaker" in w for w in combined["result"]["word_segments"])


def test_diarize_honours_an_exact_speaker_count(client, sample_wav):
    with open(sample_wav, "rb") as f:
        did = client.post("/service/diarize?max_speakers=1", files={"file": ("s.wav", f)}).json()
    task = wait(client, did["identifier"])
    assert {t["speaker"] for t in task["result"]} == {"SPEAKER_00"}


def test_url_input_is_downloaded(client, settings, sample_wav, local_server):
    (local_server.folder / "call.wav").write_bytes(sample_wav.read_bytes())
    settings.allow_private_urls = True  # the test server is on loopback
    response = client.post(
        "/speech-to-text-url?diarize=false", data={"url": f"{local_server.url}/call.wav"}
    )
    assert response.status_code == 200, response.text
    task = wait(client, response.json()["identifier"])
    assert task["status"] == "completed", task["error"]
    assert (
        task["metadata"]["url"].endswith("/call.wav")
        and task["metadata"]["file_name"] == "call.wav"
    )
    assert "chicago" in " ".join(s["text"] for s in task["result"]["segments"]).lower()


def test_private_urls_are_refused_by_default(client, local_server):
    response = client.post("/speech-to-text-url", data={"url": f"{local_server.url}/x.wav"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_URL"
    assert "127.0.0.1" not in response.json()["error"]["message"]


def test_the_finished_task_is_posted_to_the_callback_url(
    client, settings, sample_wav, local_server
):
    settings.allow_private_urls = True  # the receiver is on loopback
    settings.webhook_backoff_seconds = 0.1
    local_server.fail_first = 1  # the first delivery fails: the retry must deliver it
    with open(sample_wav, "rb") as f:
        response = client.post(
            f"/service/diarize?callback_url={local_server.url}/hook", files={"file": ("s.wav", f)}
        )
    identifier = response.json()["identifier"]
    wait(client, identifier)
    for _ in range(100):
        if client.get(f"/task/{identifier}").json()["metadata"]["webhook"]:
            break
        import time

        time.sleep(0.1)
    headers, body = local_server.posts[-1]
    delivered = json.loads(body)
    assert len(local_server.posts) == 2
    assert (
        delivered["status"] == "completed" and delivered["metadata"]["task_type"] == "diarization"
    )
    assert delivered["result"] == client.get(f"/task/{identifier}").json()["result"]
    webhook = client.get(f"/task/{identifier}").json()["metadata"]["webhook"]
    assert webhook["status"] == "delivered" and webhook["attempts"] == 2
