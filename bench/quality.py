"""Accuracy benchmark: Whisper word error, word-timing error per aligner and diarization error per diarizer, as markdown tables."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from app.pipeline.models import ModelCache
    from app.settings import Settings

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE_DIR = Path(str(resources.files("pyannote.audio") / "sample"))
RATE = 16_000

ENGLISH = [
    "The quick brown fox jumps over the lazy dog, while seven tired workers count boxes.",
    "She sells sea shells by the sea shore, and the shells she sells are surely from the shore.",
    "A large rhinoceros wandered into the village market yesterday morning looking for food.",
    "Please remember to water the plants on the balcony before you leave for the airport.",
    "Our neighbours painted their garden fence bright yellow during the long summer holiday.",
    "The library closes early on Fridays, so bring your books back before four o'clock.",
]
GERMAN = [
    "Heute gehen wir mit dem kleinen Hund in den großen Park am Fluss.",
    "Der alte Mann liest jeden Morgen die Zeitung am offenen Fenster.",
    "Nach dem Regen riecht die Luft im Wald frisch und ein wenig nach Erde.",
]
CONVERSATION = [
    "The weather this morning was colder than anyone expected for the season.",
    "I think we should move the meeting to Thursday afternoon instead.",
    "Can you send me the report before the end of the week please?",
    "Our team finished the first version of the product last month.",
    "There are still a few open questions about the budget for next year.",
    "Let me check my calendar and get back to you in a minute.",
    "That sounds good to me, as long as the client agrees with the plan.",
    "We could also ask the design team to present their ideas first.",
    "I will book the large room on the second floor for everyone.",
    "Nobody told me that the deadline had been moved to Monday.",
]
SPEAKERS = ["en-us", "en+f3", "en+m7", "en+f2", "en+klatt", "en+m8"]
"""espeak-ng voices for synthetic conversations, in the order they join: ones a speaker encoder
tells apart (en-us and en-gb, say, are one voice with two accents: Resemblyzer cosine 0.95)."""


@dataclass
class Plan:
    """How much speech each section synthesises."""

    voices: list[str]
    rates: list[int]
    german_voices: list[str]
    asr_runs: int
    diarize_runs: int
    conversations: int
    monologue_voices: list[str]


FULL = Plan(
    voices=["en-us", "en+f3", "en+m7", "en-gb"],
    rates=[130, 170, 210],
    german_voices=["de", "de+f3", "de+m7"],
    asr_runs=3,
    diarize_runs=3,
    conversations=2,
    monologue_voices=["en-us", "en+f3"],
)
QUICK = Plan(
    voices=["en-us", "en+f3"],
    rates=[170],
    german_voices=["de"],
    asr_runs=1,
    diarize_runs=1,
    conversations=1,
    monologue_voices=["en-us"],
)


@dataclass
class Speech:
    """Audio with exact word truth: (word, start, end) in seconds."""

    label: str
    audio: np.ndarray
    truth: list[tuple[str, float, float]]
    language: str

    @property
    def text(self) -> str:
        return " ".join(w for w, _, _ in self.truth)

    @property
    def seconds(self) -> float:
        return self.audio.size / RATE


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(head: list[str], rows: list[list[Any]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def first_sentence(message: str) -> str:
    return message.split(". ")[0].rstrip(".") + "."


def padded(audio: np.ndarray, truth: list, pad: float = 0.3) -> tuple[np.ndarray, list]:
    """Silence of `pad` s before and after, as a VAD-cut segment has."""
    zeros = np.zeros(int(pad * RATE), np.float32)
    return np.concatenate([zeros, audio, zeros]), [(w, s + pad, e + pad) for w, s, e in truth]


def timing_sets(plan: Plan) -> dict[str, list[Speech]]:
    """Synthetic speech with exact word times, by set name ("en ..." or "de ...")."""
    from tests.speech import espeak_word_by_word, espeak_words

    sets: dict[str, list[Speech]] = {}
    for language, texts, voices, rates in (
        ("en", ENGLISH, plan.voices, plan.rates),
        ("de", GERMAN, plan.german_voices, plan.rates),
    ):
        combos = [(v, r) for v in voices for r in rates]
        for name, make in (
            ("words, 0-300 ms gaps", lambda t, v, r, s: espeak_word_by_word(t.split(), v, r, seed=s)),
            ("words, 30-80 ms gaps", lambda t, v, r, s: espeak_word_by_word(t.split(), v, r, gaps=(0.03, 0.08), no_gap_share=0.0, seed=s)),
            ("continuous", lambda t, v, r, _: padded(*espeak_words(t, v, r))),
        ):  # fmt: skip
            speech = []
            for n, (voice, rate) in enumerate(combos):
                audio, truth = make(texts[n % len(texts)], voice, rate, n)
                speech.append(Speech(f"{voice} {rate}", audio, truth, language))
            sets[f"{language} {name}"] = speech
    return sets


def reference_text() -> tuple[str, list[tuple[float, float, str, str]]]:
    """sample.stm as one text and as its utterances (start, end, speaker, text)."""
    rows = []
    for line in (SAMPLE_DIR / "sample.stm").read_text().splitlines():
        f = line.split(maxsplit=5)
        rows.append((float(f[3]), float(f[4]), f[2], f[5] if len(f) > 5 else ""))
    return " ".join(r[3] for r in rows), rows


def reference_turns() -> list[tuple[float, float, str]]:
    """sample.rttm as (start, end, speaker)."""
    turns = []
    for line in (SAMPLE_DIR / "sample.rttm").read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


# --- ASR ----------------------------------------------------------------------------------


def long_calls(sample: np.ndarray, reference: str) -> dict[str, tuple[np.ndarray, str]]:
    """sample.wav six times (3.2 min) with 0.3-4 s pauses between the copies, clean and with pink
    noise at 10 dB SNR: where the voice-activity model decides what is cut and where."""
    rng = np.random.default_rng(7)
    parts = []
    for _ in range(6):
        parts += [sample, np.zeros(int(rng.uniform(0.3, 4.0) * RATE), np.float32)]
    clean = np.concatenate(parts)
    noise = np.cumsum(rng.standard_normal(clean.size)).astype(np.float32)  # brown-ish, then
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # high-passed: pink-like
    noise *= np.sqrt(np.mean(sample**2) / np.mean(noise**2)) / np.sqrt(10)
    text = " ".join([reference] * 6)
    return {"3-min call": (clean, text), "3-min call, noise 10 dB": (clean + noise, text)}


def bench_asr(ctx: Context, sets: dict[str, list[Speech]]) -> None:
    import jiwer

    from app.pipeline.options import AsrOptions, ModelOptions, VadOptions
    from app.pipeline.transcribe import load_whisper, transcribe
    from tests.speech import normalise

    reference, _ = reference_text()
    calls = long_calls(ctx.sample, reference)
    s = ctx.settings
    rows = []
    for model in ("base", "tiny.en"):
        with load_whisper(ctx.cache, s, model, str(s.device), str(s.compute_type)):
            pass  # loaded before the timed runs
        for method in ("pyannote", "silero"):
            note(f"ASR: {model}, {method} VAD")

            def run(audio: np.ndarray, language: str | None, model: str = model,
                    method: str = method) -> tuple[str, str]:  # fmt: skip
                options = ModelOptions(model=model, language=language, batch_size=8)
                vad = VadOptions(vad_method=method)  # type: ignore[arg-type]
                out, _ = transcribe(audio, options, AsrOptions(), vad, cache=ctx.cache, settings=s)
                return " ".join(seg["text"] for seg in out["segments"]), out["language"]

            run(ctx.sample[: 5 * RATE], "en")  # loads the VAD model before the timed runs
            seconds, hypothesis, detected = [], "", ""
            for _ in range(ctx.plan.asr_runs):
                started = time.perf_counter()
                hypothesis, detected = run(calls["3-min call"][0], "en")
                seconds.append(time.perf_counter() - started)
            took = statistics.median(seconds)
            said, detected = run(ctx.sample, None if model == "base" else "en")
            cells = [
                model,
                method,
                detected if model == "base" else f"{detected} (given)",
                f"{100 * jiwer.wer(normalise(reference), normalise(said)):.1f}",
                f"{100 * jiwer.wer(normalise(calls['3-min call'][1]), normalise(hypothesis)):.1f}",
            ]
            noisy, text = calls["3-min call, noise 10 dB"]
            cells.append(f"{100 * jiwer.wer(normalise(text), normalise(run(noisy, 'en')[0])):.1f}")
            for language in ("en", "de"):
                clips = sets[f"{language} continuous"]
                if model.endswith(".en") and language != "en":
                    cells.append("n/a (English only)")
                    continue
                said_ = [run(c.audio, language)[0] for c in clips]
                wer = jiwer.wer([normalise(c.text) for c in clips], [normalise(h) for h in said_])
                cells.append(f"{100 * wer:.1f}")
            seconds_long = calls["3-min call"][0].size / RATE
            rows.append([*cells, f"{took:.2f}", f"{took / seconds_long:.3f}"])
    print(
        f"## ASR: word error rate (%) by voice-activity model; seconds: median of {ctx.plan.asr_runs} warm run(s) on the 3-min call\n"
    )
    print(
        "sample.wav against sample.stm (30 s real telephone call, language detected by `base`); "
        "3-min call: sample.wav six times with 0.3-4 s pauses, clean and with high-passed noise "
        "at 10 dB SNR (language given); synthetic: the continuous-speech clips below, language "
        "given. Text lower-cased, punctuation removed.\n"
    )
    head = ["model", "VAD", "language", "WER sample.wav", "WER 3-min call", "WER 3-min noisy",
            "WER synthetic en", "WER synthetic de", "seconds (3-min call)", "RTF"]  # fmt: skip
    table(head, rows)


# --- alignment ----------------------------------------------------------------------------


@dataclass
class Timing:
    """Word-timing errors (seconds) of one aligner on one set."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    within: list[float] = field(default_factory=list)  # max(start, end) error of each word/edge
    seconds: float = 0.0
    audio_seconds: float = 0.0
    by_label: dict[str, list[float]] = field(default_factory=dict)


