"""Cancelling tasks, long polls and signed webhooks through HTTP with the real pipeline."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import subprocess
import threading
import time

import pytest

from app.worker.janitor import Janitor
from tests.e2e.conftest import wait
from tests.speech import empty_wav


@pytest.fixture
def long_wav(sample_wav, tmp_path):
    """Two minutes of the real call (sample.wav four times)."""
    path = tmp_path / "long.wav"
    subprocess.run(["sox", *[str(sample_wav)] * 4, str(path)], check=True)
    return path


def _submit(client, path, query=""):
    with open(path, "rb") as f:
        return client.post(f"/speech-to-text{query}", files={"file": (path.name, f)}).json()[
            "identifier"
        ]


def test_a_running_task_stops_soon_after_cancel_and_frees_its_worker(client, long_wav, sample_wav):
    running = _submit(client, long_wav)
    waiting = _submit(client, sample_wav, "?diarize=false&align=false&language=en")
    assert client.get(f"/task/{waiting}").json()["metadata"]["queue_position"] == 1
    deadline = time.monotonic() + 120
    while client.get(f"/task/{running}").json()["metadata"]["stage"] in (
        None,
        "starting",
        "decoding",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled_at = time.monotonic()
    response = client.post(f"/task/{running}/cancel")
    assert response.json() == {"identifier": running, "message": "Task cancelled"}
    task = client.get(f"/task/{running}?wait=60").json()
    stopped_after = time.monotonic() - cancelled_at
    print(f"stopped {stopped_after:.1f} s after the cancel")
    # decoding a batch of 8 chunks is the longest uninterruptible step on CPU (the encoder takes
    # them two at a time and a cancel is seen between): seconds on 2 cores
    assert stopped_after < 15, "the worker did not stop within seconds"
    assert task["status"] == "failed" and task["error"].startswith("cancelled")
    assert task["metadata"]["stage"] == "cancelled"
    # the worker gave up the cancelled task and takes the next one
    done = client.get(f"/task/{waiting}?wait=300").json()
    assert done["status"] == "completed", done["error"]
    assert client.get(f"/task/{running}").json()["status"] == "failed"  # not overwritten later


def test_a_queued_task_is_cancelled_at_once_and_its_input_deleted(
    client, settings, long_wav, sample_wav
):
    running = _submit(client, long_wav)
    queued = _submit(client, sample_wav)
    assert client.get(f"/task/{queued}").json()["status"] == "queued"
    assert client.post(f"/task/{queued}/cancel").status_code == 200
    task = client.get(f"/task/{queued}").json()
    assert task["status"] == "failed" and task["metadata"]["stage"] == "cancelled"
    client.post(f"/task/{running}/cancel")
    assert wait(client, running)["status"] == "failed"
    assert not any(settings.media_dir.iterdir())  # both inputs deleted
    response = client.post(f"/task/{queued}/cancel")
    assert response.status_code == 409 and response.json()["error"]["code"] == "TASK_FINISHED"
    assert client.post("/task/nope/cancel").status_code == 404


def test_webhooks_are_signed_and_retried(client, settings, sample_wav, local_server):
    settings.allow_private_urls = True  # the receiver is on loopback
    settings.webhook_secret = "s3cret"
    settings.webhook_backoff_seconds = 0.1
    local_server.fail_first = 2
    with open(sample_wav, "rb") as f:
        identifier = client.post(
            f"/service/diarize?callback_url={local_server.url}/hook", files={"file": ("s.wav", f)}
        ).json()["identifier"]
    wait(client, identifier)
    deadline = time.monotonic() + 30
    while not client.get(f"/task/{identifier}").json()["metadata"]["webhook"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(local_server.posts) == 3
    headers, body = local_server.posts[-1]
    headers = {k.lower(): v for k, v in headers.items()}
    expected = hmac.new(
        b"s3cret", headers["x-webhook-timestamp"].encode() + b"." + body, hashlib.sha256
    )
    assert headers["x-webhook-signature"] == "sha256=" + expected.hexdigest()
    assert headers["x-webhook-id"] == identifier
    assert json.loads(body)["status"] == "completed"
    webhook = client.get(f"/task/{identifier}").json()["metadata"]["webhook"]
    assert webhook == {"status": "delivered", "attempts": 3, "error": None, "status_code": 200}


def test_a_failed_task_also_fires_its_webhook(client, settings, local_server):
    settings.allow_private_urls = True
    identifier = client.post(
        f"/service/transcribe?callback_url={local_server.url}/hook",
        files={"file": ("empty.wav", empty_wav())},
    ).json()["identifier"]
    assert wait(client, identifier)["status"] == "failed"
    deadline = time.monotonic() + 30
    while not local_server.posts:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    delivered = json.loads(local_server.posts[0][1])
    assert (
        delivered["status"] == "failed"
        and delivered["error"] == "The file contains no audio samples."
    )


def test_a_finished_task_can_be_fetched_as_subtitles_and_text(client, sample_wav):
    import srt
    import webvtt

    with open(sample_wav, "rb") as f:
        identifier = client.post(
            "/speech-to-text?num_speakers=2", files={"file": ("call.wav", f)}
        ).json()["identifier"]
    task = client.get(f"/task/{identifier}?wait=300").json()
    assert task["status"] == "completed", task["error"]

    response = client.get(f"/task/{identifier}?format=srt")
    assert response.headers["content-type"].startswith("application/x-subrip")
    assert 'filename="call.srt"' in response.headers["content-disposition"]
    cues = list(srt.parse(response.text))
    assert len(cues) >= len(task["result"]["segments"])
    assert {c.content.split("]")[0] + "]" for c in cues} == {"[SPEAKER_00]", "[SPEAKER_01]"}
    assert all(len(line) <= 42 for c in cues for line in c.content.splitlines())
    short = list(srt.parse(client.get(f"/task/{identifier}?format=srt&max_line_width=32&max_line_count=1").text))  # fmt: skip
    assert len(short) > len(cues) and all("\n" not in c.content and len(c.content) <= 32 for c in short)  # fmt: skip
    assert client.get(f"/task/{identifier}?format=srt&max_line_width=5").status_code == 422
    assert abs(cues[0].start.total_seconds() - task["result"]["segments"][0]["start"]) < 0.01

    import io

    captions = webvtt.from_buffer(io.StringIO(client.get(f"/task/{identifier}?format=vtt").text))
    assert "<v SPEAKER_0" in captions[0].raw_text
    # the same words in the same order; SRT's "[SPEAKER_00] " takes room, so it may cut more cues
    assert len(task["result"]["segments"]) <= len(captions) <= len(cues)
    spoken = [c.content.split("] ", 1)[1] for c in cues]
    assert " ".join(c.text for c in captions).split() == " ".join(spoken).split()

    text = client.get(f"/task/{identifier}?format=txt").text
    assert "Chicago" in text and text.count("\n") >= len(task["result"]["segments"]) - 1
    tsv = client.get(f"/task/{identifier}?format=tsv").text.splitlines()
    assert tsv[0] == "start\tend\ttext" and int(tsv[1].split("\t")[0]) == round(
        1000 * task["result"]["segments"][0]["start"]
    )
    assert client.get(f"/task/{identifier}?format=json").json() == task["result"]
    rttm = client.get(f"/task/{identifier}?format=rttm").text
    assert rttm.startswith("SPEAKER ") and "SPEAKER_01" in rttm


def test_formats_of_unfinished_or_unsuitable_tasks_are_refused(client, sample_wav, long_wav):
    running = _submit(client, long_wav)
    response = client.get(f"/task/{running}?format=srt")
    assert response.status_code == 409 and response.json()["error"]["code"] == "TASK_NOT_COMPLETED"
    client.post(f"/task/{running}/cancel")
    with open(sample_wav, "rb") as f:
        diarization = client.post("/service/diarize", files={"file": ("s.wav", f)}).json()[
            "identifier"
        ]
    assert client.get(f"/task/{diarization}?wait=300").json()["status"] == "completed"
    response = client.get(f"/task/{diarization}?format=srt")
    assert response.status_code == 400 and response.json()["error"]["code"] == "UNSUPPORTED_FORMAT"
    assert client.get(f"/task/{diarization}?format=rttm").text.count("SPEAKER ") >= 4
    assert client.get(f"/task/{diarization}?format=docx").status_code == 422


def test_a_webhook_to_a_private_address_is_refused_at_submission(
    client, settings, sample_wav, local_server
):
    for url, reason in ((local_server.url, "private"), ("http://no-such-host.invalid", "resolved")):
        with open(sample_wav, "rb") as f:
            response = client.post(
                f"/service/diarize?callback_url={url}/hook", files={"file": ("s.wav", f)}
            )
        assert response.status_code == 422, response.text
        assert "callback_url" in response.text and reason in response.text
        if reason == "private":
            assert "ALLOW_PRIVATE_URLS" in response.text  # what to do about it
    assert local_server.posts == [] and not any(settings.media_dir.iterdir())  # nothing kept


class _Receivers(http.server.BaseHTTPRequestHandler):
    """/hang never answers in time; /endless answers 200 and then streams forever; /ok: 200."""

    delivered: dict[str, float] = {}

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/hang":
            time.sleep(3)
            return
        self.send_response(200)
        if self.path == "/endless":
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(100_000):  # ~6 GB if anyone read it all
                    self.wfile.write(b"10000\r\n" + b"x" * 65536 + b"\r\n")
            return
        self.send_header("content-length", "0")
        self.end_headers()
        _Receivers.delivered[self.headers["x-webhook-id"]] = time.monotonic()

    def log_message(self, *args):
        pass


def test_slow_or_hostile_receivers_do_not_hold_up_other_webhooks(client, settings):
    settings.allow_private_urls = True
    settings.callback_timeout_seconds, settings.webhook_attempts = 0.5, 4
    settings.webhook_backoff_seconds = 0.5
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receivers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    files = {
        "aligned_transcript": ("a.json", b'{"segments": [{"start": 0, "end": 1, "text": "hi"}]}'),
        "diarization_result": ("d.json", b'[{"speaker": "A", "start": 0, "end": 1}]'),
    }
    try:

        def submit(path: str) -> str:
            response = client.post(f"/service/combine?callback_url={base}{path}", files=files)
            return response.json()["identifier"]

        hanging = [submit("/hang") for _ in range(6)]
        endless = submit("/endless")
        ok = submit("/ok")
        ended = time.monotonic()
        wait(client, ok)
        deadline = time.monotonic() + 30
        while ok not in _Receivers.delivered:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # six receivers that never answer (four attempts each) did not make it wait their turn
        assert _Receivers.delivered[ok] - ended < 4
        while not client.get(f"/task/{endless}").json()["metadata"]["webhook"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        webhook = client.get(f"/task/{endless}").json()["metadata"]["webhook"]
        assert webhook["status"] == "delivered"  # the endless answer was never read
        while not all(client.get(f"/task/{i}").json()["metadata"]["webhook"] for i in hanging):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for identifier in hanging:
            webhook = client.get(f"/task/{identifier}").json()["metadata"]["webhook"]
            assert webhook == {"status": "failed", "attempts": 4, "error": "ReadTimeout"}
    finally:
        server.shutdown()
        server.server_close()


def test_media_is_kept_for_its_retention_time_then_deleted(client, settings, tmp_path):
    settings.media_retention_seconds = 3600
    clip = tmp_path / "clip.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(clip), "synth", "1", "sine", "300"],
        check=True,
    )
    done = _submit(client, clip, "?diarize=false&align=false&language=en&model=tiny.en")
    assert client.get(f"/task/{done}?wait=120").json()["status"] == "completed"
    stored = [f.name for f in settings.media_dir.iterdir()]
    assert len(stored) == 1  # kept after the task ended
    janitor = Janitor(client.worker)
    assert janitor.housekeep(grace_seconds=0) == (0, 0)  # still within its retention
    settings.media_retention_seconds = 0
    assert janitor.housekeep(grace_seconds=0) == (1, 0)
    assert not any(settings.media_dir.iterdir())
