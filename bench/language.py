"""Language detection benchmark: Whisper's guess from the first 30 s of audio (whisperX's way)
against the guess from the first 30 s of speech (`app.pipeline.transcribe.detect_language`), on
the same clips in one run, as markdown tables.

    uv run python bench/language.py [--model base] [--languages en,fr,...]

Clips: two espeak-ng sentences in nine languages, two voices each, as they are, in white noise at
10 dB SNR, and after 10 s of silence or 45 s of non-speech (silence, faint noise, a held chord,
a ringing tone: what calls and podcasts start with), and real English (pyannote-audio's
sample.wav from its first word) after the same openings. espeak-ng's Portuguese, Dutch and
Russian are hard for Whisper whatever it hears first. The third column restricts the guess from
speech to the clip's language and a neighbour (`languages=pt,es`, as a bilingual user sends it).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE = Path(str(resources.files("pyannote.audio") / "sample" / "sample.wav"))
RATE = 16_000

TEXT = {
    "en": ["The weather this morning was colder than anyone expected.",
           "Please send me the report before the end of the week.",
           "Our team finished the first version of the product last month.",
           "The library closes early on Fridays, so bring your books back."],
    "fr": ["Je pense que nous devrions revoir le budget avant la réunion.",
           "Le rapport sera prêt demain matin, sauf imprévu.",
           "Nous avons parlé de ce problème avec toute l'équipe hier.",
           "Cette solution me semble beaucoup plus simple que la précédente."],
    "de": ["Das ist eine gute Frage, die wir morgen besprechen sollten.",
           "Ich habe den Bericht gestern Abend an alle Kollegen geschickt.",
           "Wir treffen uns am Donnerstag um zehn Uhr im großen Saal.",
           "Im Moment haben wir leider zu wenig Leute für dieses Projekt."],
    "es": ["Creo que deberíamos revisar el presupuesto antes de la reunión.",
           "El informe estará listo mañana por la mañana.",
           "Hablamos de este problema con todo el equipo ayer por la tarde.",
           "Esta solución me parece mucho más sencilla que la anterior."],
    "it": ["Penso che dovremmo rivedere il bilancio prima della riunione.",
           "Il rapporto sarà pronto domani mattina.",
           "Abbiamo parlato di questo problema con tutta la squadra ieri.",
           "Questa soluzione mi sembra molto più semplice della precedente."],
    "pt": ["Acho que devemos rever o orçamento antes da reunião.",
           "O relatório estará pronto amanhã de manhã.",
           "Falamos sobre este problema com toda a equipe ontem.",
           "Esta solução parece muito mais simples do que a anterior."],
    "nl": ["Ik denk dat we het budget voor de vergadering moeten bekijken.",
           "Het rapport is morgenochtend klaar.",
           "We hebben gisteren met het hele team over dit probleem gesproken.",
           "Deze oplossing lijkt me veel eenvoudiger dan de vorige."],
    "pl": ["Myślę, że powinniśmy przejrzeć budżet przed spotkaniem.",
           "Raport będzie gotowy jutro rano.",
           "Rozmawialiśmy o tym problemie z całym zespołem wczoraj.",
           "To rozwiązanie wydaje mi się dużo prostsze niż poprzednie."],
    "ru": ["Я думаю, что нам нужно пересмотреть бюджет перед встречей.",
           "Отчёт будет готов завтра утром.",
           "Мы обсудили эту проблему со всей командой вчера.",
           "Это решение кажется мне гораздо проще предыдущего."],
}  # fmt: skip
NEIGHBOUR = {"en": "de", "fr": "en", "de": "nl", "es": "pt", "it": "es", "pt": "es", "nl": "de",
             "pl": "ru", "ru": "pl"}  # fmt: skip
VOICES = {"en": "en+f3", "fr": "fr+f4", "de": "de+m3", "es": "es+f2", "it": "it+m2",
          "pt": "pt+f3", "nl": "nl+f2", "pl": "pl+f4", "ru": "ru+m3"}  # fmt: skip


def openings(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What comes before the first word, by condition."""
    t = np.arange(45 * RATE) / RATE
    return {
        "as it is": np.zeros(0, np.float32),
        "10 s silence first": np.zeros(10 * RATE, np.float32),
        "45 s silence first": np.zeros(45 * RATE, np.float32),
        "45 s faint noise first": rng.normal(0, 0.003, 45 * RATE).astype(np.float32),
        "45 s chord first": 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)),
        "45 s ringing first": 0.2 * np.sin(2 * np.pi * 440 * t) * ((t % 3) < 1),
    }


