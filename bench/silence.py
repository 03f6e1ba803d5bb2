"""No-speech benchmark: what Whisper writes on sound that is not speech, and what it keeps of
speech, with Whisper's silence rule (a window both improbable, `log_prob_threshold`, and over
`no_speech_threshold` is dropped) on at the default 0.6 and off (1.0), in one run, as a
markdown table.

    uv run python bench/silence.py [--model base]

Not speech (language detected, as a user would leave it): hums and engines, music, call tones,
noise bursts (breath, typing, applause), all 3-6 s and cut to 0.2-1 s, and 0.2-0.5 s cuts of
pyannote-audio's sample.wav (a syllable: what a client's chunking leaves). Speech (language
given, so that only the rule differs): sample.wav (real call) clean and in pink noise at 10, 5
and 0 dB SNR, espeak-ng sentences in six languages and one-word answers ("Yes.", "Okay.")
clean and in white noise at 5 and 0 dB. Text lower-cased, punctuation removed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE = Path(str(resources.files("pyannote.audio") / "sample" / "sample.wav"))
RATE = 16_000

SENTENCES = {
    "en": ("en+f3", "Please send the report to the finance team before Friday."),
    "de": ("de+m3", "Der Zug nach Berlin hat heute leider zwanzig Minuten Verspätung."),
    "fr": ("fr+f4", "Nous avons parlé de ce problème avec toute l'équipe hier."),
    "es": ("es+f2", "El mercado abre todos los días a las ocho de la mañana."),
    "it": ("it+m2", "Il rapporto sarà pronto domani mattina, salvo imprevisti."),
    "pl": ("pl+f4", "Rozmawialiśmy o tym problemie z całym zespołem wczoraj."),
}
ANSWERS = ["Yes.", "No.", "Okay.", "Sure.", "Thank you.", "Right.", "Maybe.", "Hello?"]
ANSWER_VOICES = ["en-us", "en+f3", "en+m7"]


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * RATE)) / RATE


def _level(audio: np.ndarray, peak: float = 0.3) -> np.ndarray:
    return (audio * peak / max(float(np.max(np.abs(audio))), 1e-9)).astype(np.float32)


def _lowpass(noise: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(noise, np.ones(width) / width, mode="same")


def not_speech(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Sound with no words in it, by condition."""
    t = _t(5)
    hums = [np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * m * t))
            for f, m in ((50, 0.5), (120, 4), (180, 7))]  # fmt: skip
    hums += [
        _lowpass(rng.standard_normal(t.size), w) * (1 + np.sin(2 * np.pi * 1.5 * t))
        for w in (40, 200)
    ]  # fmt: skip  (engines: low rumble, slowly throbbing)
    music = []
    for notes in (
        (261.6, 329.6, 392.0, 523.3),
        (220.0, 277.2, 329.6, 440.0),
        (196.0, 246.9, 293.7, 392.0),
    ):
        melody = np.concatenate([
            sum(np.sin(2 * np.pi * f * k * _t(0.5)) / k for k in (1, 2, 3)) * np.exp(-4 * _t(0.5))
            for f in rng.choice(notes, 10)
        ])  # fmt: skip
        music.append(melody + 0.5 * sum(np.sin(2 * np.pi * f * _t(5)) for f in notes[:3]))
    tones = [
        np.sin(2 * np.pi * 425 * t) * ((t % 2.5) < 1),  # European ringback
        (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * ((t % 6) < 2),  # US ringback
        sum(np.sin(2 * np.pi * f * t) for f in (697, 1209)) * ((t % 0.4) < 0.15),  # DTMF
        np.sin(2 * np.pi * 1000 * t) * ((t % 1) < 0.2),  # beeps
    ]
    bursts = []
    breath = _lowpass(rng.standard_normal(t.size), 8) * np.maximum(np.sin(2 * np.pi * 0.3 * t), 0)
    bursts.append(breath)
    clicks = np.zeros(t.size)
    for at in rng.uniform(0, 4.9, 40):  # typing: damped resonant clicks
        i = int(at * RATE)
        clicks[i : i + 400] += np.sin(2 * np.pi * 2500 * _t(0.025)) * np.exp(-300 * _t(0.025))
    bursts.append(clicks)
    applause = np.zeros(t.size)
    for at in rng.uniform(0, 4.99, 3000):
        i = int(at * RATE)
        applause[i : i + 80] += rng.standard_normal(80) * np.exp(-np.arange(80) / 15)
    bursts.append(applause)
    sample = _sample()
    cuts = [sample[int(s * RATE) : int((s + d) * RATE)]
            for s in (7.0, 9.1, 10.0, 12.4, 15.2, 17.5, 20.3, 24.8) for d in (0.2, 0.5)]  # fmt: skip
    groups = {"hum and engines": hums, "music": music, "call tones": tones, "noise bursts": bursts}
    out = {name: [_level(a) for a in clips] for name, clips in groups.items()}
    everything = [a for clips in out.values() for a in clips]
    out["0.2-1 s of the above"] = [a[: int(rng.uniform(0.2, 1.0) * RATE)] for a in everything]
    out["0.2-0.5 s cuts of speech"] = cuts
    return out


def _sample() -> np.ndarray:
    from app.pipeline.audio import decode_audio

    return decode_audio(SAMPLE)


def _noisy(audio: np.ndarray, snr: float, noise: np.ndarray) -> np.ndarray:
    noise = noise[: audio.size] * np.sqrt(np.mean(audio**2) / np.mean(noise[: audio.size] ** 2))
    return (audio + noise / np.sqrt(10 ** (snr / 10))).astype(np.float32)


def speech(rng: np.random.Generator) -> dict[str, list[tuple[np.ndarray, str, str]]]:
    """(audio, language, reference text) by condition."""
    from tests.speech import espeak_words

    sample = _sample()
    reference = " ".join(
        line.split(maxsplit=5)[5]
        for line in (SAMPLE.parent / "sample.stm").read_text().splitlines()
        if len(line.split(maxsplit=5)) > 5
    )
    pink = np.cumsum(rng.standard_normal(sample.size))
    pink -= _lowpass(pink, 400)  # high-passed brown: pink-like
    out: dict[str, list[tuple[np.ndarray, str, str]]] = {
        "real call, clean": [(sample, "en", reference)]
    }
    for snr in (10, 5, 0):
        out[f"real call, {snr} dB"] = [(_noisy(sample, snr, pink), "en", reference)]
    sentences = [
        (espeak_words(text, voice)[0], lang, text) for lang, (voice, text) in SENTENCES.items()
    ]
    sentences += [
        (espeak_words(text, lang)[0], lang, text) for lang, (_, text) in SENTENCES.items()
    ]
    answers = [(espeak_words(a, v)[0], "en", a) for a in ANSWERS for v in ANSWER_VOICES]
    for name, clips in (("sentences, 6 languages", sentences), ("one-word answers", answers)):
        pad = np.zeros(int(0.3 * RATE), np.float32)
        clips = [(np.concatenate([pad, a, pad]), lang, text) for a, lang, text in clips]
        out[f"{name}, clean"] = clips
        for snr in (5, 0):
            out[f"{name}, {snr} dB"] = [
                (_noisy(a, snr, rng.standard_normal(a.size)), lang, text) for a, lang, text in clips
            ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import jiwer

    from app.pipeline.models import ModelCache
    from app.pipeline.options import AsrOptions, ModelOptions, VadOptions
    from app.pipeline.transcribe import transcribe
    from app.settings import Settings
    from tests.speech import normalise

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = Settings(
        _env_file=None, whisper_model=args.model, db_url=f"sqlite:///{workdir / 'bench.db'}",
        media_dir=workdir / "media", model_dir=REPO / "models", hub_allowed=False,
    ).for_worker()  # fmt: skip
    cache = ModelCache()
    rules = {"off": AsrOptions(no_speech_threshold=1.0), "on": AsrOptions()}

    def text(audio: np.ndarray, language: str | None, asr: AsrOptions) -> str:
        options = ModelOptions(model=args.model, language=language)
        out, _ = transcribe(audio, options, asr, VadOptions(), cache=cache, settings=settings)
        return normalise(" ".join(s["text"] for s in out["segments"]))

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    print(f"\n{platform.processor() or platform.machine()}, model {args.model}\n")
    print(
        "| not speech | clips | clips with text, rule off / on | words, off / on | examples (off) |"
    )
    print("|---|--:|--:|--:|---|")
    for condition, clips in not_speech(rng).items():
        said = {rule: [text(a, None, asr) for a in clips] for rule, asr in rules.items()}
        with_text = {rule: sum(bool(s) for s in out) for rule, out in said.items()}
        words = {rule: sum(len(s.split()) for s in out) for rule, out in said.items()}
        examples = ", ".join(sorted({f'"{s[:30]}"' for s in said["off"] if s})[:3])
        print(f"| {condition} | {len(clips)} | {with_text['off']} / {with_text['on']} "
              f"| {words['off']} / {words['on']} | {examples} |", flush=True)  # fmt: skip
    print("\n| speech | clips | WER %, rule off / on | words out, off / on |\n|---|--:|--:|--:|")
    for condition, clips in speech(rng).items():
        cells = []
        for asr in rules.values():
            said = [text(a, language, asr) for a, language, _ in clips]
            wer = jiwer.wer([normalise(r) for _, _, r in clips], [s or "<none>" for s in said])
            cells.append((100 * wer, sum(len(s.split()) for s in said)))
        (wer_off, n_off), (wer_on, n_on) = cells
        print(f"| {condition} | {len(clips)} | {wer_off:.1f} / {wer_on:.1f} | {n_off} / {n_on} |",
              flush=True)  # fmt: skip
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
