"""Diarization dev set: generate conversations with exact reference turns, and score a diarizer on them.

    python bench/devset.py generate --size small --out bench/out/devset --seed 0
    python bench/devset.py eval --devset bench/out/devset [--only NAME ...] [--repeat N] [--fix merge]
    python bench/devset.py voices            # how far apart the speaker encoder puts the voices

Voices come from real speech (the two speakers of pyannote-audio's sample.wav, cut out of the call
where each talks alone), real speech transformed by sox (pitch and tempo: "derived" people, labelled
as such) and espeak-ng voices. A conversation is built turn by turn (backchannels to long turns,
overlap steered to a target share), rendered through an optional synthetic room (exponentially
decaying noise as impulse response, RT60; distance = far-microphone attenuation and a lower
direct-to-reverberant ratio) and mixed with white, pink or babble noise at a given SNR. Each
recording is a 16 kHz mono WAV, an RTTM and an entry of manifest.json. Nothing here is committed:
the default output folder bench/out/ is git-ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16_000
FRAME = 0.01  # s: resolution of activity bookkeeping and of speech-region detection
# found without importing pyannote.audio (lightning and torch: most of a tiny set's time)
SAMPLE_DIR = Path(list(find_spec("pyannote.audio").submodule_search_locations)[0]) / "sample"  # type: ignore[union-attr]
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "devset"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the app, for `eval`

# --- text for the synthetic voices ------------------------------------------------------------
# Sentences are assembled from these parts, so that long recordings do not repeat one text.

SUBJECTS = [
    "The new schedule",
    "Our biggest client",
    "The second team",
    "My manager",
    "The old printer",
    "Everybody in the office",
    "The budget for March",
    "That proposal",
    "The marketing department",
    "Your last email",
    "The project plan",
    "Nobody here",
]
PREDICATES = [
    "needs another review before Friday",
    "was discussed at length yesterday",
    "should be ready by the end of the month",
    "surprised most of the people involved",
    "depends on what the board decides next week",
    "has not been approved yet",
    "looks much better than the first draft",
    "will probably change again soon",
    "costs a lot more than we expected",
    "came up during lunch on Tuesday",
]
TAILS = [
    "",
    "",
    "",
    " as far as I know",
    " if I remember correctly",
    " to be honest",
    " and that worries me a little",
    " so we have some time",
    " which is fine by me",
]
BACKCHANNELS_EN = [
    "yeah",
    "mm-hm",
    "right",
    "okay",
    "sure",
    "uh-huh",
    "exactly",
    "I see",
    "really?",
    "yes",
    "no",
    "true",
]
FOREIGN = {
    "de": (["Das ist eine gute Frage, die wir morgen noch einmal besprechen sollten.",
            "Ich habe den Bericht gestern Abend an alle Kollegen geschickt.",
            "Wir treffen uns am Donnerstag um zehn Uhr im großen Saal.",
            "Der Kunde möchte noch ein paar Änderungen am Entwurf sehen.",
            "Im Moment haben wir leider zu wenig Leute für dieses Projekt."],
           ["ja", "genau", "stimmt", "okay", "mhm"]),
    "fr": (["Je pense que nous devrions revoir le budget avant la réunion.",
            "Le rapport sera prêt demain matin, sauf imprévu.",
            "Nous avons parlé de ce problème avec toute l'équipe hier.",
            "Il faudrait envoyer la proposition au client cette semaine.",
            "Cette solution me semble beaucoup plus simple que la précédente."],
           ["oui", "d'accord", "voilà", "exactement", "bon"]),
    "es": (["Creo que deberíamos revisar el presupuesto antes de la reunión.",
            "El informe estará listo mañana por la mañana.",
            "Hablamos de este problema con todo el equipo ayer por la tarde.",
            "Hay que enviar la propuesta al cliente esta semana.",
            "Esta solución me parece mucho más sencilla que la anterior."],
           ["sí", "claro", "vale", "exacto", "bueno"]),
}  # fmt: skip

# espeak-ng voices that Resemblyzer tells apart (`voices` prints the cosine matrix): variant,
# pitch (0-99) and words per minute. en-us and en-gb would be one voice with two accents.
SYNTHETIC = {
    "en-us": ("en-us", 50, 165),
    "en+f3": ("en+f3", 60, 175),
    "en+m7": ("en+m7", 35, 155),
    "en+f2": ("en+f2", 75, 185),
    "en+klatt": ("en+klatt", 45, 160),
    "en+m8": ("en+m8", 25, 150),
    "de+m3": ("de+m3", 40, 160),
    "fr+f4": ("fr+f4", 70, 170),
    "es+m2": ("es+m2", 55, 165),
}
DERIVED = {
    # name: (real voice, pitch shift in cents, tempo factor): sox `pitch` moves pitch and formants
    "A+500c": ("A", 500, 1.0),
    "B-400c": ("B", -400, 1.0),
    "A-300c*1.15": ("A", -300, 1.15),
    "B+300c*0.9": ("B", 300, 0.9),
}


# --- voices --------------------------------------------------------------------------------------


@dataclass
class Clip:
    audio: np.ndarray
    regions: list[tuple[float, float]]  # s, relative to the clip: where it is speech

    @property
    def seconds(self) -> float:
        return self.audio.size / RATE


@dataclass
class Voice:
    name: str  # e.g. "real:A", "derived:A+500c", "espeak:en+f3"
    kind: str  # real | derived | synthetic
    about: str
    phrases: list[Clip]
    backchannels: list[Clip]


def speech_regions(
    audio: np.ndarray, floor_db: float = -35.0, bridge: float = 0.3, shortest: float = 0.05
) -> list[tuple[float, float]]:
    """Where a clean clip is speech: 10 ms frames within `floor_db` of its loud frames, pauses
    shorter than `bridge` s bridged (the convention of human references)."""
    hop = int(FRAME * RATE)
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    if frames.size == 0:
        return []
    power = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.percentile(power, 95)
    active = power > loud + floor_db
    regions: list[list[float]] = []
    for i in np.flatnonzero(active):
        start, end = i * FRAME, (i + 1) * FRAME
        if regions and start - regions[-1][1] < bridge:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    return [(a, b) for a, b in regions if b - a >= shortest]


def trimmed(audio: np.ndarray, pad: float = 0.02) -> Clip | None:
    """The clip cut to its speech (plus `pad` s), with its regions."""
    regions = speech_regions(audio)
    if not regions:
        return None
    a = max(0, int((regions[0][0] - pad) * RATE))
    b = min(audio.size, int((regions[-1][1] + pad) * RATE))
    shift = a / RATE
    return Clip(audio[a:b].astype(np.float32), [(s - shift, e - shift) for s, e in regions])


def sample_reference() -> list[tuple[float, float, str]]:
    turns = []
    for line in (SAMPLE_DIR / "sample.rttm").read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


@functools.cache
def sample_audio() -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(SAMPLE_DIR / "sample.wav", dtype="float32")
    assert rate == RATE and audio.ndim == 1
    return audio


def real_voices() -> dict[str, Voice]:
    """The two people of sample.wav, as the phrases each says alone: their RTTM turns less any
    overlap with the other, cut at pauses of 0.3 s or more."""
    from pyannote.core import Annotation, Segment

    call = Annotation()
    for start, end, speaker in sample_reference():
        call[Segment(start, end)] = speaker
    audio = sample_audio()
    voices = {}
    for letter, label in zip("AB", sorted(call.labels()), strict=True):
        others = [x for x in call.labels() if x != label]
        alone = call.label_timeline(label).support()
        for other in others:
            alone = alone.extrude(call.label_timeline(other))
        phrases = []
        for piece in alone:
            cut = audio[int(piece.start * RATE) : int(piece.end * RATE)]
            for a, b in speech_regions(cut):
                clip = trimmed(cut[max(0, int((a - 0.05) * RATE)) : int((b + 0.05) * RATE)])
                if clip is not None and clip.seconds >= 0.25:
                    phrases.append(clip)
        short = [p for p in phrases if p.seconds <= 1.0] or [min(phrases, key=lambda p: p.seconds)]
        voices[letter] = Voice(
            f"real:{letter}", "real",
            f"sample.wav {label}: {len(phrases)} phrases, {sum(p.seconds for p in phrases):.1f} s "
            "spoken alone",
            phrases, short,
        )  # fmt: skip
    return voices


def sox(audio: np.ndarray, *effects: str) -> np.ndarray:
    import soundfile

    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / "in.wav", Path(folder) / "out.wav"
        soundfile.write(src, audio, RATE, subtype="FLOAT")
        subprocess.run(["sox", "-V1", str(src), str(dst), *effects, "rate", str(RATE)], check=True)
        out, _ = soundfile.read(dst, dtype="float32")
    return out


def derived_voice(name: str, real: dict[str, Voice]) -> Voice:
    source, cents, tempo = DERIVED[name]
    base = real[source]
    effects = ["pitch", str(cents)] + (["tempo", "-s", str(tempo)] if tempo != 1.0 else [])

    def change(clips: list[Clip]) -> list[Clip]:
        return [c for c in (trimmed(sox(clip.audio, *effects)) for clip in clips) if c]

    return Voice(
        f"derived:{name}", "derived",
        f"real:{source} through sox pitch {cents:+d} cents, tempo x{tempo} (a made-up person)",
        change(base.phrases), change(base.backchannels),
    )  # fmt: skip


def espeak(text: str, variant: str, pitch: int, wpm: int) -> np.ndarray:
    import soundfile
    from scipy.signal import resample_poly

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "say.wav"
        subprocess.run(
            ["espeak-ng", "-v", variant, "-p", str(pitch), "-s", str(wpm), "-w", str(path), text],
            check=True, capture_output=True,
        )  # fmt: skip
        audio, rate = soundfile.read(path, dtype="float32")
    return resample_poly(audio, RATE, rate).astype(np.float32) if rate != RATE else audio


def synthetic_voice(name: str, rng: np.random.Generator, sentences: int = 24) -> Voice:
    variant, pitch, wpm = SYNTHETIC[name]
    language = variant.split("+")[0].split("-")[0]
    if language in FOREIGN:
        texts, backs = FOREIGN[language]
        texts = [texts[i % len(texts)] for i in range(min(sentences, len(texts)))]
    else:
        texts = [
            SUBJECTS[rng.integers(len(SUBJECTS))] + " " + PREDICATES[rng.integers(len(PREDICATES))]
            + TAILS[rng.integers(len(TAILS))] + "."
            for _ in range(sentences)
        ]  # fmt: skip
        backs = BACKCHANNELS_EN

    def say(text: str, spread: int) -> Clip | None:
        # a little variation in pitch and rate from utterance to utterance, as people have
        return trimmed(
            espeak(text, variant, int(np.clip(pitch + rng.integers(-spread, spread + 1), 0, 99)),
                   int(wpm + rng.integers(-15, 16)))
        )  # fmt: skip

    phrases = [c for c in (say(t, 6) for t in texts) if c]
    backchannels = [c for c in (say(b, 10) for b in backs) if c]
    return Voice(f"espeak:{name}", "synthetic", f"espeak-ng -v {variant} -p {pitch} -s {wpm}±15",
                 phrases, backchannels)  # fmt: skip


class Voices:
    """Every voice a condition may name ("A", "B", "derived:A+500c", "en+f3"), made once."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._made: dict[str, Voice] = {}
        self._real: dict[str, Voice] | None = None

    def __getitem__(self, key: str) -> Voice:
        if key not in self._made:
            if self._real is None:
                self._real = real_voices()
            if key in self._real:
                self._made[key] = self._real[key]
            elif key.startswith("derived:"):
                self._made[key] = derived_voice(key.removeprefix("derived:"), self._real)
            else:
                rng = np.random.default_rng([self.seed, *key.encode()])
                self._made[key] = synthetic_voice(key, rng)
        return self._made[key]


