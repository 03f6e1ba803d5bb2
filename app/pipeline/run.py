"""The stage order of each task type: decode → transcribe → align → diarize → combine (on a CPU
worker, diarization runs beside transcription and alignment)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.pipeline.align import load_aligner, wav2vec2_source
from app.pipeline.audio import AudioError, decode_audio
from app.pipeline.combine import assign_speakers
from app.pipeline.diarize import Diarization, load_diarizer
from app.pipeline.models import ModelCache
from app.pipeline.options import (
    LANGUAGES,
    AlignmentOptions,
    AsrOptions,
    DiarizationOptions,
    ModelOptions,
    TaskParams,
    VadOptions,
)
from app.pipeline.speakers import name_speakers
from app.pipeline.transcribe import detect_language, load_whisper, transcribe
from app.pipeline.types import SAMPLE_RATE, AlignedTranscript, Progress, SpeakerTurn, Transcript

if TYPE_CHECKING:
    from app.settings import Settings


class Report(Protocol):
    def __call__(self, stage: str, percent: float, **facts: Any) -> None:
        """`percent` of the whole task; facts about the input, e.g. `audio_duration` (s)."""


DIARIZE_BESIDE_SECONDS = 300.0
"""On a CPU worker of two threads or more, diarization of audio up to this long runs beside
transcription and alignment (`Stages.diarizing`). The overlap saves about a second a task
whatever the length, while the memory of both at once grows with it; cold processes, `base`, 2
cores, in turn -> beside: 1 min 6.4 -> 5.8 s (+135 MB), 3 min 15.0 -> 14.1 s (+160 MB), 10 min
42.9 -> 42.4 s (+180 MB), 30 min 125.2 -> 124.2 s (+460 MB). `bench/pipeline.py` sets 0 to time
it in turn."""

# Share of the whole task each stage takes, by task type (percent; from CPU timings).
WEIGHTS: dict[str, dict[str, float]] = {
    "full_process": {"transcribing": 50, "aligning": 20, "diarizing": 28, "combining": 2},
    "transcription": {"transcribing": 100},
    "transcription_alignment": {"aligning": 100},
    "diarization": {"diarizing": 100},
    "combine_transcript&diarization": {"combining": 100},
    "language_detection": {"detecting": 100},
    "speaker_enrolment": {"enrolling": 100},
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
    s, started = stages.settings, time.perf_counter()
    audio = decode_audio(
        audio_path, s.max_audio_seconds, s.decode_timeout_seconds, s.decode_memory_mb
    )
    stages._timed("decode", started)
    stages.report("decoding", 0.0, audio_duration=round(audio.size / SAMPLE_RATE, 3))
    if audio.size < SAMPLE_RATE // 10:  # a cut-off file decodes to a few frames, if any
        raise AudioError(
            f"The audio is too short to process: {audio.size / SAMPLE_RATE:.2f} s of sound "
            "could be decoded (the file may be cut off or damaged)."
        )
    # a task stores the option families its type uses (TaskParams)
    if task_type == "transcription_alignment":
        assert params.alignment
        transcript = inputs["transcript"]
        aligned = stages.align(transcript, audio, params.alignment, transcript["language"])
        return aligned, transcript["language"]
    if task_type == "diarization":
        assert params.diarization
        # the result stays a list of turns (what /service/combine takes); embeddings go to info
        found = stages.diarize(audio, params.diarization, inputs.get("speaker_profiles"))
        if params.diarization.return_speaker_embeddings:
            stages.info["speaker_embeddings"] = found.embeddings
        return found.turns, None
    if task_type == "speaker_enrolment":
        return stages.enrol(audio, inputs.get("start"), inputs.get("end")), None
    if task_type == "language_detection":
        assert params.model
        detected = stages.detect_language(audio, params.model)
        return detected, detected["language_code"]
    model, asr, vad = params.model, params.asr, params.vad
    assert model and asr and vad
    if task_type == "transcription":
        transcript = stages.transcribe(audio, model, asr, vad)
        return transcript, transcript["language"]
    # full_process: unless switched off, align and diarize, and combine the two.
    alignment, diarization = params.alignment, params.diarization
    assert alignment and diarization
    if alignment.align and alignment.align_model:  # an unusable one fails now, not after Whisper
        wav2vec2_source("", s, alignment.align_model)
    with stages.diarizing(audio, diarization, inputs.get("speaker_profiles")) as diarized:
        transcript = stages.transcribe(audio, model, asr, vad)
        # Translation yields English text: align it with an English aligner, not the source's.
        text_language = "en" if model.task == "translate" else transcript["language"]
        if alignment.align:
            result: dict[str, Any] = dict(stages.align(transcript, audio, alignment, text_language))
        else:
            result = {"segments": transcript["segments"], "word_segments": []}
        if diarization.diarize:
            found = diarized()
            result = dict(stages.combine(result, found.turns))  # type: ignore[arg-type]
            if diarization.return_speaker_embeddings:
                result["speaker_embeddings"] = found.embeddings
    for key in ("language", "language_probability", "language_candidates"):
        if key in transcript:
            result[key] = transcript[key]
    return result, result["language"]


class Stages:
    """Runs the stages of one task, reporting overall progress and timing each stage."""

    def __init__(self, task_type: str, settings: Settings, cache: ModelCache, report: Report):
        self.settings, self.cache, self.report = settings, cache, report
        self._weights = WEIGHTS[task_type]
        self._done = self._at = 0.0
        self.info: dict[str, Any] = {"stage_seconds": {}}

    def _stage(self, name: str) -> Progress:
        base, weight = self._done, self._weights.get(name, 0.0)
        self.report(name, base)
        self._done, self._at = self._done + weight, base

        def progress(percent: float) -> None:
            self._at = base + weight * min(percent, 100.0) / 100.0
            self.report(name, self._at)

        return progress

    def _timed(self, name: str, started: float) -> None:
        self.info["stage_seconds"][name] = round(time.perf_counter() - started, 3)

    def transcribe(
        self, audio: np.ndarray, model: ModelOptions, asr: AsrOptions, vad: VadOptions
    ) -> Transcript:
        progress, started = self._stage("transcribing"), time.perf_counter()
        transcript, info = transcribe(
            audio, model, asr, vad, cache=self.cache, settings=self.settings, progress=progress,
            heard=lambda text: self.report("transcribing", self._at, partial_text=text),
        )  # fmt: skip
        self.info["stage_seconds"]["vad"] = info.pop("vad_seconds")
        self.info.update(info)
        self._timed("transcribe", started)
        if "language_probability" in info:  # detected, not given: say how sure
            transcript["language_probability"] = info["language_probability"]
            transcript["language_candidates"] = info["language_candidates"]
        return transcript

    def detect_language(self, audio: np.ndarray, model: ModelOptions) -> dict[str, Any]:
        """The language of the first 30 s of speech, as whisper-asr-webservice's /detect-language
        gives it."""
        self._stage("detecting")
        started, s = time.perf_counter(), self.settings
        name = model.model or s.whisper_model
        device, compute_type = model.device or s.device, model.compute_type or s.compute_type
        assert device and compute_type, "a worker's settings are resolved"
        with load_whisper(self.cache, s, name, device, compute_type) as (pipeline, source):
            if not pipeline.model.model.is_multilingual:
                raise ValueError(f"Model '{name}' is English-only: it cannot tell languages apart.")
            ((code, probability),) = detect_language(pipeline.model, audio, top=1)
        self.info.update(model=name, model_source=source, device=device)
        self._timed("detect_language", started)
        return {
            "detected_language": LANGUAGES.get(code, code),
            "language_code": code,
            "confidence": probability,
        }

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

    def diarize(
        self,
        audio: np.ndarray,
        diarization: DiarizationOptions,
        profiles: list[dict[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> Diarization:
        """Who spoke when; voices that match one of `profiles` (the caller's speaker profiles)
        are named after it, unless `identify_speakers` is off."""
        progress, started = progress or self._stage("diarizing"), time.perf_counter()
        with load_diarizer(cache=self.cache, settings=self.settings) as diarizer:
            self.info["diarizer"] = diarizer.name
            counts = diarization.model_dump(
                include={"num_speakers", "min_speakers", "max_speakers"}
            )
            found = diarizer.diarize(audio, progress=progress, **counts)
            if profiles and diarization.identify_speakers:
                turns, embeddings, record = name_speakers(
                    found.turns,
                    found.embeddings,
                    profiles,
                    diarizer.embedding_model,
                )
                found = Diarization(turns, embeddings)
                self.info.update(record)
        self.info["speakers"] = len({t["speaker"] for t in found.turns})
        self._timed("diarize", started)
        return found

    @contextmanager
    def diarizing(
        self,
        audio: np.ndarray,
        diarization: DiarizationOptions,
        profiles: list[dict[str, Any]] | None,
    ) -> Iterator[Callable[[], Diarization]]:
        """Gives what returns the diarization of `audio`. On CPU it begins at once, in a thread
        beside transcription and alignment, on one torch thread: those stages leave cores
        idle (pocketsphinx aligns on one, a batch's lanes end unevenly); on audio up to
        DIARIZE_BESIDE_SECONDS. 3.1 minutes, 2 cores, warm, interleaved (`bench/pipeline.py`):
        14.0 -> 12.6 s, the same result. One thread, whatever the cores: a second OpenMP team
        (torch's, in this thread) puts more OpenMP threads than cores in the process, and then
        libgomp stops spinning at its barriers, which made every torch op here 3x slower (the
        diarizer at 2 threads, 3 minutes: 3.2 s, and 10.1 s with a 2-thread team in another
        thread). Leaving the block stops it."""
        threads = self.settings.cpu_threads or os.cpu_count() or 1
        cpu = self.settings.device == "cpu" and threads >= 2
        short = audio.size <= DIARIZE_BESIDE_SECONDS * SAMPLE_RATE
        if not (diarization.diarize and cpu and short):
            yield lambda: self.diarize(audio, diarization, profiles)
            return
        import torch

        halt, done = threading.Event(), [0.0]

        def progress(percent: float) -> None:  # the cancel is seen by the task's own thread
            if halt.is_set():
                raise InterruptedError("the task has ended")
            done[0] = percent

        def beside() -> Diarization:
            torch.set_num_threads(1)
            try:
                return self.diarize(audio, diarization, profiles, progress)
            finally:
                torch.set_num_threads(threads)

        pool = ThreadPoolExecutor(1, thread_name_prefix="diarize")
        future = pool.submit(beside)

        def result() -> Diarization:
            report = self._stage("diarizing")
            while True:
                try:
                    return future.result(timeout=0.5)
                except TimeoutError:
                    report(done[0])  # checks for a cancel and the time limit

        try:
            yield result
        finally:
            halt.set()
            pool.shutdown()

    def enrol(self, audio: np.ndarray, start: float | None, end: float | None) -> dict[str, Any]:
        """A speaker profile's voice: the embedding of the speech in [start, end] seconds."""
        progress = self._stage("enrolling")
        clip = audio[
            int((start or 0) * SAMPLE_RATE) : None if end is None else int(end * SAMPLE_RATE)
        ]
        with load_diarizer(cache=self.cache, settings=self.settings) as diarizer:
            embedding, seconds = diarizer.embed(clip)
            progress(100.0)
            return {
                "embedding": embedding,
                "seconds": round(seconds, 2),
                "model": diarizer.embedding_model,
            }

    def combine(self, aligned: AlignedTranscript, turns: list[SpeakerTurn]) -> AlignedTranscript:
        self._stage("combining")
        started = time.perf_counter()
        combined = assign_speakers(aligned, turns)
        self._timed("combine", started)
        return combined


def warm_up(settings: Settings, cache: ModelCache) -> None:
    """Load the default model, an aligner and the diarizer and run each once on a few seconds of
    quiet noise, so that imports, loads and first calls are not paid by the first task."""
    stages = Stages("full_process", settings, cache, lambda *_, **__: None)
    audio = (np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE) * 0.01).astype(np.float32)
    stages.transcribe(audio, ModelOptions(), AsrOptions(), VadOptions())
    transcript: Transcript = {
        "segments": [{"start": 0.5, "end": 3.5, "text": "hello"}],
        "language": "en",
    }
    stages.align(transcript, audio, AlignmentOptions(), "en")
    stages.diarize(audio, DiarizationOptions())