def align_set(aligner: Any, speech: list[Speech]) -> Timing:
    from app.pipeline.types import Transcript

    out = Timing()
    for clip in speech:
        transcript: Transcript = {
            "segments": [{"start": 0.0, "end": clip.seconds, "text": clip.text}],
            "language": clip.language,
        }
        started = time.perf_counter()
        words = aligner.align(transcript, clip.audio)["word_segments"]
        out.seconds += time.perf_counter() - started
        out.audio_seconds += clip.seconds
        assert [w["word"] for w in words] == [t[0] for t in clip.truth], aligner.name
        pairs = [(w, t) for w, t in zip(words, clip.truth, strict=True) if not math.isnan(t[1])]
        starts = [abs(w["start"] - t[1]) for w, t in pairs]
        ends = [abs(w["end"] - t[2]) for w, t in pairs]
        out.starts += starts
        out.ends += ends
        out.within += [max(a, b) for a, b in zip(starts, ends, strict=True)]
        out.by_label.setdefault(clip.label, []).extend(starts)
    return out


def align_sample(aligner: Any, ctx: Context) -> Timing:
    """Errors at the utterance edges inside three stretches of sample.wav, each one segment: the
    start of each utterance after the first and the end of each before the last."""
    from app.pipeline.types import Transcript

    _, utterances = reference_text()
    groups = [utterances[0:5], utterances[5:9], utterances[9:13]]
    transcript: Transcript = {
        "language": "en",
        "segments": [
            {"start": g[0][0], "end": g[-1][1], "text": " ".join(r[3] for r in g)} for g in groups
        ],
    }
    out = Timing(audio_seconds=sum(g[-1][1] - g[0][0] for g in groups))
    started = time.perf_counter()
    aligned = aligner.align(transcript, ctx.sample)
    out.seconds = time.perf_counter() - started
    words = iter(w for s in aligned["segments"] for w in s["words"])
    for group in groups:
        for k, (start, end, _, text) in enumerate(group):
            said = [next(words) for _ in text.split()]
            if k > 0:
                out.starts.append(abs(said[0]["start"] - start))
            if k < len(group) - 1:
                out.ends.append(abs(said[-1]["end"] - end))
    out.within = out.starts + out.ends
    return out


