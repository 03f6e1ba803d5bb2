"""whisper-asr-webservice's /asr and /detect-language, replayed as Bazarr, Speakr and the
Obsidian plugin send them, on the real pipeline."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import requests
import srt
import webvtt

from app.main import create_app
from app.pipeline.formats import MAX_LINE
from tests.e2e.conftest import serve, worker_thread
from tests.speech import normalise, say


@pytest.fixture
def server(settings, model_cache) -> Iterator[str]:
    """The app on a real server (Bazarr's `requests` needs one) with one worker; WHISPER_MODEL
    is tiny.en, so that /detect-language falls back to `base`."""
    settings.whisper_model = "tiny.en"
    with worker_thread(settings, model_cache), serve(create_app(settings)) as url:
        yield url


def pcm(path: Path) -> bytes:
    """The audio as Bazarr sends it: raw s16le mono 16 kHz, from its own ffmpeg call."""
    return subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le",
         "-acodec", "pcm_s16le", "-ac", "1", "-ar", "16000", "-af", "aresample=async=1", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


def task_of(url: str, response) -> dict:
    return httpx.get(f"{url}/task/{response.headers['x-task-identifier']}").json()


def test_bazarr_detects_the_language_then_gets_srt_of_raw_pcm(server, sample_wav):
    session = requests.Session()
    session.headers["User-Agent"] = "Subliminal/2.1.0"
    audio = pcm(sample_wav) + bytes(2 * 16000 * 10)  # the whole "movie": 40 s

    r = session.post(
        f"{server}/detect-language",
        params={"encode": "false", "video_file": {None}},
        files={"audio_file": audio},
        timeout=(5, 3600),
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    detected = r.json()
    assert detected["detected_language"] == "english" and detected["language_code"] == "en"
    assert 0.5 < detected["confidence"] <= 1
    detection = task_of(server, r)
    assert detection["metadata"]["task_type"] == "language_detection"
    assert detection["metadata"]["task_params"]["model"]["model"] == "base"
    # the PCM became a WAV file (of its first five minutes at most, where speech is looked for)
    assert detection["metadata"]["audio_duration"] == 40.0

    r = session.post(
        f"{server}/asr",
        params={"task": "transcribe", "language": "en", "output": "srt", "encode": "false",
                "video_file": {"/movies/Call (2024)/Call.mkv"}},
        files={"audio_file": audio},
        timeout=(5, 3600),
    )  # fmt: skip
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["asr-engine"] == "whisperx"
    assert r.headers["content-disposition"] == 'attachment; filename="audio_file.srt"'
    cues = list(srt.parse(r.content.decode()))
    assert cues and "chicago" in normalise(" ".join(c.content for c in cues))
    assert all(len(line) <= MAX_LINE for c in cues for line in c.content.splitlines())
    # speech ends at 30 s, then 10 s of silence; unaligned cues keep the VAD's 0.4 s padding
    assert all(c.start < c.end <= timedelta(seconds=30.5) for c in cues)
    assert task_of(server, r)["metadata"]["audio_duration"] == 40.0

    listed = httpx.get(f"{server}/task/all").json()["tasks"]
    assert {(t["task_type"], t["file_name"], t["status"]) for t in listed} == {
        ("language_detection", "audio_file", "completed"),
        ("full_process", "audio_file", "completed"),
    }


@pytest.fixture(scope="module")
def chicago_clip(sample_wav, tmp_path_factory) -> Path:
    """14.3-21.6 s of the sample: two sentences that both mention Chicago."""
    clip = tmp_path_factory.mktemp("clip") / "chicago call.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(sample_wav),
                    "-ss", "14.3", "-to", "21.6", str(clip)], check=True)  # fmt: skip
    return clip


def test_every_output_format_of_one_recording(server, chicago_clip):
    bodies = {}
    for output in ("txt", "vtt", "srt", "tsv", "json"):
        with open(chicago_clip, "rb") as f:
            r = httpx.post(
                f"{server}/asr",
                params={"output": output, "language": "EN"},
                files={"audio_file": f},
                timeout=300,
            )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["content-disposition"] == (
            f'attachment; filename="chicago%20call.wav.{output}"'
        )
        bodies[output] = r.text
    result = json.loads(bodies["json"])
    text = result["text"]
    assert normalise(text).count("chicago") == 2 and result["language"] == "en"
    assert text == " ".join(s["text"] for s in result["segments"])
    assert bodies["txt"] == "".join(s["text"] + "\n" for s in result["segments"])

    rows = bodies["tsv"].splitlines()
    assert rows[0] == "start\tend\ttext"
    assert [r.split("\t") for r in rows[1:]] == [
        [str(round(s["start"] * 1000)), str(round(s["end"] * 1000)), s["text"]]
        for s in result["segments"]
    ]

    cues = list(srt.parse(bodies["srt"]))
    assert normalise(" ".join(c.content for c in cues)) == normalise(text)
    assert bodies["vtt"].startswith("WEBVTT\n\n")
    # WebVTT without hours below one hour, and no cue numbers, as upstream writes it
    spans = re.findall(r"^(\d\d:\d\d\.\d{3}) --> (\d\d:\d\d\.\d{3})$", bodies["vtt"], re.M)
    assert len(spans) == len(cues)
    captions = list(webvtt.from_string(bodies["vtt"]))
    assert [c.text for c in captions] == [c.content for c in cues]
    assert [c.start for c in captions] == [
        srt.timedelta_to_srt_timestamp(c.start).replace(",", ".") for c in cues
    ]


def test_speakr_gets_json_with_text_language_and_speaker_segments(server, sample_wav):
    params = {"encode": True, "task": "transcribe", "output": "json", "language": "en",
              "diarize": True, "enable_diarization": True, "min_speakers": 2, "max_speakers": 2,
              "initial_prompt": "A phone call.", "hotwords": "Chicago", "model": "tiny.en",
              "return_speaker_embeddings": True}  # fmt: skip
    with httpx.Client(base_url=server, timeout=httpx.Timeout(1800, connect=60)) as client:
        files = {"audio_file": ("sample.wav", sample_wav.read_bytes(), "audio/wav")}
        r = client.post("/asr", params=params, files=files)
    r.raise_for_status()
    assert r.headers["content-disposition"] == 'attachment; filename="sample.wav.json"'
    body = r.json()
    assert "chicago" in body["text"].lower() and body["language"] == "en"
    segments = body["segments"]
    assert {s["speaker"] for s in segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(0 <= s["start"] < s["end"] <= 30.1 and s["text"].strip() for s in segments)
    assert body["word_segments"] and all("words" in s for s in segments)
    assert set(body["speaker_embeddings"]) == {"SPEAKER_00", "SPEAKER_01"}

    stored = task_of(server, r)["metadata"]["task_params"]
    assert stored["asr"] == stored["asr"] | {
        "initial_prompt": "A phone call.",
        "hotwords": "Chicago",
    }
    assert stored["diarization"]["min_speakers"] == stored["diarization"]["max_speakers"] == 2
    assert stored["diarization"]["diarize"] and stored["alignment"]["align"]


def test_diarized_txt_and_subtitles_read_speaker_colon_text(server, chicago_clip):
    for output in ("txt", "srt", "vtt"):  # one sentence by each speaker
        with open(chicago_clip, "rb") as f:
            r = httpx.post(
                f"{server}/asr",
                params={"output": output, "diarize": "true", "min_speakers": 2, "max_speakers": 2},
                files={"audio_file": f},
                timeout=300,
            )
        assert r.status_code == 200, r.text
        if output == "txt":
            lines = r.text.splitlines()
        elif output == "srt":
            lines = [c.content.splitlines()[0] for c in srt.parse(r.text)]
        else:
            lines = [c.text.splitlines()[0] for c in webvtt.from_string(r.text)]
        assert all(re.match(r"\[SPEAKER_0[01]\]: \S", line) for line in lines), lines
        assert {line[:13] for line in lines} == {"[SPEAKER_00]:", "[SPEAKER_01]:"}


def test_obsidian_plugin_request_gets_word_timed_segments(server, chicago_clip):
    boundary = "----WebKitFormBoundaryObsidian"
    head = (  # built by hand, with the quoted content type, as the plugin's payloadGenerator
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio_file"; filename="blob"\r\n'
        'Content-Type: "application/octet-stream"\r\n\r\n'
    )
    body = head.encode() + chicago_clip.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    r = httpx.post(
        f"{server}/asr?output=json&word_timestamps=true&vad_filter=true&language=en"
        "&initial_prompt=Chicago",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == 'attachment; filename="blob.json"'
    segments = r.json()["segments"]
    words = [w for s in segments for w in s["words"]]
    assert normalise(" ".join(w["word"] for w in words)).count("chicago") == 2
    assert all(0 <= w["start"] <= w["end"] <= 7.4 for w in words)
    stored = task_of(server, r)["metadata"]["task_params"]
    assert stored["vad"]["vad_onset"] == 0.6 and stored["asr"]["initial_prompt"] == "Chicago"


def test_german_is_detected_transcribed_and_translated(server, tmp_path):
    german = say(
        "Guten Morgen. Heute ist das Wetter sehr schön. Wir gehen mit dem Hund in den Park.",
        tmp_path / "german.wav",
        voice="de",
        speed=140,
    )

    def post(path: str, **params) -> httpx.Response:
        with open(german, "rb") as f:
            r = httpx.post(f"{server}{path}", params=params, files={"audio_file": f}, timeout=300)
        assert r.status_code == 200, r.text
        return r

    detected = post("/detect-language").json()
    assert detected["detected_language"] == "german" and detected["language_code"] == "de"
    transcript = json.loads(post("/asr", model="base", output="json").text)  # language detected
    assert transcript["language"] == "de"
    assert set(normalise(transcript["text"]).split()) & {"morgen", "wetter", "hund", "park"}
    english = post("/asr", model="base", task="translate", language="german").text
    words = set(normalise(english).split())
    assert words & {"morning", "weather", "today", "park", "dog"}, english
    assert not words & {"heute", "wetter", "hund", "gehen"}, english


def test_refusals_are_clear_and_failed_tasks_are_not_subtitles(server, settings, sample_wav):
    def post(data: bytes, path: str = "/asr", **params) -> httpx.Response:
        return httpx.post(f"{server}{path}", params=params, files={"audio_file": data}, timeout=60)

    for data, expected in ((b"", "0 bytes"), (b"\x01\x02\x03", "3 bytes")):
        for path in ("/asr", "/detect-language"):
            r = post(data, path, encode="false")
            assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_PCM"
            assert expected in r.json()["error"]["message"]
    for params, field in (
        ({"language": "xx"}, "language"),
        ({"language": "haw"}, "language"),  # a code Whisper knows, refused by tiny.en only
        ({"output": "docx"}, "output"),
        ({"min_speakers": 3, "max_speakers": 2, "diarize": "true"}, "min_speakers"),
    ):
        r = post(b"\0\0", encode="false", **params)
        assert r.status_code == 422 and field in r.text, (params, r.text)
    assert "English-only" in post(b"\0\0", encode="false", language="haw").text
    assert httpx.get(f"{server}/task/all").json()["tasks"] == []  # nothing was queued

    settings.decode_timeout_seconds = 0.001  # shared with the worker: the task fails decoding
    r = post(sample_wav.read_bytes(), output="srt")
    assert r.status_code == 400 and r.headers["asr-engine"] == "whisperx"
    assert r.json()["error"]["code"] == "TASK_FAILED"
    assert "took longer than" in r.json()["error"]["message"]
    with pytest.raises(srt.SRTParseError):  # Bazarr stores bodies unchecked: keep it no subtitle
        list(srt.parse(r.text, ignore_errors=False))
