"""The stage order of each task type: decode → transcribe → align → diarize → combine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.pipeline.align import load_aligner
from app.pipeline.audio import decode_audio
from app.pipeline.combine import assign_speakers
from app.pipeline.diarize import load_diarizer
from app.pipeline.models import ModelCache
from app.pipeline.options import (
    AlignmentOptions,
    AsrOptions,
    DiarizationOptions,
    ModelOptions,
    TaskParams,
    VadOptions,
)
from app.pipeline.transcribe import transcribe
from app.pipeline.types import SAMPLE_RATE, AlignedTranscript, Progress, SpeakerTurn, Transcript

if TYPE_CHECKING:
    from app.settings import Settings


class Report(Protocol):
    def __call__(self, stage: str, percent: float, **facts: Any) -> None:
        """`percent` of the whole task; facts about the input, e.g. `audio_duration` (s)."""


# Share of the whole task each stage takes, by task type (percent; from CPU timings).
WEIGHTS: dict[str, dict[str, float]] = {
    "full_process": {"transcribing": 50, "aligning": 20, "diarizing": 28, "combining": 2},
    "transcription": {"transcribing": 100},
    "transcription_alignment": {"aligning": 100},
    "diarization": {"diarizing": 100},
    "combine_transcript&diarization": {"combining": 100},
}


def run(
    task_type: str,
    params: TaskParams,
    inputs: dict[str, Any] | None,
    audio_path: Path | None,
    stages: Stages,
) -> tuple[Any, str | None]:
    """The stages of `task_type` in order, decoding first; returns (result, language)."""
    inputs = inputs or {}
    if task_type == "combine_transcript&diarization":
        combined = stages.combine(inputs["aligned_transcript"], inputs["diarization_result"])
        return combined, combined.get("language")
    assert audio_path is not None, f"a {task_type} task has audio"
    stages.report("decoding", 0.0)
    s = stages.settings
    audio = decode_audio(
        audio_path, s.max_audio_seconds, s.decode_timeout_seconds, s.decode_memory_mb
    )
    stages.report("decoding", 0.0, audio_duration=round(audio.size / SAMPLE_RATE, 3))
    # a task stores the option families its type uses (TaskParams)
    if task_type == "transcription_alignment":
        assert params.alignment
        transcript = inputs["transcript"]
        aligned = stages.align(transcript, audio, params.alignment, transcript["language"])
        return aligned, transcript["language"]
    if task_type == "diarization":
        assert params.diarization
        return stages.diarize(audio, params.diarization), None
    model, asr, vad = params.model, params.asr, params.vad
    assert model and asr and vad
    transcript = stages.transcribe(audio, model, asr, vad)
    if task_type == "transcription":
        return transcript, transcript["language"]
    # full_process: unless switched off, align and diarize, and combine the two.
    alignment, diarization = params.alignment, params.diarization
    assert alignment and diarization
    # Translation yields English text: align it with an English aligner, not the source's.
    text_language = "en" if model.task == "translate" else transcript["language"]
    if alignment.align:
        result: dict[str, Any] = dict(stages.align(transcript, audio, alignment, text_language))
    else:
        result = {"segments": transcript["segments"], "word_segments": []}
    if diarization.diarize:
        turns = stages.diarize(audio, diarization)
        result = dict(stages.combine(result, turns))  # type: ignore[arg-type]
    for key in ("language", "language_probability", "language_candidates"):
        if key in transcript:
            result[key] = transcript[key]
    return result, result["language"]


class Stages:
    """Runs the stages of one task, reporting overall progress and timing each stage."""

    def __init__(self, task_type: str, settings: Settings, cache: ModelCache, report: Report):
        self.settings, self.cache, self.report = settings, cache, report
        self._weights = WEIGHTS[task_type]
        self._done = 0.0
        self.info: dict[str, Any] = {"stage_seconds": {}}

    def _stage(self, name: str) -> Progress:
        base, weight = self._done, self._weights.get(name, 0.0)
        self.report(name, base)
        self._done += weight
        return lambda percent: self.report(name, base + weight * min(percent, 100.0) / 100.0)

    def _timed(self, name: str, started: float) -> None:
        self.info["stage_seconds"][name] = round(time.perf_counter() - started, 3)

    def transcribe(
        self, audio: np.ndarray, model: ModelOptions, asr: AsrOptions, vad: VadOptions
    ) -> Transcript:
        progress, started = self._stage("transcribing"), time.perf_counter()
        transcript, info = transcribe(
            audio, model, asr, vad, cache=self.cache, settings=self.settings, progress=progress
        )
        self.info.update(info)
        self._timed("transcribe", started)
        if "language_probability" in info:  # detected, not given: say how sure
            transcript["language_probability"] = info["language_probability"]
            transcript["language_candidates"] = info["language_candidates"]
        return transcript

    def align(
        self, transcript: Transcript, audio: np.ndarray, alignment: AlignmentOptions, language: str
    ) -> AlignedTranscript:
        progress, started = self._stage("aligning"), time.perf_counter()
        with load_aligner(
            language, cache=self.cache, settings=self.settings, align_model=alignment.align_model
        ) as aligner:
            self.info["aligner"] = aligner.name
            options = alignment.model_dump(exclude={"align", "align_model"})
            aligned = aligner.align(transcript, audio, progress=progress, **options)
        aligned["language"] = transcript["language"]
        self._timed("align", started)
        return aligned

    def diarize(self, audio: np.ndarray, diarization: DiarizationOptions) -> list[SpeakerTurn]:
        progress, started = self._stage("diarizing"), time.perf_counter()
        with load_diarizer(cache=self.cache, settings=self.settings) as diarizer:
            self.info["diarizer"] = diarizer.name
            counts = diarization.model_dump(exclude={"diarize"})
            turns = diarizer.diarize(audio, progress=progress, **counts)
        self.info["speakers"] = len({t["speaker"] for t in turns})
        self._timed("diarize", started)
        return turns

    def combine(self, aligned: AlignedTranscript, turns: list[SpeakerTurn]) -> AlignedTranscript:
        self._stage("combining")
        started = time.perf_counter()
        combined = assign_speakers(aligned, turns)
        self._timed("combine", started)
        return combined
