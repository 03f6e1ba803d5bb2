"""Speech made for tests with espeak-ng (real synthesis, known text), and reference helpers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jiwer


def say(text: str, path: Path, voice: str = "en-us", speed: int = 160) -> Path:
    """Synthesise `text` to a 16 kHz mono WAV file at `path`."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(raw),
            "-ar",
            "16000",
            "-ac",
            "1",
            str(path),
        ],
        check=True,
    )
    raw.unlink()
    return path


def normalise(text: str) -> str:
    """Lower case, no punctuation, single spaces: what WER is computed on."""
    return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis))
