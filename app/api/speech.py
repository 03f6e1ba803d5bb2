"""The full pipeline: POST /speech-to-text (upload) and /speech-to-text-url (download)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import AfterValidator

from app.api.deps import QueueDep, SettingsDep, StoreDep
from app.api.media import download, save_upload
from app.api.schemas import (
    URL_PATTERN,
    AlignDep,
    AsrDep,
    CallbackDep,
    DiarizeDep,
    ModelDep,
    Response,
    VadDep,
    well_formed_url,
)
from app.auth import Owner
from app.errors import ERROR_RESPONSES
from app.pipeline.options import TaskParams
from app.store.models import TaskType
from app.worker.queue import submit

router = APIRouter(tags=["Speech-2-Text"], responses=ERROR_RESPONSES)

UrlField = Annotated[
    str,
    AfterValidator(well_formed_url),
    Form(description="http(s) address of an audio or video file.", pattern=URL_PATTERN, max_length=4096),
]  # fmt: skip


@router.post("/speech-to-text", response_model=Response)
def speech_to_text(
    settings: SettingsDep, store: StoreDep, queue: QueueDep, owner: Owner, model: ModelDep,
    asr: AsrDep, vad: VadDep, alignment: AlignDep, diarization: DiarizeDep,
    file: Annotated[UploadFile, File(description="Audio or video file (judged by content).")],
    callback_url: CallbackDep = None,
) -> Response:  # fmt: skip
    """Transcribe, align and diarize an uploaded file. Answers at once with the task's
    identifier; poll `GET /task/{identifier}` (or wait for the callback) for the result."""
    key, name, duration = save_upload(file, settings)
    params = TaskParams(model=model, asr=asr, vad=vad, alignment=alignment, diarization=diarization)
    return Response(identifier=submit(
        store, queue, TaskType.full_process, params.stored(), owner=owner, file_name=name,
        input_key=key, callback_url=callback_url, language=model.language, audio_duration=duration,
    ))  # fmt: skip


@router.post("/speech-to-text-url", response_model=Response)
def speech_to_text_url(
    settings: SettingsDep, store: StoreDep, queue: QueueDep, owner: Owner, model: ModelDep,
    asr: AsrDep, vad: VadDep, alignment: AlignDep, diarization: DiarizeDep, url: UrlField,
    callback_url: CallbackDep = None,
) -> Response:  # fmt: skip
    """Like /speech-to-text, with the file downloaded by the server from `url`."""
    key, name, duration = download(url, settings)
    params = TaskParams(model=model, asr=asr, vad=vad, alignment=alignment, diarization=diarization)
    return Response(identifier=submit(
        store, queue, TaskType.full_process, params.stored(), owner=owner, file_name=name, url=url,
        input_key=key, callback_url=callback_url, language=model.language, audio_duration=duration,
    ))  # fmt: skip
