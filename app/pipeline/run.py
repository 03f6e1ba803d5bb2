"""The stage order of each task type: transcribe → align → diarize → combine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from app.pipeline.combine import assign_speakers
from app.pipeline.models import ModelCache
from app.pipeline.types import AlignedTranscript, Progress, SpeakerTurn, Transcript

if TYPE_CHECKING:
    from app.settings import Settings

Report = Callable[[str, float], None]
"""Called with (stage, percent of the whole task)."""

# Share of the whole task each stage takes, by task type (percent; from CPU timings).
WEIGHTS: dict[str, dict[str, float]] = {
    "full_process": {"transcribing": 50, "aligning": 20, "diarizing": 28, "combining": 2},
    "transcription": {"transcribing": 100},
    "transcription_alignment": {"aligning": 100},
    "diarization": {"diarizing": 100},
    "combine_transcript&diarization": {"combining": 100},
}


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
        self, audio: np.ndarray, model: dict[str, Any], asr: dict[str, Any], vad: dict[str, Any]
    ) -> Transcript:
        from app.pipeline.transcribe import transcribe

        progress, started = self._stage("transcribing"), time.perf_counter()
        transcript, info = transcribe(
            audio,
            cache=self.cache,
            settings=self.settings,
            asr_options=asr,
            progress=progress,
            vad_onset=vad.get("vad_onset", 0.5),
            vad_offset=vad.get("vad_offset", 0.363),
            **model,
        )
        self.info.update(info)
        self._timed("transcribe", started)
        if "language_probability" in info:  # detected, not given: say how sure
            transcript["language_probability"] = info["language_probability"]
            transcript["language_candidates"] = info["language_candidates"]
        return transcript

    def align(
        self, transcript: Transcript, audio: np.ndarray, alignment: dict[str, Any], language: str
    ) -> AlignedTranscript:
        from app.pipeline.align import load_aligner

        progress, started = self._stage("aligning"), time.perf_counter()
        aligner = load_aligner(
            language,
            cache=self.cache,
            settings=self.settings,
            align_model=alignment.get("align_model"),
        )
        self.info["aligner"] = aligner.name
        aligned = aligner.align(
            transcript,
            audio,
            progress=progress,
            interpolate_method=alignment.get("interpolate_method", "nearest"),
            return_char_alignments=alignment.get("return_char_alignments", False),
        )
        aligned["language"] = transcript["language"]
        self._timed("align", started)
        return aligned

    def diarize(self, audio: np.ndarray, diarization: dict[str, Any]) -> list[SpeakerTurn]:
        from app.pipeline.diarize import load_diarizer

        progress, started = self._stage("diarizing"), time.perf_counter()
        diarizer = load_diarizer(cache=self.cache, settings=self.settings)
        self.info["diarizer"] = diarizer.name
        turns = diarizer.diarize(
            audio,
            progress=progress,
            num_speakers=diarization.get("num_speakers"),
            min_speakers=diarization.get("min_speakers"),
            max_speakers=diarization.get("max_speakers"),
        )
        self.info["speakers"] = len({t["speaker"] for t in turns})
        self._timed("diarize", started)
        return turns

    def combine(self, aligned: AlignedTranscript, turns: list[SpeakerTurn]) -> AlignedTranscript:
        self._stage("combining")
        started = time.perf_counter()
        combined = assign_speakers(aligned, turns)
        self._timed("combine", started)
        return combined


def full_process(stages: Stages, audio: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """Transcribe, then (unless switched off) align and diarize, and combine the two."""
    transcript = stages.transcribe(audio, params["model"], params["asr"], params["vad"])
    alignment, diarization = params["alignment"], params["diarization"]
    # Translation yields English text: align it with an English aligner, not the source's.
    text_language = "en" if params["model"].get("task") == "translate" else transcript["language"]
    if alignment.get("align", True):
        result: dict[str, Any] = dict(stages.align(transcript, audio, alignment, text_language))
    else:
        result = {"segments": transcript["segments"], "word_segments": []}
    if diarization.get("diarize", True):
        turns = stages.diarize(audio, diarization)
        result = dict(stages.combine(result, turns))  # type: ignore[arg-type]
    for key in ("language", "language_probability", "language_candidates"):
        if key in transcript:
            result[key] = transcript[key]
    return result