def bench_alignment(ctx: Context, sets: dict[str, list[Speech]]) -> dict[str, Timing]:
    from app.pipeline.align import load_aligner
    from app.pipeline.models import ModelUnavailable
    from app.pipeline.offline.align import PocketsphinxAligner, load_whisper_aligner

    s = ctx.settings
    tiny = s.model_copy(update={"whisper_model": "tiny.en"})
    fallbacks: list[str] = []
    fell_back: list[str] = []  # sets where pocketsphinx handed segments to Whisper

    def fallback() -> Any:
        fallbacks.append("")
        return load_whisper_aligner("en", ctx.cache, s)

    english = [n for n in sets if n.startswith("en ")]
    german = [n for n in sets if n.startswith("de ")]
    aligners: list[tuple[Callable[[], contextlib.AbstractContextManager[Any]], list[str]]] = [
        (lambda: contextlib.nullcontext(PocketsphinxAligner(fallback)), english),
        (lambda: load_whisper_aligner("en", ctx.cache, s), english),
        (lambda: load_whisper_aligner("en", ctx.cache, tiny), english),
        (lambda: load_whisper_aligner("de", ctx.cache, s), german),
    ]
    production = s.model_copy(update={"aligner": "production"})
    unavailable: list[tuple[str, str]] = []
    for language, names in (("en", english), ("de", german)):

        def load(language: str = language) -> contextlib.AbstractContextManager[Any]:
            return load_aligner(language, cache=ctx.cache, settings=production)

        try:
            with load():
                aligners.append((load, names))
        except ModelUnavailable as exc:
            unavailable.append((language, str(exc)))

    rows, results = [], {}
    for load, names in aligners:
        with load() as aligner:
            note(f"aligning with {aligner.name}")
            jobs: list[tuple[str, list[Speech] | None]] = [(n, sets[n]) for n in names]
            if names is english:
                jobs.append(("real: sample.wav utterance edges", None))
            for name, speech in jobs:
                before = len(fallbacks)
                t = align_sample(aligner, ctx) if speech is None else align_set(aligner, speech)
                results[f"{aligner.name} {name}"] = t
                rows.append([aligner.name, name, *timing_cells(t)])
                if len(fallbacks) > before and isinstance(aligner, PocketsphinxAligner):
                    fell_back.append(f"{name} ({len(fallbacks) - before})")
    for language, reason in unavailable:
        rows.append([f"wav2vec2 ({language})", "unavailable: " + first_sentence(reason),
                     *["-"] * 9])  # fmt: skip

    print("## Word timing: error against exact word times, per aligner\n")
    print(
        "Synthetic speech from espeak-ng, one segment per clip: `words` are words synthesised one "
        "at a time and joined with known pauses (0-300 ms, a quarter of them none; or 30-80 ms); "
        "`continuous` is each sentence said in one go, word times from espeak-ng's own word and "
        "phoneme events (a word spans its first to last audible sample). Voices "
        f"{', '.join(ctx.plan.voices)} (German {', '.join(ctx.plan.german_voices)}) at "
        f"{', '.join(map(str, ctx.plan.rates))} wpm. The real row is sample.wav cut in three "
        "segments: the error at each utterance start/end inside a segment against sample.stm "
        "(itself a human annotation, about ±50 ms). Errors in ms; `≤100 ms` counts words whose "
        "start and end are both within 100 ms (real row: utterance edges). Seconds: aligning the whole set, models loaded.\n"
    )
    head = ["aligner", "speech", "words", "start median", "start p90", "end median", "end p90",
            "≤100 ms %", "≤200 ms %", "seconds", "RTF"]  # fmt: skip
    table(head, rows)
    picks: dict[str, str] = {}
    for language in ("en", "de"):
        with load_aligner(language, cache=ctx.cache, settings=s) as aligner:
            picks[language] = aligner.name
    print(
        f"Offline the service picks `{picks['en']}` for English and `{picks['de']}` for German. "
        "pocketsphinx handed segments it could not align to Whisper in: "
        f"{', '.join(fell_back) or 'none'}."
    )
    for language, reason in unavailable:
        print(f"\nwav2vec2 ({language}) is unavailable: {reason}")
    print()
    by_voice_table(ctx, results)
    return results


