"""Recording-fault benchmark: WER of speech recorded too quietly, with a DC offset, or as stereo
whose channels cancel in the mix, decoded as the service does (`decode_audio`: centred, quiet
audio raised, cancelling channels read from the first) and as a plain `ffmpeg -ac 1` mix (the
baseline), in one run, as a markdown table; and whether raising quiet non-speech makes text.

    uv run python bench/levels.py [--model base]

Speech: pyannote-audio's sample.wav (a real two-speaker call, peak -10 dBFS) and espeak-ng
sentences in six languages (one clip each, its language given). Not speech:
pink noise, a 50 Hz hum with harmonics and dither-level white noise, 10 s each. Files are float
WAV, so levels far below 16-bit's floor stay what they say.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from silence import SAMPLE, SENTENCES, _lowpass  # noqa: E402

RATE = 16_000


def _peak_to(audio: np.ndarray, dbfs: float) -> np.ndarray:
    return audio * (10 ** (dbfs / 20) / np.abs(audio).max())


def conditions(audio: np.ndarray) -> dict[str, np.ndarray]:
    """Mono (n,) or stereo (n, 2) versions of `audio` by recording fault."""
    out = {"as recorded": audio}
    for dbfs in (-30, -45, -55, -65, -75):
        out[f"peak {dbfs} dBFS"] = _peak_to(audio, dbfs)
    for offset in (0.05, 0.2, 0.4):
        out[f"DC offset {offset}"] = 0.5 * audio + offset
    out["stereo, opposite phase"] = np.stack([audio, -audio], axis=1)
    out["stereo, opposite phase, 2 % apart"] = np.stack([audio, -0.98 * audio], axis=1)
    return out


def _plain(path: Path) -> np.ndarray:
    """The baseline: ffmpeg's mono mix at 16 kHz, as whisperX's `load_audio` reads a file."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(RATE),
         "-f", "f32le", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.float32).copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import jiwer
    import soundfile

    from app.pipeline.audio import decode_audio
    from app.pipeline.models import ModelCache
    from app.pipeline.options import AsrOptions, ModelOptions, VadOptions
    from app.pipeline.transcribe import transcribe
    from app.settings import Settings
    from tests.speech import espeak_words, normalise

    workdir = Path(tempfile.mkdtemp(prefix="bench-levels-"))
    settings = Settings(
        _env_file=None, whisper_model=args.model, db_url=f"sqlite:///{workdir / 'bench.db'}",
        media_dir=workdir / "media", hub_allowed=False,
    ).for_worker()  # fmt: skip
    cache = ModelCache()

    def text(audio: np.ndarray, language: str | None) -> str:
        options = ModelOptions(model=args.model, language=language)
        out, _ = transcribe(audio, options, AsrOptions(), VadOptions(), cache=cache, settings=settings)  # fmt: skip
        return normalise(" ".join(s["text"] for s in out["segments"]))

    sample = _plain(SAMPLE)
    reference = " ".join(
        line.split(maxsplit=5)[5]
        for line in (SAMPLE.parent / "sample.stm").read_text().splitlines()
        if len(line.split(maxsplit=5)) > 5
    )
    pad = np.zeros(RATE // 2, np.float32)
    recordings = {
        "real call (en)": [(_peak_to(sample, -10), "en", reference)],
        "sentences (6 languages, each given)": [
            (_peak_to(np.concatenate([pad, espeak_words(line, voice)[0], pad]), -6), lang, line)
            for lang, (voice, line) in SENTENCES.items()
        ],
    }
    print(f"\n{platform.processor() or platform.machine()}, model {args.model}\n")
    print("| recording | fault | WER %, plain mix | WER %, ours | words out, plain / ours |")
    print("|---|---|--:|--:|--:|")
    for name, clips in recordings.items():
        faults = [conditions(audio.astype(np.float32)) for audio, _, _ in clips]
        for fault in faults[0]:
            said: list[list[str]] = [[], []]
            for versions, (_, language, _) in zip(faults, clips, strict=True):
                path = workdir / "clip.wav"
                soundfile.write(path, versions[fault].astype(np.float32), RATE, subtype="FLOAT")
                said[0].append(text(_plain(path), language) or "<none>")
                said[1].append(text(decode_audio(path), language) or "<none>")
            refs = [normalise(ref) for _, _, ref in clips]
            wers = [100 * jiwer.wer(refs, out) for out in said]
            words = [sum(len(s.split()) for s in out if s != "<none>") for out in said]
            print(f"| {name} | {fault} | {wers[0]:.1f} | {wers[1]:.1f} "
                  f"| {words[0]} / {words[1]} |", flush=True)  # fmt: skip

    rng = np.random.default_rng(0)
    pink = np.cumsum(rng.standard_normal(10 * RATE))
    pink -= _lowpass(pink, 400)
    t = np.arange(10 * RATE) / RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5))
    noises = {"pink noise": pink, "50 Hz hum": hum, "white noise": rng.standard_normal(10 * RATE)}
    print("\n| not speech | peak | words out, plain mix / ours | ours (what was heard) |")
    print("|---|--:|--:|---|")
    for name, noise in noises.items():
        for dbfs in (-40, -60, -90):
            path = workdir / "noise.wav"
            soundfile.write(path, _peak_to(noise, dbfs).astype(np.float32), RATE, subtype="FLOAT")
            said = [text(_plain(path), None), text(decode_audio(path), None)]
            print(f"| {name} | {dbfs} dBFS | {len(said[0].split())} / {len(said[1].split())} "
                  f"| {said[1][:40]} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
