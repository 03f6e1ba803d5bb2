"""The diarization dev set generator (bench/devset.py) in its smallest size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import soundfile

REPO = Path(__file__).resolve().parents[2]


def rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        f = line.split()
        assert f[0] == "SPEAKER" and f[1] == path.stem
        turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def test_the_tiny_dev_set_has_audio_matching_its_manifest_and_reference(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "devset.py"), "generate", "--size", "tiny",
         "--out", str(tmp_path), "--seed", "0"],
        check=True, capture_output=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["size"] == "tiny" and len(manifest["recordings"]) == 1
    (entry,) = manifest["recordings"]
    audio, rate = soundfile.read(tmp_path / entry["wav"], dtype="float32")
    assert rate == 16_000 and abs(audio.size / rate - entry["seconds"]) < 1e-3
    assert 0 < float(abs(audio).max()) <= 1.0
    turns = rttm(tmp_path / entry["rttm"])
    labels = {label for _, _, label in turns}
    assert len(labels) == entry["speakers"] == 2
    assert labels == {source["label"] for source in entry["sources"]}
    assert all(0 <= start < end <= entry["seconds"] for start, end, _ in turns)
    for source in entry["sources"]:  # each speaker's speech time is the RTTM's
        spoken = sum(end - start for start, end, label in turns if label == source["label"])
        assert abs(spoken - source["speech_s"]) < 0.1
    # a speaker's own turns never overlap: the reference merges them where they touch
    for label in labels:
        own = sorted((s, e) for s, e, lab in turns if lab == label)
        assert all(a[1] <= b[0] for a, b in zip(own, own[1:], strict=False))
    assert 0 <= entry["overlap_share"] <= 0.3