# --- conditions ----------------------------------------------------------------------------------


@dataclass
class Condition:
    """One recording to generate."""

    name: str
    group: str  # recordings of one group share a table in `eval`
    seconds: float
    voices: list[str]  # keys of Voices; empty for the tiled sample.wav
    overlap_share: float = 0.0  # target share of speech time with two or more people talking
    backchannel_share: float = 0.12  # share of turns that are a backchannel
    turn_median: float = 3.5  # s, median length of a regular turn (log-normal, sigma 0.8)
    rt60: float = 0.0  # s, room reverberation; 0 = dry
    far_m: float = 1.0  # the farthest speaker's distance to the microphone (m); 1 = all close
    snr_db: float | None = None  # additive noise; None = none
    noise: str = "none"  # none | white | pink | babble
    tile: bool = False  # sample.wav itself, repeated to `seconds`


SIZES = ("tiny", "small", "heldout", "long2", "full")


def conditions(size: str) -> list[Condition]:
    """Named sets. tiny: one 20 s conversation (for the test suite); small: about 15 min of audio,
    under ~3 min of diarization (count given and not) on 2 cores, the split tuned on; heldout:
    about 20 min of meetings with voices and conditions small does not have (report on it, do
    not tune on it; generate it with another seed); long2: the two real voices at 10 and 30
    min; full: up to 60 min."""
    C = Condition
    real2, d3 = ["A", "B"], ["A", "B", "derived:A+500c"]
    mix4 = ["A", "B", "en+f3", "en+m7"]
    mix5 = ["A", "derived:B-400c", "en-us", "en+f3", "en+m7"]
    synth3, synth5 = ["en-us", "en+f3", "en+m7"], ["en-us", "en+f3", "en+m7", "en+f2", "de+m3"]
    small = [
        C("sample", "sample.wav", 30, [], tile=True),
        C("tile-2m", "sample.wav tiled", 120, [], tile=True),
        C("real2-2m", "2 real voices", 120, real2, overlap_share=0.05),
        C("synth3-90s", "synthetic 3", 90, synth3),
        C("derived3-2m", "real + derived", 120, d3, overlap_share=0.05),
        C("mix4-ov10-2m", "mixed 4", 120, mix4, overlap_share=0.10),
        C("mix5-2m", "mixed 5", 120, mix5, overlap_share=0.05),
        C("room3-2m", "room + noise", 120, ["A", "en+f3", "en+m7"], overlap_share=0.05,
          rt60=0.6, far_m=3.0, snr_db=15, noise="pink"),
        C("babble3-2m", "room + noise", 120, ["B", "en-us", "en+f2"], snr_db=10, noise="babble"),
    ]  # fmt: skip
    heldout = [
        C("real2-rev-3m", "2 real voices", 180, real2, overlap_share=0.10, rt60=0.3),
        C("derived3-3m", "real + derived", 180, ["B", "derived:A-300c*1.15", "derived:B+300c*0.9"],
          overlap_share=0.05),
        C("synth4-3m", "synthetic 4", 180, ["en+klatt", "en+m8", "fr+f4", "es+m2"],
          overlap_share=0.05),
        C("meet3-ov15-3m", "meeting", 180, ["A", "en+klatt", "fr+f4"], overlap_share=0.15,
          rt60=0.4, far_m=2.5, snr_db=20, noise="pink"),
        C("meet4-far-3m", "meeting", 180, ["B", "en+m8", "es+m2", "derived:A-300c*1.15"],
          overlap_share=0.10, rt60=0.5, far_m=3.0, snr_db=15, noise="white"),
        C("meet5-short-3m", "meeting", 180,
          ["A", "derived:B+300c*0.9", "en+klatt", "en+m8", "de+m3"], overlap_share=0.08,
          backchannel_share=0.25, turn_median=2.0, rt60=0.3, far_m=2.0, snr_db=20,
          noise="babble"),
        C("meet3-noisy-3m", "meeting", 180, ["B", "en+klatt", "de+m3"], overlap_share=0.05,
          rt60=0.7, far_m=3.0, snr_db=10, noise="pink"),
    ]  # fmt: skip
    tiny = [C("tiny", "test", 20, ["A", "en+f3"], overlap_share=0.05, turn_median=2.5)]
    long2 = [
        C("tile-10m", "sample.wav tiled", 600, [], tile=True),
        C("real2-10m", "2 real voices", 600, real2, overlap_share=0.05),
        C("tile-30m", "sample.wav tiled", 1800, [], tile=True),
        C("real2-30m", "2 real voices", 1800, real2, overlap_share=0.05),
    ]
    full = [
        *small,
        *long2,
        C("synth5-10m", "synthetic 5", 600, synth5, overlap_share=0.05),
        C("derived3-10m", "real + derived", 600, d3, overlap_share=0.05),
        C("mix4-ov20-10m", "mixed 4", 600, mix4, overlap_share=0.20),
        C("mix5-10m", "mixed 5", 600, mix5, overlap_share=0.10),
        C("mix5-room-30m", "mixed 5", 1800, mix5, overlap_share=0.10, rt60=0.5, far_m=3.0,
          snr_db=15, noise="babble"),
        C("mix4-room-60m", "mixed 4", 3600, mix4, overlap_share=0.10, rt60=0.4, far_m=2.5,
          snr_db=20, noise="pink"),
        C("real2-60m", "2 real voices", 3600, real2, overlap_share=0.05),
    ]  # fmt: skip
    return {"tiny": tiny, "small": small, "heldout": heldout, "long2": long2, "full": full}[size]


