"""The stage order of a full task: on a CPU worker, diarization runs beside transcription and
alignment. The stages here are stand-ins (the scheduling is ours); the real ones are run by the
integration and e2e tests."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import torch

from app.pipeline import run as pipeline
from app.pipeline.diarize import Diarization
from app.pipeline.options import TaskParams
from app.pipeline.run import Stages, run

PARAMS = TaskParams.model_validate(
    {
        "model": {"language": "en"},
        "asr": {},
        "vad": {},
        "alignment": {"align": False},
        "diarization": {},
    }
)
SEGMENTS = [{"start": 0.5, "end": 2.0, "text": " hello"}]


class Recorded(Stages):
    """Stages that say on which thread each ran; transcription waits for diarization to
    begin, so it passes only when the two run at once."""

    def __init__(self, settings, wait_for_diarization: bool, fail: bool = False) -> None:
        self.reports: list[tuple[str, float, str]] = []
        super().__init__("full_process", settings, None, self._report)  # type: ignore[arg-type]
        self.began, self.stopped = threading.Event(), threading.Event()
        self.wait_for_diarization, self.fail = wait_for_diarization, fail
        self.threads: dict[str, str] = {}

    def _report(self, stage: str, percent: float, **facts) -> None:
        self.reports.append((stage, percent, threading.current_thread().name))

    def transcribe(self, audio, model, asr, vad):
        self.threads["transcribe"] = threading.current_thread().name
        if self.wait_for_diarization:
            assert self.began.wait(10), "diarization did not begin beside transcription"
        if self.fail:
            raise ValueError("the transcriber failed")
        return {"segments": SEGMENTS, "language": "en"}

    def diarize(self, audio, diarization, profiles=None, progress=None):
        self.threads["diarize"] = threading.current_thread().name
        self.torch_threads = torch.get_num_threads()
        self.began.set()
        progress = progress or self._stage("diarizing")
        try:
            for percent in itertools.repeat(50) if self.fail else range(0, 100, 10):
                progress(percent)
                time.sleep(0.01)
        except InterruptedError:
            self.stopped.set()
            raise
        return Diarization([{"start": 0.0, "end": 3.0, "speaker": "SPEAKER_00"}])


@pytest.mark.parametrize("threads", [2, 4])
def test_a_cpu_worker_diarizes_beside_transcription_and_reports_from_the_task_thread(
    settings, sample_wav, threads
):
    stages = Recorded(settings.model_copy(update={"cpu_threads": threads}).for_worker(), True)
    result, _ = run("full_process", PARAMS, None, sample_wav, stages)
    assert result["segments"][0]["speaker"] == "SPEAKER_00"
    task_thread = threading.current_thread().name
    assert stages.threads["transcribe"] == task_thread != stages.threads["diarize"]
    # one, whatever the cores: a second OpenMP team of several threads slows every torch op
    assert stages.torch_threads == 1
    # progress comes from the task's thread only (where a cancel is seen), and never goes back
    assert {thread for *_, thread in stages.reports} == {task_thread}
    assert [stage for stage, *_ in stages.reports][-2:] == ["diarizing", "combining"]
    percents = [percent for _, percent, _ in stages.reports]
    assert percents == sorted(percents)


def test_a_failed_stage_stops_the_diarization_beside_it_before_the_task_ends(settings, sample_wav):
    stages = Recorded(settings.model_copy(update={"cpu_threads": 2}).for_worker(), True, True)
    with pytest.raises(ValueError, match="the transcriber failed"):
        run("full_process", PARAMS, None, sample_wav, stages)
    assert stages.stopped.is_set()


@pytest.mark.parametrize("update", [{"cpu_threads": 1}, {"device": "cuda"}])
def test_one_thread_or_a_gpu_diarizes_after_transcription_in_the_task_thread(
    settings, sample_wav, update
):
    stages = Recorded(settings.model_copy(update=update), False)
    run("full_process", PARAMS, None, sample_wav, stages)
    assert stages.threads["transcribe"] == stages.threads["diarize"]


def test_long_audio_diarizes_after_transcription_in_the_task_thread(
    settings, sample_wav, monkeypatch
):
    """Only audio up to DIARIZE_BESIDE_SECONDS is diarized beside transcription: past them the
    overlap saves no more time and the memory of both at once grows."""
    monkeypatch.setattr(pipeline, "DIARIZE_BESIDE_SECONDS", 29.0)  # sample.wav: 30 s
    stages = Recorded(settings.model_copy(update={"cpu_threads": 2}).for_worker(), False)
    run("full_process", PARAMS, None, sample_wav, stages)
    assert stages.threads["transcribe"] == stages.threads["diarize"]
