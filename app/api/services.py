"""One pipeline stage per request: /service/transcribe, /align, /diarize, /combine."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from app.api.deps import QueueDep, SettingsDep, StoreDep
from app.api.media import clean_name, read_json, save_upload
from app.api.schemas import (
    AlignDep,
    AlignedTranscriptIn,
    AsrDep,
    CallbackDep,
    DiarizationIn,
    DiarizeDep,
    ModelDep,
    Response,
    TranscriptIn,
    VadDep,
)
from app.auth import Owner
from app.errors import ERROR_RESPONSES
from app.pipeline.options import TaskParams
from app.store.models import TaskType
from app.worker.queue import submit

router = APIRouter(prefix="/service", tags=["Speech-2-Text services"], responses=ERROR_RESPONSES)

JsonFile = Annotated[UploadFile, File(description="A .json file.")]
MediaFile = Annotated[UploadFile, File(description="Audio or video file.")]


@router.post("/transcribe", response_model=Response)
def transcribe(
    settings: SettingsDep, store: StoreDep, queue: QueueDep, owner: Owner, model: ModelDep,
    asr: AsrDep, vad: VadDep, file: MediaFile, callback_url: CallbackDep = None,
) -> Response:  # fmt: skip
    """Speech to text only. Result: `{segments: [{start, end, text}], language}`."""
    key, name, duration = save_upload(file, settings)
    params = TaskParams(model=model, asr=asr, vad=vad).stored()
    return Response(identifier=submit(
        store, queue, TaskType.transcription, params, owner=owner, file_name=name, input_key=key,
        callback_url=callback_url, language=model.language, audio_duration=duration,
    ))  # fmt: skip


@router.post("/align", response_model=Response)
def align(
    settings: SettingsDep, store: StoreDep, queue: QueueDep, owner: Owner, alignment: AlignDep,
    transcript: JsonFile, file: MediaFile, callback_url: CallbackDep = None,
) -> Response:  # fmt: skip
    """Word timings for a transcript (`{segments: [{start, end, text}], language}`) of the
    audio. Result: segments with `words`, and `word_segments`; no word is dropped."""
    parsed = read_json(transcript, "transcript", TranscriptIn, settings)
    key, name, duration = save_upload(file, settings)
    return Response(identifier=submit(
        store, queue, TaskType.transcription_alignment, TaskParams(alignment=alignment).stored(),
        owner=owner, file_name=name, input_key=key, inputs={"transcript": parsed},
        callback_url=callback_url, language=parsed["language"], audio_duration=duration,
    ))  # fmt: skip


@router.post("/diarize", response_model=Response)
def diarize(
    settings: SettingsDep, store: StoreDep, queue: QueueDep, owner: Owner,
    diarization: DiarizeDep, file: MediaFile, callback_url: CallbackDep = None,
) -> Response:  # fmt: skip
    """Who spoke when. Result: `[{label, speaker, start, end}]`, speakers `SPEAKER_00`, …"""
    key, name, duration = save_upload(file, settings)
    return Response(identifier=submit(
        store, queue, TaskType.diarization, TaskParams(diarization=diarization).stored(),
        owner=owner, file_name=name, input_key=key, callback_url=callback_url,
        audio_duration=duration,
    ))  # fmt: skip


@router.post("/combine", response_model=Response)
def combine(
    settings: SettingsDep, store: StoreDep, queue: QueueDep, owner: Owner,
    aligned_transcript: JsonFile, diarization_result: JsonFile, callback_url: CallbackDep = None,
) -> Response:  # fmt: skip
    """Give each segment and word of an aligned transcript its speaker from a diarization."""
    aligned = read_json(aligned_transcript, "aligned_transcript", AlignedTranscriptIn, settings)
    turns = read_json(diarization_result, "diarization_result", DiarizationIn, settings)
    return Response(identifier=submit(
        store, queue, TaskType.combine, {}, owner=owner,
        file_name=clean_name(aligned_transcript.filename or "", "transcript.json"),
        inputs={"aligned_transcript": aligned, "diarization_result": turns},
        callback_url=callback_url, language=aligned.get("language"),
    ))  # fmt: skip