# --- building a conversation --------------------------------------------------------------------


@dataclass
class Placed:
    start: float  # s
    speaker: int
    clip: Clip


def plan_conversation(
    cond: Condition, voices: list[Voice], rng: np.random.Generator
) -> list[Placed]:
    """Turns laid on a timeline. Each speaker has a talkativeness (Dirichlet); everybody speaks in
    the first round; a turn is a backchannel or one to several phrases; the next turn starts
    before the previous one ends while the overlap share so far is under the target."""
    n = len(voices)
    weights = rng.dirichlet(np.full(n, 3.0))
    frames = int(cond.seconds / FRAME) + 1
    active = np.zeros((n, frames), np.int8)
    placed: list[Placed] = []

    def put(start: float, speaker: int, clip: Clip) -> None:
        placed.append(Placed(start, speaker, clip))
        for a, b in clip.regions:
            active[speaker, int((start + a) / FRAME) : int((start + b) / FRAME)] = 1

    def overlap_so_far() -> float:
        count = active.sum(axis=0)
        speech = np.count_nonzero(count)
        return np.count_nonzero(count > 1) / speech if speech else 0.0

    def turn(speaker: int, length: float) -> Clip:
        voice, parts, regions, at = voices[speaker], [], [], 0.0
        while at < length:
            clip = voice.phrases[rng.integers(len(voice.phrases))]
            if parts:
                pause = np.zeros(int(rng.uniform(0.15, 0.6) * RATE), np.float32)
                parts.append(pause)
                at += pause.size / RATE
            parts.append(clip.audio)
            regions += [(at + a, at + b) for a, b in clip.regions]
            at += clip.seconds
        return Clip(np.concatenate(parts), regions)

    previous, prev_start, prev_end = -1, 0.0, 0.5
    while True:
        first_round = len(placed) < n
        if first_round:
            speaker = len(placed)
        else:
            p = weights.copy()
            if previous >= 0 and n > 1:
                p[previous] = 0
            speaker = int(rng.choice(n, p=p / p.sum()))
        want_overlap = n > 1 and overlap_so_far() < cond.overlap_share
        if not first_round and rng.uniform() < cond.backchannel_share:
            clip = voices[speaker].backchannels[rng.integers(len(voices[speaker].backchannels))]
            if want_overlap and prev_end - prev_start > 1.5:
                # said while the other one talks: the previous speaker goes on
                start = rng.uniform(
                    prev_start + 0.3, max(prev_start + 0.3, prev_end - clip.seconds)
                )
                if start + clip.seconds < cond.seconds:
                    put(start, speaker, clip)
                continue
            length_clip = clip
        else:
            length = float(np.clip(rng.lognormal(np.log(cond.turn_median), 0.8), 0.8, 40.0))
            length_clip = turn(speaker, length)
        if want_overlap and placed:
            start = prev_end - rng.uniform(0.3, max(0.31, min(2.5, 0.5 * (prev_end - prev_start))))
        else:
            gap = rng.uniform(1.2, 3.0) if rng.uniform() < 0.1 else rng.uniform(0.05, 0.9)
            start = prev_end + gap
        start = max(start, 0.1)
        if start + length_clip.seconds > cond.seconds - 0.3:
            break
        put(start, speaker, length_clip)
        previous, prev_start, prev_end = speaker, start, max(prev_end, start + length_clip.seconds)
    return placed


