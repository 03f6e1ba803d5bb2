"""Result types, with whisperX's field names so results are stored and served without mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

SAMPLE_RATE = 16_000
"""Every stage works on 16 kHz mono float32 audio in [-1, 1]."""

Progress = Callable[[float], None]
"""Called with the percentage (0-100) of the current stage done."""


class Word(TypedDict):
    word: str
    start: NotRequired[float]  # seconds; absent when no aligner could time the word
    end: NotRequired[float]
    score: NotRequired[float]
    speaker: NotRequired[str]


class Segment(TypedDict):
    start: float
    end: float
    text: str
    avg_logprob: NotRequired[float]
    temperature: NotRequired[float]  # the fallback's, where it decoded the window again
    no_speech_prob: NotRequired[float]
    words: NotRequired[list[Word]]
    chars: NotRequired[list[dict[str, Any]]]
    speaker: NotRequired[str]


class Transcript(TypedDict):
    segments: list[Segment]
    language: str
    language_probability: NotRequired[float]  # only when the language was detected
    language_candidates: NotRequired[
        list[dict[str, Any]]
    ]  # [{language, probability}], most likely first


class AlignedTranscript(TypedDict):
    segments: list[Segment]
    word_segments: list[Word]
    language: NotRequired[str]


class SpeakerTurn(TypedDict):
    label: str  # the diarizer's own track label
    speaker: str  # SPEAKER_00, SPEAKER_01, … in order of first appearance
    start: float
    end: float
