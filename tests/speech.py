"""Speech made for tests with espeak-ng (real synthesis, known text), and reference helpers."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import re
import struct
import subprocess
import threading
from pathlib import Path

import jiwer
import numpy as np


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


AUDIBLE = 0.01
"""Sample magnitude (full scale 1) above which synthetic speech counts as sound, not silence."""

_ESPEAK_LOCK = threading.Lock()  # the library synthesises one text at a time, into one buffer


class _EspeakEvent(ctypes.Structure):
    # espeak_EVENT of espeak-ng's speak_lib.h; `id` is a union whose phoneme member is char[8]
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


class _EspeakVoice(ctypes.Structure):
    # espeak_VOICE: a voice chosen by language (`en-gb`), as the espeak-ng command's -v does
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]

    def __init__(self, language: str) -> None:
        super().__init__(languages=language.encode())


_WORD_EVENT, _PHONEME_EVENT = 1, 7
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


@functools.cache
def _espeak() -> tuple[ctypes.CDLL, int, dict, object]:
    """espeak-ng's library, initialised once: synchronous output with phoneme events."""
    lib = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
    rate = lib.espeak_Initialize(2, 0, None, 1)  # AUDIO_OUTPUT_SYNCHRONOUS, PHONEME_EVENTS
    if rate <= 0:
        raise RuntimeError("espeak-ng's library could not be initialised")
    out: dict = {"audio": [], "events": []}

    @_CALLBACK
    def collect(wav, count, events):  # type: ignore[no-untyped-def]
        if count > 0:
            out["audio"].append(np.ctypeslib.as_array(wav, (count,)).copy())
        i = 0
        while events[i].type != 0:  # the list ends with espeakEVENT_LIST_TERMINATED
            e = events[i]
            out["events"].append(
                (e.type, e.text_position, e.length, e.sample, e.id.decode("latin-1"))
            )
            i += 1
        return 0

    lib.espeak_SetSynthCallback(collect)
    return lib, rate, out, collect  # the callback object must outlive every synthesis


def _synthesise(text: str, voice: str, speed: int) -> tuple[np.ndarray, list[tuple]]:
    """16 kHz float32 audio of `text` from espeak-ng, with its events as (type, 1-based character
    position in `text`, length in characters, seconds, phoneme)."""
    from scipy.signal import resample_poly

    with _ESPEAK_LOCK:
        lib, rate, out, _ = _espeak()
        out["audio"].clear()
        out["events"].clear()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0 and (
            "+" in voice or lib.espeak_SetVoiceByProperties(ctypes.byref(_EspeakVoice(voice))) != 0
        ):
            raise ValueError(f"espeak-ng has no voice '{voice}'")
        lib.espeak_SetParameter(1, speed, 0)  # espeakRATE, words per minute
        data = text.encode()
        # position 0 by character, no end, espeakCHARS_UTF8
        if lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not synthesise {text!r}")
        samples = np.concatenate(out["audio"] or [np.zeros(0, np.int16)])
        events = [(*event[:3], event[3] / rate, event[4]) for event in out["events"]]
    audio = resample_poly(samples.astype(np.float32) / 32768, 320, 441)  # 22050 -> 16000 Hz
    return audio.astype(np.float32), events


def espeak_words(
    text: str, voice: str = "en-us", speed: int = 160
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """`text` said in one go by espeak-ng (continuous speech), with each whitespace-separated
    word's exact (word, start, end) in seconds from the synthesiser's own events: a word starts at
    its first sound from its first phoneme on and ends at its last sound before what follows it
    (the next word's first phoneme or a pause). Words that espeak-ng says as one with a neighbour
    ("from the") get NaN times: their shared phonemes cannot be split between them."""
    audio, events = _synthesise(text, voice, speed)
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    heard = [0] * len(spans)  # word events that start inside each token
    phonemes: list[tuple[float, int]] = []  # (seconds, token index or -1 for a pause)
    word = -1
    for kind, position, length, at, name in events:
        if kind == _WORD_EVENT and length > 0:  # an empty one marks the end of a clause
            word = max(i for i, (a, _) in enumerate(spans) if a <= max(position - 1, 0))
            heard[word] += 1
        elif kind == _PHONEME_EVENT:
            phonemes.append((at, -1 if name.startswith("_") or word < 0 else word))
    sound = np.abs(audio) > AUDIBLE
    truth = []
    for i, (a, b) in enumerate(spans):
        token = text[a:b]
        own = [k for k, (_, w) in enumerate(phonemes) if w == i]
        joined = not heard[i] or (i + 1 < len(spans) and not heard[i + 1])
        if joined or not own:
            truth.append((token, math.nan, math.nan))
            continue
        first = phonemes[own[0]][0]
        stop = phonemes[own[-1] + 1][0] if own[-1] + 1 < len(phonemes) else audio.size / 16000
        lo, hi = round(first * 16000), round(stop * 16000)
        loud = np.flatnonzero(sound[lo:hi])
        if loud.size == 0:
            truth.append((token, math.nan, math.nan))
            continue
        truth.append((token, (lo + loud[0]) / 16000, (lo + loud[-1] + 1) / 16000))
    return audio, truth


def espeak_word_by_word(
    words: list[str],
    voice: str = "en-us",
    speed: int = 160,
    gaps: tuple[float, float] = (0.03, 0.3),
    no_gap_share: float = 0.25,
    seed: int = 0,
    lead: float = 0.3,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Words synthesised one at a time, trimmed to their sound and joined with random pauses
    (uniform in `gaps` seconds; none for a `no_gap_share` of them): the audio and each word's
    exact (word, start, end) in seconds."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead * 16000), np.float32)]
    truth, at = [], parts[0].size
    for word in words:
        audio, _ = _synthesise(word, voice, speed)
        loud = np.flatnonzero(np.abs(audio) > AUDIBLE)
        audio = audio[loud[0] : loud[-1] + 1]
        gap = 0 if rng.uniform() < no_gap_share else int(rng.uniform(*gaps) * 16000)
        truth.append((word, at / 16000, (at + audio.size) / 16000))
        parts += [audio, np.zeros(gap, np.float32)]
        at += audio.size + gap
    parts.append(np.zeros(int(lead * 16000), np.float32))
    return np.concatenate(parts), truth


def empty_wav() -> bytes:
    """A valid 16 kHz mono WAV header with no samples: it probes as audio, decodes to nothing."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    return b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 0)