def impulse_response(rt60: float, distance: float, rng: np.random.Generator) -> np.ndarray:
    """Direct sound (1/distance) plus an exponentially decaying noise tail of RT60 `rt60` whose
    energy does not depend on distance: 3 dB direct-to-reverberant ratio at 1 m."""
    direct = 1.0 / max(distance, 0.1)
    if rt60 <= 0:
        return np.array([direct], np.float32)
    n = int(1.2 * rt60 * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)  # -60 dB at t = rt60
    tail[: int(0.003 * RATE)] = 0  # first reflections after 3 ms
    tail *= np.sqrt(0.5 / np.sum(tail**2))
    tail[0] = direct
    return tail.astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(f[1:] / f[1])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def babble(n: int, pool: list[Voice], rng: np.random.Generator, talkers: int = 12) -> np.ndarray:
    """Several voices at once, continuously: speech noise no one follows."""
    out = np.zeros(n, np.float32)
    for k in range(talkers):
        voice = pool[k % len(pool)]
        at = int(rng.uniform(0, 1.0) * RATE)
        while at < n:
            clip = voice.phrases[rng.integers(len(voice.phrases))].audio
            clip = clip / (np.sqrt(np.mean(clip**2)) + 1e-9)
            take = min(clip.size, n - at)
            out[at : at + take] += clip[:take]
            at += take + int(rng.uniform(0.05, 0.4) * RATE)
    return out