def timing_cells(t: Timing) -> list[str]:
    def ms(values: list[float], q: float) -> str:
        return f"{1000 * np.percentile(values, q):.0f}" if values else "-"

    def share(limit: float) -> str:
        return f"{100 * np.mean(np.asarray(t.within) <= limit):.0f}"

    return [
        f"{len(t.starts)} / {len(t.ends)}" if len(t.starts) != len(t.ends) else str(len(t.starts)),
        ms(t.starts, 50), ms(t.starts, 90), ms(t.ends, 50), ms(t.ends, 90),
        share(0.1), share(0.2), f"{t.seconds:.2f}", f"{t.seconds / t.audio_seconds:.3f}",
    ]  # fmt: skip


def by_voice_table(ctx: Context, results: dict[str, Timing]) -> None:
    """Median word-start error per voice and per rate, on English continuous speech."""
    runs = {k.split(" ")[0]: t for k, t in results.items() if k.endswith("en continuous")}
    voices, rates = ctx.plan.voices, ctx.plan.rates
    rows = []
    for name, t in runs.items():
        cells = [name]
        for key in [*voices, *map(str, rates)]:
            errors = [e for label, v in t.by_label.items() if key in label.split() for e in v]
            cells.append(f"{1000 * np.median(errors):.0f}")
        rows.append(cells)
    print(
        "Median word-start error (ms) on English continuous speech, by voice and by rate (wpm):\n"
    )
    table(["aligner", *voices, *(f"{r} wpm" for r in rates)], rows)