def clips(languages: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """(condition, language, 16 kHz audio) for every clip."""
    from app.pipeline.audio import decode_audio
    from tests.speech import espeak_words

    rng, out = np.random.default_rng(0), []
    opening = openings(rng)
    speech = [(lang, espeak_words(" ".join(TEXT[lang][:2]), voice)[0])
              for lang in languages for voice in (lang, VOICES[lang])]  # fmt: skip
    for language, audio in speech:
        noise = rng.standard_normal(len(audio)).astype(np.float32)
        noise *= np.sqrt(np.mean(audio**2) / np.mean(noise**2) / 10)
        out.append(("10 dB SNR", language, audio + noise))
        for condition, before in opening.items():
            out.append((condition, language, np.concatenate([before, audio])))
    if "en" in languages:
        sample = decode_audio(SAMPLE)[6 * RATE :]  # from the first word on
        for condition, before in opening.items():
            out.append((f"real English, {condition}", "en", np.concatenate([before, sample])))
    return out


def first_audio(model, audio: np.ndarray) -> tuple[str, float]:
    """The baseline: Whisper's guess from the first 30 s of audio, speech or not."""
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    window = audio[:N_SAMPLES]
    mel = log_mel_spectrogram(window, n_mels=model.feat_kwargs.get("feature_size") or 80,
                              padding=N_SAMPLES - window.shape[0])  # fmt: skip
    token, probability = model.model.detect_language(model.encode(mel))[0][0]
    return token[2:-2], probability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--languages", default=",".join(TEXT))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import tempfile

    from app.pipeline.models import ModelCache
    from app.pipeline.transcribe import detect_language, load_whisper
    from app.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = Settings(
        _env_file=None, whisper_model=args.model, db_url=f"sqlite:///{workdir / 'bench.db'}",
        media_dir=workdir / "media", model_dir=REPO / "models", hub_allowed=False,
    ).for_worker()  # fmt: skip
    assert settings.device and settings.compute_type
    modes = {
        "audio": lambda model, audio, _: first_audio(model, audio),
        "speech": lambda model, audio, _: detect_language(model, audio, top=1)[0],
        "pair": lambda model, audio, language: detect_language(
            model, audio, top=1, among=[language, NEIGHBOUR[language]]
        )[0],
    }
    rows: dict[str, dict[str, list[tuple[bool, float]]]] = {}
    by_language: dict[str, dict[str, list[bool]]] = {}
    started = time.perf_counter()
    with load_whisper(ModelCache(), settings, args.model, settings.device,
                      settings.compute_type) as (pipeline, _):  # fmt: skip
        for condition, language, audio in clips(args.languages.split(",")):
            for mode, guess in modes.items():
                began = time.perf_counter()
                code, _probability = guess(pipeline.model, audio.astype(np.float32), language)
                right = code == language
                rows.setdefault(condition, {}).setdefault(mode, []).append(
                    (right, time.perf_counter() - began)
                )
                by_language.setdefault(language, {}).setdefault(mode, []).append(right)

    print(f"\n{platform.processor() or platform.machine()}, model {args.model}, "
          f"{time.perf_counter() - started:.0f} s in all\n")  # fmt: skip
    print("| condition | clips | right from the first 30 s of audio / of speech / of speech, "
          "2 languages given | median s audio / speech |\n|---|--:|--:|--:|")  # fmt: skip
    for condition, cells in rows.items():
        audio, speech, pair = cells["audio"], cells["speech"], cells["pair"]
        print(f"| {condition} | {len(audio)} | {sum(c[0] for c in audio)} / "
              f"{sum(c[0] for c in speech)} / {sum(c[0] for c in pair)} | "
              f"{statistics.median(c[1] for c in audio):.2f} / "
              f"{statistics.median(c[1] for c in speech):.2f} |")  # fmt: skip
    print("\n| language | given with | clips | right audio / speech / 2 given |\n|---|---|--:|--:|")
    for language, cells in by_language.items():
        print(f"| {language} | {NEIGHBOUR[language]} | {len(cells['audio'])} | "
              f"{sum(cells['audio'])} / {sum(cells['speech'])} / {sum(cells['pair'])} |")  # fmt: skip


if __name__ == "__main__":
    main()
