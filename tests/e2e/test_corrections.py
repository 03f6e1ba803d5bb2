"""Corrections of a transcript (speaker names, a turn's speaker, a segment's text) and the
task's audio for players, through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from app import auth
from app.auth import fingerprint
from app.main import create_app
from app.store.models import TaskType
from app.store.tasks import now

KEY_A, KEY_B = "key-a-8c1f0e2d9b", "key-b-7e3a5c1d0f"
A, B = {"authorization": f"Bearer {KEY_A}"}, {"authorization": f"Bearer {KEY_B}"}


def _word(word, start, end, speaker, score=0.9):
    return {"word": word, "start": start, "end": end, "score": score, "speaker": speaker}


SEGMENTS = [
    {"start": 0.5, "end": 1.5, "text": " Hello there.", "speaker": "SPEAKER_00",
     "words": [_word("Hello", 0.5, 0.9, "SPEAKER_00"), _word("there.", 1.0, 1.5, "SPEAKER_00")]},
    {"start": 2.0, "end": 4.0, "text": " Oh, hi.", "speaker": "SPEAKER_01",
     "words": [_word("Oh,", 2.0, 2.4, "SPEAKER_01", 0.3), _word("hi.", 3.0, 4.0, "SPEAKER_01")]},
    {"start": 4.5, "end": 6.0, "text": " How are you?", "speaker": "SPEAKER_00",
     "words": [_word("How", 4.5, 4.8, "SPEAKER_00"), _word("are", 4.9, 5.2, "SPEAKER_00"),
               _word("you?", 5.3, 6.0, "SPEAKER_00")]},
]  # fmt: skip
RESULT = {
    "segments": SEGMENTS,
    "word_segments": [w for s in SEGMENTS for w in s["words"]],
    "language": "en",
}


@pytest.fixture
def api(settings, db_url) -> Iterator[TestClient]:
    """The API alone (no worker: tasks are made ended through the store) on each database."""
    settings.db_url = db_url
    settings.media_retention_seconds = 3600
    with TestClient(create_app(settings)) as client:
        yield client


def _completed(client: TestClient, result=RESULT, owner=None, audio=None) -> str:
    """A completed task with `result`; `audio` (a file) is its retained input."""
    store = client.app.state.store
    key = None
    if audio is not None:
        key = f"input-{time.monotonic_ns()}.wav"
        shutil.copy(audio, client.app.state.settings.media_path(key))
    task = store.create(TaskType.full_process, {}, file_name="call.wav", input_key=key, owner=owner)
    store.claim(task.identifier, "w1@test", now(), 3)
    store.finish(task.identifier, result, {"speakers": 2}, "w1@test", language="en")
    return task.identifier


def test_names_and_edits_show_in_the_result_and_exports_while_the_original_stays(api):
    identifier = _completed(api)
    renamed = api.patch(f"/task/{identifier}/speakers", json={"SPEAKER_00": " Alice "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {"speakers": {"SPEAKER_00": "Alice"}, "segments": {}}
    # a new word count: the words are spread over the segment, none lost
    spread = api.patch(
        f"/task/{identifier}/segments/1", json={"text": "Oh hi, Alice, nice to see you"}
    )
    assert spread.status_code == 200, spread.text
    # the same word count: the aligner's timings stay; the turn goes to the other speaker
    kept = api.patch(f"/task/{identifier}/segments/2", json={"text": "Who are you?"})
    moved = api.patch(f"/task/{identifier}/segments/2", json={"speaker": "SPEAKER_01"})
    assert kept.status_code == moved.status_code == 200
    assert moved.json()["segments"] == {
        "1": {"text": "Oh hi, Alice, nice to see you"},
        "2": {"text": "Who are you?", "speaker": "SPEAKER_01"},
    }

    task = api.get(f"/task/{identifier}").json()
    first, second, third = task["result"]["segments"]
    assert (first["speaker"], first["speaker_label"]) == ("Alice", "SPEAKER_00")
    assert {w["speaker"] for w in first["words"]} == {"Alice"}
    assert second["text"] == "Oh hi, Alice, nice to see you" and second["speaker"] == "SPEAKER_01"
    words = second["words"]
    assert [w["word"] for w in words] == ["Oh", "hi,", "Alice,", "nice", "to", "see", "you"]
    assert words[0]["start"] == 2.0 and words[-1]["end"] == pytest.approx(4.0)
    assert all(a["end"] == pytest.approx(b["start"]) for a, b in itertools.pairwise(words))
    assert third["text"] == "Who are you?" and third["speaker"] == "SPEAKER_01"
    assert [(w["word"], w["start"], w["end"]) for w in third["words"]] == [
        ("Who", 4.5, 4.8), ("are", 4.9, 5.2), ("you?", 5.3, 6.0)
    ]  # fmt: skip
    assert task["result"]["word_segments"] == [
        w for s in (first, second, third) for w in s["words"]
    ]
    assert task["metadata"]["corrections"]["speakers"] == {"SPEAKER_00": "Alice"}

    original = api.get(f"/task/{identifier}?original=true").json()
    assert original["result"] == RESULT
    srt = api.get(f"/task/{identifier}?format=srt").text
    assert "[Alice] Hello there." in srt and "nice to see you" in srt and "Who are you?" in srt
    assert "SPEAKER_00" not in srt
    assert (
        "[SPEAKER_00] Hello there." in api.get(f"/task/{identifier}?format=srt&original=true").text
    )
    assert api.get(f"/task/{identifier}?format=json").json()["segments"][0]["speaker"] == "Alice"
    assert "<v Alice>" in api.get(f"/task/{identifier}?format=vtt").text
    assert "Who are you?" in api.get(f"/task/{identifier}?format=txt").text

    # an empty name gives the label back; the other edits stay
    api.patch(f"/task/{identifier}/speakers", json={"SPEAKER_00": ""})
    again = api.get(f"/task/{identifier}").json()
    assert again["result"]["segments"][0]["speaker"] == "SPEAKER_00"
    assert again["metadata"]["corrections"]["speakers"] == {}
    assert again["result"]["segments"][2]["text"] == "Who are you?"


def test_corrections_are_refused_with_reasons_in_the_envelope(api):
    done = _completed(api)
    queued = api.app.state.store.create(TaskType.full_process, {}).identifier
    turns = _completed(api, result=[{"label": "A", "speaker": "SPEAKER_00", "start": 0, "end": 1}])

    def refused(method, path, body, status, code=None):
        response = api.request(method, path, json=body)
        assert response.status_code == status, response.text
        if code is not None:
            assert response.json()["error"]["code"] == code and response.json()["detail"]

    refused("PATCH", f"/task/{queued}/speakers", {"SPEAKER_00": "A"}, 409, "TASK_NOT_COMPLETED")
    refused("PATCH", f"/task/{queued}/segments/0", {"text": "x"}, 409, "TASK_NOT_COMPLETED")
    refused("PATCH", f"/task/{turns}/segments/0", {"text": "x"}, 409, "NOT_A_TRANSCRIPT")
    refused("PATCH", "/task/nope/speakers", {"SPEAKER_00": "A"}, 404, "TASK_NOT_FOUND")
    refused("PATCH", f"/task/{done}/segments/3", {"text": "x"}, 404, "SEGMENT_NOT_FOUND")
    refused("PATCH", f"/task/{done}/segments/-1", {"text": "x"}, 422)
    refused("PATCH", f"/task/{done}/segments/0", {}, 422)
    refused("PATCH", f"/task/{done}/segments/0", {"text": "x", "words": []}, 422)
    refused("PATCH", f"/task/{done}/segments/0", {"text": "nul\x00byte"}, 422)
    refused("PATCH", f"/task/{done}/segments/0", {"text": "   "}, 422)
    refused("PATCH", f"/task/{done}/speakers", {}, 422)
    refused("PATCH", f"/task/{done}/speakers", {"SPEAKER_00": "a\x00b"}, 422)
    refused("PATCH", f"/task/{done}/speakers", {"SPEAKER_00": "x" * 101}, 422)
    refused("PATCH", f"/task/{done}/speakers", {"SPEAKER_09": "Zed"}, 404, "SPEAKER_NOT_FOUND")
    refused("PATCH", f"/task/{done}/speakers", ["SPEAKER_00"], 422)
    assert api.get(f"/task/{done}").json()["metadata"]["corrections"] is None
    # a label a turn was given becomes nameable
    api.patch(f"/task/{done}/segments/0", json={"speaker": "SPEAKER_02"})
    named = api.patch(f"/task/{done}/speakers", json={"SPEAKER_02": "Carol"})
    assert named.status_code == 200
    assert api.get(f"/task/{done}").json()["result"]["segments"][0]["speaker"] == "Carol"


def test_the_audio_is_served_with_ranges_while_it_is_kept_then_gone(api, sample_wav):
    identifier = _completed(api, audio=sample_wav)
    whole = api.get(f"/task/{identifier}/audio")
    assert whole.status_code == 200 and whole.content == sample_wav.read_bytes()
    assert whole.headers["content-type"].startswith("audio/")
    assert whole.headers["accept-ranges"] == "bytes"
    part = api.get(f"/task/{identifier}/audio", headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == sample_wav.read_bytes()[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{sample_wav.stat().st_size}"
    link = api.get(f"/task/{identifier}/audio-link").json()
    assert link["url"].startswith(f"/task/{identifier}/audio?expires=") and link["expires_in"] > 0
    assert api.get(link["url"]).content == sample_wav.read_bytes()

    # past MEDIA_RETENTION_SECONDS (or once the file is gone) it is 410, the text stays
    ended = now() - timedelta(seconds=3601)
    api.app.state.store._update(identifier, end_time=ended)
    gone = api.get(f"/task/{identifier}/audio")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "AUDIO_GONE"
    assert "MEDIA_RETENTION_SECONDS" in gone.json()["error"]["message"]
    link = api.get(f"/task/{identifier}/audio-link").json()
    assert link["url"] is None and "no longer kept" in link["message"]
    assert api.get(f"/task/{identifier}").json()["result"] == RESULT
    no_input = _completed(api)
    assert api.get(f"/task/{no_input}/audio").json()["error"]["code"] == "NO_AUDIO"


@pytest.fixture
def guarded(settings) -> Iterator[TestClient]:
    settings.api_keys = f"{KEY_A},{KEY_B}"
    settings.media_retention_seconds = 3600
    with TestClient(create_app(settings)) as client:
        yield client


def test_with_api_keys_corrections_and_audio_are_the_owners_and_links_are_signed(
    guarded, sample_wav, settings
):
    identifier = _completed(guarded, owner=fingerprint(KEY_A), audio=sample_wav)
    for method, path, body in (
        ("PATCH", f"/task/{identifier}/speakers", {"SPEAKER_00": "Eve"}),
        ("PATCH", f"/task/{identifier}/segments/0", {"text": "Eve was here"}),
        ("GET", f"/task/{identifier}/audio-link", None),
        ("GET", f"/task/{identifier}/audio", None),
    ):
        assert guarded.request(method, path, json=body).status_code == 401
        assert guarded.request(method, path, json=body, headers=B).status_code == 403
    assert guarded.get(f"/task/{identifier}", headers=A).json()["metadata"]["corrections"] is None

    url = guarded.get(f"/task/{identifier}/audio-link", headers=A).json()["url"]
    assert KEY_A not in url
    part = guarded.get(url, headers={"range": "bytes=0-99"})  # no key: the signature is the key
    assert part.status_code == 206 and part.content == sample_wav.read_bytes()[:100]
    # another API process with the same keys accepts it; once the keys change it is void
    for keys, status in ((f"{KEY_B},{KEY_A}", 200), (KEY_B, 401)):
        with TestClient(create_app(settings.model_copy(update={"api_keys": keys}))) as other:
            assert other.get(url).status_code == status

    path, _, query = url.partition("?")
    expires, signature = (p.split("=")[1] for p in query.split("&"))
    other = _completed(guarded, owner=fingerprint(KEY_A), audio=sample_wav)
    expired = auth._signature(auth._link_key(settings), identifier, 1000)
    for forged in (
        f"{path}?expires={expires}&signature={'0' * 64}",
        f"{path}?expires={int(expires) + 60}&signature={signature}",
        f"/task/{other}/audio?expires={expires}&signature={signature}",
        f"{path}?expires={'9' * 5000}&signature={signature}",
        f"{path}?expires=1000&signature={expired}",
        f"/task/{identifier}/audio-link?expires={expires}&signature={signature}",
    ):
        response = guarded.get(forged)
        assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHORIZED"