# --- diarization --------------------------------------------------------------------------


@dataclass
class Input:
    """Audio to diarize with its reference turns (start, end, speaker)."""

    name: str
    audio: np.ndarray
    reference: list[tuple[float, float, str]]
    repeat: int = 1

    @property
    def speakers(self) -> int:
        return len({speaker for _, _, speaker in self.reference})


def regions(
    truth: list[tuple[str, float, float]], bridge: float = 0.3
) -> list[tuple[float, float]]:
    """Speech regions from word times, pauses shorter than `bridge` s bridged (and any around
    words without times, which lie between their neighbours)."""
    out: list[list[float]] = []
    untimed = False
    for _, start, end in truth:
        if math.isnan(start):
            untimed = True
        elif out and (untimed or start - out[-1][1] < bridge):
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
        untimed = untimed and math.isnan(start)
    return [(a, b) for a, b in out]


def conversation(voices: list[str], turns: int, seed: int) -> tuple[np.ndarray, list]:
    """espeak-ng voices taking turns of one or two sentences, 0.2-0.8 s apart: the audio and the
    reference turns (the voices' speech regions, pauses under 0.3 s bridged)."""
    from tests.speech import espeak_words

    rng = np.random.default_rng(seed)
    parts, reference, at, previous = [], [], 0.0, None
    for i in range(turns):
        choices = [v for v in voices if v != previous] or voices
        # every voice speaks in the first round, then they take turns at random
        voice = voices[i] if i < len(voices) else choices[rng.integers(len(choices))]
        picked = rng.choice(len(CONVERSATION), size=1 + int(rng.uniform() < 0.5), replace=False)
        text = " ".join(CONVERSATION[k] for k in picked)
        audio, truth = espeak_words(text, voice, int(rng.choice([150, 170, 190])))
        reference += [(at + a, at + b, voice) for a, b in regions(truth)]
        gap = np.zeros(int(rng.uniform(0.2, 0.8) * RATE), np.float32)
        parts += [audio, gap]
        at += (audio.size + gap.size) / RATE
        previous = voice
    return np.concatenate(parts), reference


def diarization_inputs(ctx: Context) -> list[Input]:
    from pyannote.core import Annotation, Segment

    turns = reference_turns()
    inputs = [Input("real: sample.wav call", ctx.sample, turns, ctx.plan.diarize_runs)]
    call = Annotation()
    for start, end, speaker in turns:
        call[Segment(start, end)] = speaker
    first, second = call.labels()
    alone = call.label_timeline(first).extrude(call.label_timeline(second))
    parts, reference, at = [], [], 0.0
    for piece in alone:
        cut = ctx.sample[int(piece.start * RATE) : int(piece.end * RATE)]
        parts += [cut, np.zeros(int(0.4 * RATE), np.float32)]
        reference.append((at, at + cut.size / RATE, first))
        at += cut.size / RATE + 0.4
    inputs.append(Input("real: one speaker cut from sample.wav", np.concatenate(parts), reference))
    for n, voice in enumerate(ctx.plan.monologue_voices):
        audio, reference = conversation([voice], 5, seed=100 + n)
        inputs.append(Input(f"synthetic monologue ({voice})", audio, reference))
    for count in (2, 3, 4):
        for k in range(ctx.plan.conversations):
            voices = [SPEAKERS[(k + i) % len(SPEAKERS)] for i in range(count)]
            audio, reference = conversation(voices, 3 * count, seed=10 * count + k)
            inputs.append(
                Input(f"synthetic {count} voices ({', '.join(voices)})", audio, reference)
            )
    return inputs


def der(reference: list, turns: list, seconds: float, collar: float) -> float:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for start, end, speaker in reference:
        ref[Segment(start, end)] = speaker
    for turn in turns:
        hyp[Segment(turn["start"], turn["end"])] = turn["speaker"]
    uem = Timeline([Segment(0, seconds)])
    return DiarizationErrorRate(collar=collar)(ref, hyp, uem=uem)


