"""The full pipeline: POST /speech-to-text (upload) and /speech-to-text-url (download)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import AfterValidator

from app.api.deps import QueueDep, SettingsDep
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
    full_params,
    well_formed_url,
)
from app.auth import Owner
from app.errors import ERROR_RESPONSES
from app.store.models import TaskType

router = APIRouter(tags=["Speech-2-Text"], responses=ERROR_RESPONSES)


@router.post("/speech-to-text", response_model=Response)
def speech_to_text(
    settings: SettingsDep,
    queue: QueueDep,
    owner: Owner,
    model: ModelDep,
    asr: AsrDep,
    vad: VadDep,
    alignment: AlignDep,
    diarization: DiarizeDep,
    file: Annotated[UploadFile, File(description="Audio or video file (judged by content).")],
    callback_url: CallbackDep = None,
) -> Response:
    """Transcribe, align and diarize an uploaded file. Answers at once with the task's
    identifier; poll `GET /task/{identifier}` (or wait for the callback) for the result."""
    path, name, duration = save_upload(file, settings)
    identifier = queue.enqueue(
        TaskType.full_process,
        owner=owner,
        task_params=full_params(model, asr, vad, alignment, diarization),
        file_name=name,
        input_path=str(path),
        callback_url=callback_url,
        language=model.language,
        audio_duration=duration,
    )
    return Response(identifier=identifier)


@router.post("/speech-to-text-url", response_model=Response)
def speech_to_text_url(
    settings: SettingsDep,
    queue: QueueDep,
    owner: Owner,
    model: ModelDep,
    asr: AsrDep,
    vad: VadDep,
    alignment: AlignDep,
    diarization: DiarizeDep,
    url: Annotated[
        str,
        AfterValidator(well_formed_url),
        Form(
            description="http(s) address of an audio or video file.",
            pattern=URL_PATTERN,
            max_length=4096,
        ),
    ],
    callback_url: CallbackDep = None,
) -> Response:
    """Like /speech-to-text, with the file downloaded by the server from `url`."""
    path, name, duration = download(url, settings)
    identifier = queue.enqueue(
        TaskType.full_process,
        owner=owner,
        task_params=full_params(model, asr, vad, alignment, diarization),
        file_name=name,
        url=url,
        input_path=str(path),
        callback_url=callback_url,
        language=model.language,
        audio_duration=duration,
    )
    return Response(identifier=identifier)