def render(
    cond: Condition, voices: list[Voice], placed: list[Placed], pool: list[Voice],
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """Each speaker's track at its own level and distance through the room, summed, plus noise."""
    from scipy.signal import oaconvolve

    n = int(cond.seconds * RATE)
    levels = rng.uniform(-3, 3, len(voices))  # dB, per speaker
    distances = np.linspace(1.0, cond.far_m, len(voices))[rng.permutation(len(voices))]
    mix = np.zeros(n, np.float32)
    speech = np.zeros(n, bool)
    for s in range(len(voices)):
        track = np.zeros(n, np.float32)
        for p in (p for p in placed if p.speaker == s):
            clip = p.clip.audio
            rms = np.sqrt(np.mean(clip**2)) + 1e-9
            gain = 10 ** ((-26 + levels[s] + rng.uniform(-1, 1)) / 20) / rms
            a = int(p.start * RATE)
            take = min(clip.size, n - a)
            track[a : a + take] += gain * clip[:take]
            for r0, r1 in p.clip.regions:
                speech[a + int(r0 * RATE) : min(n, a + int(r1 * RATE))] = True
        ir = impulse_response(cond.rt60, float(distances[s]), rng)
        mix += oaconvolve(track, ir)[:n].astype(np.float32) if ir.size > 1 else track * ir[0]
    if cond.noise != "none" and cond.snr_db is not None:
        if cond.noise == "white":
            noise = rng.standard_normal(n)
        elif cond.noise == "pink":
            noise = pink(n, rng)
        elif cond.noise == "babble":
            noise = babble(n, pool, rng)
        else:
            raise ValueError(f"unknown noise {cond.noise!r}")
        power = np.mean(mix[speech] ** 2) if speech.any() else np.mean(mix**2)
        noise = noise * np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (cond.snr_db / 10))
        mix = mix + noise.astype(np.float32)
    mix *= 0.9 / max(float(np.max(np.abs(mix))), 1e-9)
    return mix, {"distances_m": [round(float(d), 2) for d in distances],
                 "levels_db": [round(float(v), 1) for v in levels]}  # fmt: skip