def bench_diarization(ctx: Context) -> dict[str, Any]:
    from app.pipeline.diarize import load_diarizer
    from app.pipeline.models import ModelUnavailable

    inputs = diarization_inputs(ctx)
    available, unavailable = [], []
    for mode in ("offline", "production"):
        settings = ctx.settings.model_copy(update={"diarizer": mode})
        try:
            with load_diarizer(cache=ctx.cache, settings=settings):
                available.append(settings)
        except ModelUnavailable as exc:
            unavailable.append((mode, str(exc)))
    rows, counts, facts = [], {}, {}
    said: list[str] = []  # what pyannote printed, by input
    for settings in available:
        with load_diarizer(cache=ctx.cache, settings=settings) as diarizer:
            note(f"diarizing with {diarizer.name}")
            right = []
            for item in inputs:
                seconds = item.audio.size / RATE
                for given in (item.speakers, None):
                    took, printed = [], io.StringIO()  # pyannote prints clustering trouble
                    for _ in range(item.repeat):
                        started = time.perf_counter()
                        with contextlib.redirect_stdout(printed):
                            turns = diarizer.diarize(item.audio, num_speakers=given).turns
                        took.append(time.perf_counter() - started)
                    for line in dict.fromkeys(printed.getvalue().splitlines()):
                        said.append(f"{item.name}, count {'given' if given else 'unknown'}: {line}")
                    found = len({t["speaker"] for t in turns})
                    errors = [der(item.reference, turns, seconds, c) for c in (0.0, 0.25)]
                    median = statistics.median(took)
                    rows.append([
                        diarizer.name, item.name, f"{seconds:.0f}", item.speakers,
                        "given" if given else "unknown", found,
                        f"{100 * errors[0]:.1f}", f"{100 * errors[1]:.1f}",
                        f"{median:.2f}", f"{median / seconds:.3f}",
                    ])  # fmt: skip
                    facts[(diarizer.name, item.name, given is not None)] = (
                        found,
                        errors,
                        median / seconds,
                    )
                    if given is None:
                        right.append(found == item.speakers)
            counts[diarizer.name] = right
    for mode, reason in unavailable:
        rows.append([f"{mode} diarizer", "unavailable: " + first_sentence(reason), *["-"] * 8])
    print("## Diarization: error rate (%) per diarizer\n")
    print(
        "DER from pyannote.metrics `DiarizationErrorRate` over the whole file; `collar` is "
        "pyannote's: the total width of the forgiven zone around each reference boundary (0.25 = "
        "±0.125 s). Synthetic conversations: espeak-ng voices taking turns of one or two sentences "
        "(0.2-0.8 s apart, no overlap), reference = each voice's speech regions (pauses under "
        f"0.3 s bridged). sample.wav timings are medians of {ctx.plan.diarize_runs} run(s).\n"
    )
    head = ["diarizer", "input", "audio s", "true speakers", "count", "found", "DER collar 0",
            "DER collar 0.25", "seconds", "RTF"]  # fmt: skip
    table(head, rows)
    for mode, reason in unavailable:
        print(f"The {mode} diarizer is unavailable: {reason}\n")
    for line in said:
        print(f"pyannote, on {line}  ")
    if said:
        print()
    for name, right in counts.items():
        print(
            f"**Speaker count found with the count unknown ({name}): {sum(right)} of "
            f"{len(right)} inputs right ({100 * sum(right) / len(right):.0f} %).**\n"
        )
    return facts


# --- the diarization dev set ---------------------------------------------------------------


def bench_devset(ctx: Context, folder: Path) -> None:
    """DER per condition of a generated dev set (bench/devset.py: speakers, overlap share,
    length, room and noise), the count given and not, speakers found; then speaker matching."""
    import argparse
    import json

    sys.path.insert(0, str(REPO / "bench"))
    import devset

    manifest = json.loads((folder / "manifest.json").read_text())
    settings = ctx.settings.model_copy(update={"diarizer": "offline"})
    from app.pipeline.diarize import load_diarizer

    print(f"## Diarization dev set: {folder.name}\n")
    options = argparse.Namespace(devset=folder, fix=None, repeat=1, unknown_only=False, json=None)
    with load_diarizer(cache=ctx.cache, settings=settings) as diarizer:
        note(f"dev set {folder}: {len(manifest['recordings'])} recordings")
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            devset.evaluate_with(
                diarizer, options, manifest, manifest["recordings"], time.perf_counter()
            )
        # evaluate_with's tables, one level down under this section
        print(printed.getvalue().replace("\n## ", "\n### "))
        matching_accuracy(diarizer, folder, manifest, devset)


