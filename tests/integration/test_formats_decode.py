"""Every container and codec of the contract decodes to the same 16 kHz mono speech."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from app.api.media import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, check_media
from app.pipeline.audio import MAX_GAIN, QUIET_PEAK, decode_audio

# (extension, ffmpeg output options); the video ones get a small test picture as well
ENCODINGS = {
    ".wav": ["-c:a", "pcm_s16le"],
    ".mp3": ["-c:a", "libmp3lame"],
    ".ogg": ["-c:a", "libvorbis"],
    ".oga": ["-c:a", "flac", "-f", "ogg"],
    ".opus": ["-c:a", "libopus"],
    ".flac": ["-c:a", "flac"],
    ".m4a": ["-c:a", "aac"],
    ".aac": ["-c:a", "aac", "-f", "adts"],
    ".wma": ["-c:a", "wmav2"],
    ".webm": ["-c:a", "libopus"],
    ".mp4": ["-c:v", "libx264", "-c:a", "aac"],
    ".mkv": ["-c:v", "libx264", "-c:a", "libvorbis"],
    ".mov": ["-c:v", "libx264", "-c:a", "aac"],
    ".avi": ["-c:v", "mpeg4", "-c:a", "libmp3lame"],
    ".wmv": ["-c:v", "wmv2", "-c:a", "wmav2"],
}


AMR = {".amr": "amrnb", ".awb": "amrwb"}
"""Debian's ffmpeg decodes AMR but has no AMR encoder, so no AMR file can be made here."""


def test_every_contract_extension_is_covered():
    assert set(ENCODINGS) | set(AMR) == AUDIO_EXTENSIONS | VIDEO_EXTENSIONS


def test_amr_decoders_are_installed():
    decoders = subprocess.run(
        ["ffmpeg", "-hide_banner", "-decoders"], capture_output=True, text=True
    ).stdout
    assert all(f" {name} " in decoders for name in AMR.values())


@pytest.mark.parametrize("ext", sorted(ENCODINGS))
def test_each_format_decodes_to_the_same_speech(ext, sample_wav, sample_audio, tmp_path, settings):
    options = ENCODINGS[ext]
    clip = tmp_path / f"clip{ext}"
    video = ["-f", "lavfi", "-i", "color=c=gray:s=64x48:d=10"] if ext in VIDEO_EXTENSIONS else []
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *video, "-t", "10", "-i", str(sample_wav),
         "-t", "10", *options, str(clip)],
        check=True,
    )  # fmt: skip
    # the stated duration (ADTS AAC only estimates it from the bit rate)
    assert check_media(clip, clip.name, settings) == pytest.approx(10, abs=1.0)
    audio = decode_audio(Path(clip))
    assert audio.dtype == np.float32 and abs(audio.size / 16000 - 10) < 0.2
    reference = sample_audio[: audio.size]
    # same speech: the loudness envelope follows the original closely
    frames = min(audio.size, reference.size) // 1600
    env = np.abs(audio[: frames * 1600]).reshape(frames, 1600).mean(1)
    ref = np.abs(reference[: frames * 1600]).reshape(frames, 1600).mean(1)
    assert np.corrcoef(env, ref)[0, 1] > 0.9


@pytest.mark.parametrize("channels", ["c0=c0|c1=-1*c0", "c0=c0|c1=-0.98*c0"])
def test_stereo_whose_channels_cancel_in_the_mix_keeps_its_speech(
    channels, sample_wav, sample_audio, tmp_path
):
    clip = tmp_path / "inverted.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", "10", "-i", str(sample_wav),
         "-af", f"pan=stereo|{channels}", "-c:a", "pcm_f32le", str(clip)],
        check=True,
    )  # fmt: skip
    audio = decode_audio(clip)
    reference = sample_audio[: audio.size]
    assert audio.size == reference.size
    assert np.sqrt(np.mean(audio**2)) > 0.5 * np.sqrt(np.mean(reference**2))


def test_silence_stays_silence(tmp_path):
    clip = tmp_path / "silence.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
         "anullsrc=r=44100:cl=stereo", "-t", "3", str(clip)],
        check=True,
    )  # fmt: skip
    assert not np.any(decode_audio(clip))


@pytest.mark.parametrize("volume", [0.01, 0.001])
def test_decoding_centres_the_samples_and_raises_quiet_audio_to_a_usable_level(
    volume, sample_wav, sample_audio, tmp_path
):
    clip = tmp_path / "far.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(sample_wav),
         "-af", f"volume={volume},dcshift=0.01", "-c:a", "pcm_f32le", str(clip)],
        check=True,
    )  # fmt: skip
    audio, peak = decode_audio(clip), np.abs(sample_audio).max()
    assert abs(float(np.mean(audio))) < 1e-3
    raised = min(QUIET_PEAK, peak * volume * MAX_GAIN)  # to -20 dBFS, by 40 dB at most
    assert np.abs(audio).max() == pytest.approx(raised, rel=0.01)
    assert np.corrcoef(audio, sample_audio[: audio.size])[0, 1] > 0.99
    assert np.abs(decode_audio(sample_wav)).max() == peak  # loud enough: left as it is
