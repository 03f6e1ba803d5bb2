"""Speaker profiles end to end with the real models on real speech: two people of pyannote's
sample call enrolled from one part of it are named on the rest; a voice nobody enrolled stays
SPEAKER_XX; renames, deletes and API keys take effect."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import service, wait
from tests.speech import say

ENROL = {"speaker90": (10.6, 14.45), "speaker91": (21.8, 27.8)}
"""Stretches where only that person speaks (sample.rttm); the rest of the call is the test."""
NAMES = {"speaker90": "Sheila", "speaker91": "Diane"}


@pytest.fixture(scope="module")
def call_and_stranger(tmp_path_factory, sample_wav) -> Path:
    """The call followed by seven seconds of a voice that is in no profile."""
    folder = tmp_path_factory.mktemp("speakers")
    stranger = say("The quarterly numbers are in and they look better than we expected. "
                   "Let us go through them one by one.", folder / "stranger.wav", "en+m7")  # fmt: skip
    out = folder / "call-and-stranger.wav"
    subprocess.run(["sox", str(sample_wav), str(stranger), str(out)], check=True)
    return out


def _enrol(client, audio: Path, name: str, start=None, end=None, headers=None):
    data = {"name": name}
    if start is not None:
        data |= {"start": str(start), "end": str(end)}
    with open(audio, "rb") as f:
        return client.post(
            "/speakers", data=data, files={"file": (audio.name, f)}, headers=headers or {}
        )


def _named_share(turns: list[dict], sample_turns, person: str, name: str) -> float:
    """Share of `person`'s speech outside their enrolment stretch labelled `name`, with the
    usual 0.25 s collar around each reference boundary (where annotators disagree too)."""
    lo, hi = ENROL[person]
    total = named = 0.0
    for start, end, who in sample_turns:
        start, end = start + 0.25, end - 0.25
        if who != person or end <= start:
            continue
        for a, b in ((start, min(end, lo)), (max(start, hi), end)):
            if b <= a:
                continue
            total += b - a
            for t in turns:
                if t["speaker"] == name:
                    named += max(0.0, min(b, t["end"]) - max(a, t["start"]))
    return named / total


def _diarize(client, audio: Path, query: str = "num_speakers=3", headers=None) -> dict:
    with open(audio, "rb") as f:
        identifier = client.post(f"/service/diarize?{query}", files={"file": (audio.name, f)},
                                 headers=headers or {}).json()["identifier"]  # fmt: skip
    if headers:
        return client.get(f"/task/{identifier}?wait=300", headers=headers).json()
    return wait(client, identifier)


def test_enrolled_voices_are_named_on_unseen_audio_and_a_stranger_is_not(
    client, sample_wav, sample_turns, call_and_stranger
):
    for person, (start, end) in ENROL.items():
        response = _enrol(client, sample_wav, NAMES[person], start, end)
        assert response.status_code == 200, response.text
        assert response.json()["name"] == NAMES[person] and response.json()["seconds"] >= 3
    listed = client.get("/speakers").json()["speakers"]
    assert sorted(s["name"] for s in listed) == ["Diane", "Sheila"]

    task = _diarize(client, call_and_stranger)
    assert task["status"] == "completed", task["error"]
    turns = task["result"]
    for person, name in NAMES.items():  # (the misses are the diarizer's short-turn errors)
        share = _named_share(turns, sample_turns, person, name)
        assert share >= 0.75, (person, share, task["metadata"]["processing"])
    stranger = [t["speaker"] for t in turns if t["start"] >= 30.5]
    assert stranger and all(s.startswith("SPEAKER_") for s in stranger)
    matches = task["metadata"]["processing"]["speaker_matches"]
    assert sorted(m["name"] or "" for m in matches) == ["", "Diane", "Sheila"]
    # the call alone, count not given: the bar of 80 % for each person (measured 100 %;
    # above, the stranger's voice starts the instant the call ends and takes Sheila's last second)
    alone = _diarize(client, sample_wav, "")["result"]
    for person, name in NAMES.items():
        assert _named_share(alone, sample_turns, person, name) >= 0.8, (person, alone)

    # the full pipeline names segments and words; identify_speakers=false turns it off
    with open(sample_wav, "rb") as f:
        full = client.post("/speech-to-text?language=en&num_speakers=2&return_speaker_embeddings=true",
                           files={"file": ("call.wav", f)}).json()["identifier"]  # fmt: skip
    result = wait(client, full)["result"]
    assert {s["speaker"] for s in result["segments"]} == {"Sheila", "Diane"}
    assert {w["speaker"] for w in result["word_segments"] if "speaker" in w} == {"Sheila", "Diane"}
    assert set(result["speaker_embeddings"]) == {"Sheila", "Diane"}
    off = _diarize(client, sample_wav, "num_speakers=2&identify_speakers=false")
    assert {t["speaker"] for t in off["result"]} == {"SPEAKER_00", "SPEAKER_01"}

    # renames and deletes take effect on the next recording
    sheila = next(s for s in listed if s["name"] == "Sheila")["identifier"]
    assert client.patch(f"/speakers/{sheila}", json={"name": "Lucas"}).json()["name"] == "Lucas"
    diane = next(s for s in listed if s["name"] == "Diane")["identifier"]
    assert client.delete(f"/speakers/{diane}").status_code == 200
    again = {t["speaker"] for t in _diarize(client, sample_wav, "num_speakers=2")["result"]}
    assert "Lucas" in again and "Diane" not in again and "Sheila" not in again


def test_enrolment_refuses_an_empty_name_and_too_little_speech(client, sample_wav, tmp_path):
    assert _enrol(client, sample_wav, "   ", 10.6, 14.45).status_code == 400
    silence = tmp_path / "silence.wav"
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.random.default_rng(0).normal(0, 30, 16000 * 5)).astype("<i2").tobytes())
    response = _enrol(client, silence, "Nobody")
    assert response.status_code == 400 and "speech" in response.json()["error"]["message"]
    short = _enrol(client, sample_wav, "Brief", 10.6, 12.0)
    assert short.status_code == 400 and "3 s" in short.json()["error"]["message"]
    assert client.get("/speakers").json()["speakers"] == []


def test_each_key_sees_and_uses_only_its_own_profiles(settings, model_cache, sample_wav):
    settings.api_keys = "key-a,key-b"
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    with service(settings, model_cache) as client:
        assert (
            _enrol(client, sample_wav, "Diane", *ENROL["speaker91"], headers=a).status_code == 200
        )
        assert client.get("/speakers", headers=b).json()["speakers"] == []
        mine = client.get("/speakers", headers=a).json()["speakers"][0]["identifier"]
        assert client.patch(f"/speakers/{mine}", json={"name": "X"}, headers=b).status_code == 404
        assert client.delete(f"/speakers/{mine}", headers=b).status_code == 404
        task = _diarize(client, sample_wav, "num_speakers=2", headers=b)
        assert {t["speaker"] for t in task["result"]} == {"SPEAKER_00", "SPEAKER_01"}