def matching_accuracy(diarizer: Any, folder: Path, manifest: dict, devset: Any) -> None:
    """Right name / wrong name / missed for enrolled voices, matching each recording's diarized
    speakers (count unknown) with profiles by app.pipeline.speakers.match_speakers.

    Each recording enrols all its voices but the last one (which must stay unnamed) plus two
    voices that are not in it (which must name nobody). Enrolment audio: the voice's phrases made
    with another seed (synthetic voices then say other sentences at other pitches); the real and
    derived voices have only sample.wav's phrases, so theirs is the same speech as in the
    recording, joined differently: an easier case than real enrolment."""
    import soundfile

    from app.pipeline.speakers import match_speakers

    voices = devset.Voices(manifest["seed"] + 1000)
    pool = ["A", "B", *(f"derived:{d}" for d in devset.DERIVED), *devset.SYNTHETIC]
    profiles_of: dict[str, dict[str, Any]] = {}

    def profile(key: str) -> dict[str, Any]:
        if key not in profiles_of:
            voice = voices[key]
            gap = np.zeros(RATE // 4, np.float32)
            speech = np.concatenate([x for c in voice.phrases[:12] for x in (c.audio, gap)])
            embedding, _ = diarizer.embed(speech)
            profiles_of[key] = {"name": voice.name, "embedding": embedding,
                                "model": diarizer.embedding_model}  # fmt: skip
        return profiles_of[key]

    rows, totals = [], {"right": 0, "wrong": 0, "missed": 0, "unnamed ok": 0}
    for rec in manifest["recordings"]:
        if rec["tile"]:
            continue
        keys = [_voice_key(s["voice"]) for s in rec["sources"]]
        enrolled = keys[:-1]
        strangers = [k for k in pool if k not in keys][:2]
        profiles = [profile(k) for k in enrolled + strangers]
        audio, _ = soundfile.read(folder / rec["wav"], dtype="float32")
        reference = devset.read_rttm(folder / rec["rttm"])
        with contextlib.redirect_stdout(io.StringIO()):
            found = diarizer.diarize(audio)
        matches = match_speakers(found.embeddings, profiles)
        voice_of_label = {s["label"]: s["voice"] for s in rec["sources"]}
        names = {profiles_of[k]["name"] for k in enrolled}
        count = dict.fromkeys(totals, 0)
        for label, (name, _) in matches.items():
            truth = voice_of_label[_main_speaker(found.turns, reference, label)]
            expected = truth if truth in names else None
            outcome = ("right" if name == expected else "wrong") if name else (
                "missed" if expected else "unnamed ok")  # fmt: skip
            count[outcome] += 1
        for key in totals:
            totals[key] += count[key]
        rows.append([rec["name"], rec["speakers"], len(found.embeddings), len(enrolled),
                     *count.values()])  # fmt: skip
    print("### Speaker matching (count unknown)\n")
    print(matching_accuracy.__doc__.split("\n\n", 1)[1].strip().replace("\n    ", " ") + "\n")
    table(["recording", "speakers", "found", "enrolled", "right name", "wrong name", "missed",
           "unenrolled left unnamed"], rows)  # fmt: skip
    named = totals["right"] + totals["wrong"] + totals["missed"]
    print(f"**Matching: {totals['right']} right, {totals['wrong']} wrong, {totals['missed']} "
          f"missed of {named} named or missed speakers; {totals['unnamed ok']} correctly left "
          "unnamed.**\n")  # fmt: skip


def _voice_key(voice: str) -> str:
    """devset.Voices' key of a manifest voice name: real:A → A, espeak:en+f3 → en+f3."""
    kind, _, name = voice.partition(":")
    return {"real": name, "espeak": name}.get(kind, voice)


def _main_speaker(turns: list, reference: list, label: str) -> str:
    """The reference speaker a diarized speaker overlaps most."""
    overlap: dict[str, float] = {}
    for turn in (t for t in turns if t["speaker"] == label):
        for start, end, who in reference:
            shared = min(end, turn["end"]) - max(start, turn["start"])
            overlap[who] = overlap.get(who, 0.0) + max(shared, 0.0)
    return max(overlap, key=overlap.__getitem__)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Context:
    """What every section shares: one model cache, settings, plan and sample.wav."""

    plan: Plan
    settings: Settings
    cache: ModelCache
    sample: np.ndarray

    @property
    def sample_seconds(self) -> float:
        return self.sample.size / RATE


def versions(settings: Settings) -> None:
    """The machine and the versions of what the numbers depend on."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        cpu = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                    if line.startswith("model name")), cpu)  # fmt: skip
    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    packages = ["whisperx", "faster-whisper", "ctranslate2", "torch", "pyannote.audio",
                "pyannote.metrics", "pocketsphinx", "Resemblyzer", "jiwer", "numpy"]  # fmt: skip
    found = []
    for package in packages:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    print(f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.machine()}; "
          f"device {settings.device}, compute type {settings.compute_type}.  ")  # fmt: skip
    print(
        f"Python {platform.python_version()}; {', '.join(found)}; {' '.join(espeak.split()[:4])}.\n"
    )


def targets(timings: dict[str, Timing], diarization: dict[str, Any]) -> None:
    """Issue 3's targets, met or missed."""
    rows = []

    def check(what: str, value: str, met: bool) -> None:
        rows.append([what, value, "met" if met else "**missed**"])

    for aligner, language in (("pocketsphinx:en-us", "en"), ("whisper:base", "de")):
        starts = [
            e
            for k, t in timings.items()
            if k.startswith(f"{aligner} {language} ")
            for e in t.starts
        ]
        if starts:
            median = 1000 * float(np.median(starts))
            check(f"offline aligner {aligner} ({language}, synthetic): median word-start error ≤ 60 ms",
                  f"{median:.0f} ms", median <= 60)  # fmt: skip
    offline = [key for key in diarization if key[0].startswith("offline")]
    for key in offline:
        found, errors, _ = diarization[key]
        if key[1] != "real: sample.wav call":
            continue
        limit, label = (0.06, "given") if key[2] else (0.10, "unknown")
        check(f"sample.wav DER at collar 0.25, count {label} ≤ {100 * limit:.0f} %",
              f"{100 * errors[1]:.1f} %", errors[1] <= limit)  # fmt: skip
        if not key[2]:
            check("sample.wav speaker count found (count unknown) = 2", str(found), found == 2)
    if offline:
        worst = max(diarization[key][2] for key in offline)
        check("diarization RTF ≤ 0.2 (worst input)", f"{worst:.3f}", worst <= 0.2)
    print("## Issue 3 targets\n")
    table(["target", "measured", "result"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer voices and rates, one run each")
    parser.add_argument(
        "--hub", action="store_true", help="allow hub downloads (production models, HF_TOKEN)"
    )
    parser.add_argument(
        "--devset", type=Path, nargs="*", default=[],
        help="dev set folders (bench/devset.py generate) to score the offline diarizer on",
    )  # fmt: skip
    parser.add_argument("--devset-only", action="store_true", help="only the dev set section(s)")
    parser.add_argument("--asr-only", action="store_true", help="only the ASR section")
    args = parser.parse_args()
    if not args.hub:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a hub that is not there
    warnings.filterwarnings("ignore")  # the ML libraries' deprecation noise
    started = time.perf_counter()

    from whisperx.log_utils import setup_logging

    from app.pipeline.audio import decode_audio
    from app.pipeline.models import ModelCache
    from app.settings import Settings

    setup_logging("warning")  # whisperX logs each VAD pass to stdout at INFO

    settings = Settings(_env_file=None, model_dir=REPO / "models", hub_allowed=args.hub)
    settings = settings.for_worker()
    plan = QUICK if args.quick else FULL
    ctx = Context(plan, settings, ModelCache(), decode_audio(SAMPLE_DIR / "sample.wav"))
    print(f"# Quality benchmark ({'quick' if args.quick else 'full'} run)\n")
    versions(settings)
    if not args.devset_only:
        note("synthesising speech")
        sets = timing_sets(plan)
        bench_asr(ctx, sets)
    if not (args.devset_only or args.asr_only):
        timings = bench_alignment(ctx, sets)
        diarization = bench_diarization(ctx)
        targets(timings, diarization)
    for folder in args.devset:
        bench_devset(ctx, folder)
    loads = sum(ctx.cache.load_seconds.values())
    print(f"Total {time.perf_counter() - started:.0f} s, of which model loading {loads:.0f} s.")


if __name__ == "__main__":
    main()