def reference_of(
    placed: list[Placed], labels: list[str], seconds: float
) -> list[tuple[float, float, str]]:
    """Each speaker's speech regions, merged where they touch, cut to the recording."""
    from pyannote.core import Annotation, Segment

    ref = Annotation()
    for p in placed:
        for a, b in p.clip.regions:
            ref[Segment(p.start + a, min(p.start + b, seconds))] = labels[p.speaker]
    ref = ref.support()
    return [(s.start, s.end, label) for s, _, label in ref.itertracks(yield_label=True)]


def tiled_sample(seconds: float) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    audio = sample_audio()
    period = audio.size / RATE
    reps = int(np.ceil(seconds / period))
    out = np.tile(audio, reps)[: int(seconds * RATE)]
    turns = [(a + k * period, min(b + k * period, seconds), s)
             for k in range(reps) for a, b, s in sample_reference() if a + k * period < seconds]  # fmt: skip
    return out, turns


def overlap_share(turns: list[tuple[float, float, str]], seconds: float) -> float:
    frames = int(seconds / FRAME) + 1
    count = np.zeros(frames, np.int16)
    for a, b, _ in turns:
        count[int(a / FRAME) : int(b / FRAME)] += 1
    speech = np.count_nonzero(count)
    return np.count_nonzero(count > 1) / speech if speech else 0.0


def write_rttm(path: Path, uri: str, turns: list[tuple[float, float, str]]) -> None:
    with path.open("w") as f:
        for a, b, s in sorted(turns):
            f.write(f"SPEAKER {uri} 1 {a:.3f} {b - a:.3f} <NA> <NA> {s} <NA> <NA>\n")


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def generate(args: argparse.Namespace) -> None:
    import soundfile

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in conditions(args.size) if not args.only or c.name in args.only]
    voices = Voices(args.seed)
    manifest = []
    for k, cond in enumerate(chosen):
        started = time.perf_counter()
        rng = np.random.default_rng([args.seed, k, *cond.name.encode()])
        if cond.tile:
            audio, turns = tiled_sample(cond.seconds)
            sources = [{"label": s, "voice": f"real:{s}", "kind": "real",
                        "about": "sample.wav as recorded, tiled"} for s in sorted({t[2] for t in turns})]  # fmt: skip
            room: dict[str, Any] = {}
        else:
            cast = [voices[v] for v in cond.voices]
            labels = [f"S{i + 1}_{v.name.replace(':', '-')}" for i, v in enumerate(cast)]
            placed = plan_conversation(cond, cast, rng)
            # babble from voices not in this conversation (synthetic, to keep the real ones apart)
            pool = [voices[v] for v in SYNTHETIC if f"espeak:{v}" not in {c.name for c in cast}]
            audio, room = render(cond, cast, placed, pool if cond.noise == "babble" else [], rng)
            turns = reference_of(placed, labels, cond.seconds)
            sources = [{"label": lab, "voice": v.name, "kind": v.kind, "about": v.about,
                        "speech_s": round(sum(b - a for a, b, s in turns if s == lab), 1)}
                       for lab, v in zip(labels, cast, strict=True)]  # fmt: skip
        soundfile.write(out / f"{cond.name}.wav", audio, RATE, subtype="PCM_16")
        write_rttm(out / f"{cond.name}.rttm", cond.name, turns)
        entry = {
            "name": cond.name, "group": cond.group, "wav": f"{cond.name}.wav",
            "rttm": f"{cond.name}.rttm", "seconds": round(audio.size / RATE, 3),
            "speakers": len({t[2] for t in turns}),
            "overlap_share": round(overlap_share(turns, cond.seconds), 4),
            "overlap_target": cond.overlap_share, "backchannel_share": cond.backchannel_share,
            "rt60": cond.rt60, "far_m": cond.far_m, "snr_db": cond.snr_db, "noise": cond.noise,
            "tile": cond.tile, "sources": sources, **room,
        }  # fmt: skip
        manifest.append(entry)
        print(f"{cond.name}: {entry['seconds']:.0f} s, {entry['speakers']} speakers, overlap "
              f"{100 * entry['overlap_share']:.1f} % ({time.perf_counter() - started:.1f} s)",
              file=sys.stderr)  # fmt: skip
    (out / "manifest.json").write_text(
        json.dumps({"size": args.size, "seed": args.seed, "recordings": manifest}, indent=1)
    )
    print(f"wrote {len(manifest)} recordings to {out}", file=sys.stderr)


