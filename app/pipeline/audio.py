"""Decode any audio or video file to 16 kHz mono float32 with ffmpeg, judged by content."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np

from app.pipeline.types import SAMPLE_RATE

log = logging.getLogger(__name__)

CANCELLED_RMS = 1e-3
"""A mix quieter than this (-60 dBFS; speech is -20 to -40) is checked for channels that cancel."""
QUIET_PEAK = 0.1
"""Audio peaking below this (-20 dBFS) is raised to it, by MAX_GAIN at most: Silero's VAD hears
no speech that peaks under about -55 dBFS (a far microphone, a low input gain)."""
MAX_GAIN = 100.0
"""40 dB: enough for speech at -76 dBFS, not for a file of dither noise to become a roar."""


class AudioError(ValueError):
    """The input cannot be used as audio; the message is meant for the user."""


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is not installed: run `make install` (apt-get install ffmpeg)")
    return exe


def _limited(memory_mb: int | None) -> list[str]:
    """Command prefix capping a child's address space (util-linux `prlimit`), so a hostile
    file cannot make ffmpeg exhaust the host's memory."""
    exe = shutil.which("prlimit")
    if memory_mb is None or exe is None:
        return []
    return [exe, f"--as={memory_mb << 20}", "--"]


def probe_duration(path: Path, timeout: float = 30, memory_mb: int | None = None) -> float | None:
    """Duration in seconds from the container header, or None when it does not say."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [*_limited(memory_mb), exe, "-v", "error", "-show_entries",
           "format=duration:stream=codec_type", "-of", "json", str(path)]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        info = json.loads(out.stdout or b"{}")
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    if not any(s.get("codec_type") == "audio" for s in info.get("streams", [])):
        raise AudioError(
            "The file has no audio stream: upload an audio file or a video with sound."
        )
    try:
        return float(info["format"]["duration"])
    except (KeyError, TypeError, ValueError):
        return None


def decode_audio(
    path: Path,
    max_seconds: float | None = None,
    timeout: float = 600,
    memory_mb: int | None = None,
) -> np.ndarray:
    """Decode the first audio stream of `path` (any container ffmpeg reads; video keeps only its
    sound) to mono float32 samples at 16 kHz, centred on zero and raised when quiet (see
    QUIET_PEAK). Raises AudioError with a readable reason."""
    if not path.is_file() or path.stat().st_size == 0:
        raise AudioError("The file is empty: upload a file that contains audio.")
    audio = _centred(_decode(path, ["-ac", "1"], max_seconds, timeout, memory_mb))
    if (mixed := _rms(audio)) < CANCELLED_RMS:
        # channels in opposite phase sum to near silence (a wired-backwards microphone): the
        # first channel alone then holds the sound
        first = _centred(_decode(path, ["-af", "pan=mono|c0=c0"], max_seconds, timeout, memory_mb))
        if _rms(first) > 10 * mixed:
            log.info("%s: the channels cancel in the mix; the first channel is used", path.name)
            audio = first
    peak = max(float(audio.max()), -float(audio.min()))
    if 0 < peak < QUIET_PEAK:
        gain = min(QUIET_PEAK / peak, MAX_GAIN)
        log.info(
            "%s: quiet (peak %.0f dBFS), raised by %.0f dB",
            path.name,
            20 * math.log10(peak),
            20 * math.log10(gain),
        )
        audio *= gain
    return audio


def _centred(audio: np.ndarray) -> np.ndarray:
    """A writable copy without its DC offset (0.3 of full scale hid 3/4 of a call from the
    VAD); one under -60 dBFS is left, so that most files keep their exact samples."""
    offset = np.float32(np.mean(audio, dtype=np.float64))
    return audio - offset if abs(offset) > 1e-3 else audio.copy()


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.dot(audio, audio) / audio.size))


def _decode(
    path: Path, mix: list[str], max_seconds: float | None, timeout: float, memory_mb: int | None
) -> np.ndarray:
    cmd = [*_limited(memory_mb), _ffmpeg(), "-nostdin", "-v", "error", "-threads", "0",
           "-i", str(path), "-map", "0:a:0", "-vn", *mix, "-ar", str(SAMPLE_RATE),
           "-f", "f32le"]  # fmt: skip
    if max_seconds is not None:
        # read one second past the limit so "too long" can be told apart from "exactly the limit"
        cmd += ["-t", str(max_seconds + 1)]
    cmd.append("-")
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioError(
            f"Decoding the file took longer than {timeout:.0f} s; it may be corrupt."
        ) from exc
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = reason[-1] if reason else "unknown error"
        if "matches no streams" in detail:
            raise AudioError(
                "The file has no audio stream: upload an audio file or a video with sound."
            )
        raise AudioError(f"The file could not be decoded as audio or video ({detail}).")
    audio = np.frombuffer(proc.stdout, dtype=np.float32)
    if audio.size == 0:
        raise AudioError("The file contains no audio samples.")
    if max_seconds is not None and audio.size > max_seconds * SAMPLE_RATE:
        raise AudioError(
            f"The audio is longer than the limit of {max_seconds:.0f} s (MAX_AUDIO_SECONDS)."
        )
    return audio