# --- evaluation ----------------------------------------------------------------------------------


def load(model_dir: Path, cache: Any = None) -> contextlib.AbstractContextManager[Any]:
    """The service's offline diarizer, as `with load(dir) as diarizer:`. The one place that knows
    how the app builds it."""
    from app.pipeline.diarize import load_diarizer
    from app.pipeline.models import ModelCache
    from app.settings import Settings

    settings = Settings(
        _env_file=None, model_dir=model_dir, device="cpu", compute_type="int8",
        hub_allowed=False, diarizer="offline",
    )  # fmt: skip
    return load_diarizer(cache=cache or ModelCache(), settings=settings)


def diarize(
    diarizer: Any, audio: np.ndarray, num_speakers: int | None
) -> list[tuple[float, float, str]]:
    """(start, end, speaker) turns from the service's diarizer. The one place that calls it."""
    turns = diarizer.diarize(audio, num_speakers=num_speakers).turns
    return [(t["start"], t["end"], t["speaker"]) for t in turns]


def scores(
    reference: list[tuple[float, float, str]], hypothesis: list[tuple[float, float, str]],
    seconds: float,
) -> dict[str, float]:  # fmt: skip
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for a, b, s in reference:
        ref[Segment(a, b)] = s
    for a, b, s in hypothesis:
        hyp[Segment(a, b)] = s
    uem = Timeline([Segment(0, seconds)])
    out = {}
    for collar in (0.25, 0.0):
        parts = DiarizationErrorRate(collar=collar)(ref, hyp, uem=uem, detailed=True)
        total = parts["total"] or 1.0
        key = f"c{collar:g}"
        out[f"der_{key}"] = parts["diarization error rate"]
        out[f"miss_{key}"] = parts["missed detection"] / total
        out[f"fa_{key}"] = parts["false alarm"] / total
        out[f"conf_{key}"] = parts["confusion"] / total
    return out


def machine() -> str:
    import torch

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load1, _, _ = os.getloadavg()
    import app

    root = Path(app.__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    from importlib import metadata

    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, load average {load1:.2f} at start, nice {os.nice(0)}; pyannote.audio "
        f"{metadata.version('pyannote.audio')}; code measured: {root} at {commit}"
    )


def table(head: list[str], rows: list[list[Any]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def evaluate(args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    manifest = json.loads((args.devset / "manifest.json").read_text())
    recordings = manifest["recordings"]
    if args.only:  # in the order given
        by_name = {r["name"]: r for r in recordings}
        recordings = [by_name[name] for name in args.only if name in by_name]
    started = time.perf_counter()
    with load(args.model_dir) as diarizer:
        results = evaluate_with(diarizer, args, manifest, recordings, started)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def evaluate_with(
    diarizer: Any, args: argparse.Namespace, manifest: dict, recordings: list[dict],
    started: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """Diarize each recording (count given, then not) and print the tables; the rows."""
    import soundfile

    if args.fix:
        from importlib import import_module

        fix = getattr(import_module(args.fix_module), args.fix)
        diarizer = fix(diarizer)
    print(f"# Diarization dev set ({manifest['size']}, seed {manifest['seed']}): "
          f"{getattr(diarizer, 'name', '?')}{' + ' + args.fix if args.fix else ''}\n")  # fmt: skip
    print(f"Machine: {machine()}. Model load {time.perf_counter() - started:.1f} s.\n")
    print("DER from pyannote.metrics over the whole file (collar = total forgiven width around "
          "each reference boundary); miss/FA/confusion at collar 0.25. Seconds and DER are "
          f"medians of {args.repeat} run(s).\n")  # fmt: skip
    results, groups = [], {}
    for rec in recordings:
        audio, rate = soundfile.read(args.devset / rec["wav"], dtype="float32")
        assert rate == RATE
        reference = read_rttm(args.devset / rec["rttm"])
        for given in (rec["speakers"], None) if not args.unknown_only else (None,):
            runs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):  # pyannote prints clustering notes
                    hyp = diarize(diarizer, audio, given)
                runs.append((time.perf_counter() - t0, hyp))
            took = statistics.median(s for s, _ in runs)
            score = [scores(reference, h, rec["seconds"]) for _, h in runs]
            med = {k: statistics.median(s[k] for s in score) for k in score[0]}
            found = len({s for _, _, s in runs[-1][1]})
            row = {"name": rec["name"], "group": rec["group"], "seconds": rec["seconds"],
                   "speakers": rec["speakers"], "given": given is not None, "found": found,
                   "took_s": took, "rtf": took / rec["seconds"], **med}  # fmt: skip
            results.append(row)
            groups.setdefault(rec["group"], []).append((rec, row))
            print(f"  {rec['name']} count {'given' if given else 'unknown'}: found {found}/"
                  f"{rec['speakers']}, DER {100 * med['der_c0.25']:.1f} %, {took:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    head = ["recording", "audio s", "overlap %", "rt60 / SNR", "count", "found / true",
            "DER c0.25 %", "DER c0 %", "miss / FA / conf %", "seconds", "RTF"]  # fmt: skip
    for group, rows in groups.items():
        print(f"## {group}\n")
        table(head, [[
            r["name"], f"{r['seconds']:.0f}", f"{100 * rec['overlap_share']:.1f}",
            f"{rec['rt60'] or '-'} / {rec['snr_db'] if rec['snr_db'] is not None else '-'}"
            + (f" {rec['noise']}" if rec["noise"] != "none" else ""),
            "given" if r["given"] else "unknown", f"{r['found']} / {r['speakers']}",
            f"{100 * r['der_c0.25']:.1f}", f"{100 * r['der_c0']:.1f}",
            f"{100 * r['miss_c0.25']:.1f} / {100 * r['fa_c0.25']:.1f} / {100 * r['conf_c0.25']:.1f}",
            f"{r['took_s']:.1f}", f"{r['rtf']:.3f}",
        ] for rec, r in rows])  # fmt: skip
    unknown = [r for r in results if not r["given"]]
    given = [r for r in results if r["given"]]
    if unknown:
        right = sum(r["found"] == r["speakers"] for r in unknown)
        print(f"**Count unknown: right on {right} of {len(unknown)} recordings; median DER (c0.25) "
              f"{100 * statistics.median(r['der_c0.25'] for r in unknown):.1f} %.**\n")  # fmt: skip
    if given:
        print(f"**Count given: median DER (c0.25) "
              f"{100 * statistics.median(r['der_c0.25'] for r in given):.1f} %.**\n")  # fmt: skip
    print(f"Diarization time {sum(r['took_s'] for r in results) * args.repeat:.0f} s; total "
          f"{time.perf_counter() - started:.0f} s.")  # fmt: skip
    return results


def voice_distances(args: argparse.Namespace) -> None:
    """Cosine similarity of Resemblyzer embeddings of each voice's speech (first 8 phrases)."""
    warnings.filterwarnings("ignore")
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)
    voices = Voices(args.seed)
    keys = ["A", "B", *(f"derived:{d}" for d in DERIVED), *SYNTHETIC]
    emb = {}
    for key in keys:
        v = voices[key]
        speech = np.concatenate([c.audio for c in v.phrases[:8]])
        emb[key] = encoder.embed_utterance(speech)
        print(f"{v.name}: {v.about}", file=sys.stderr)
    print("| | " + " | ".join(keys) + " |")
    print("|---|" + "--:|" * len(keys))
    for a in keys:
        print(f"| {a} | " + " | ".join(f"{float(emb[a] @ emb[b]):.2f}" for b in keys) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write recordings, RTTMs and manifest.json")
    gen.add_argument("--size", choices=SIZES, default="small")
    gen.add_argument("--out", type=Path, default=DEFAULT_OUT)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--only", nargs="*", help="condition names to generate")
    ev = sub.add_parser("eval", help="diarize every recording, print markdown tables")
    ev.add_argument("--devset", type=Path, default=DEFAULT_OUT)
    ev.add_argument("--only", nargs="*", help="recording names to evaluate")
    ev.add_argument("--repeat", type=int, default=1)
    ev.add_argument("--unknown-only", action="store_true", help="only with the count not given")
    ev.add_argument(
        "--model-dir", type=Path, default=Path(__file__).resolve().parent.parent / "models"
    )
    ev.add_argument("--fix", help="name of a function that wraps the diarizer (a prototype)")
    ev.add_argument(
        "--fix-module", default="devset_fix", help="module holding --fix (on PYTHONPATH)"
    )
    ev.add_argument("--json", type=Path, help="also write the rows as JSON")
    vo = sub.add_parser("voices", help="cosine similarity between the voices' embeddings")
    vo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    {"generate": generate, "eval": evaluate, "voices": voice_distances}[args.command](args)


if __name__ == "__main__":
    main()
