"""Speaker profiles: POST /speakers enrols one person's voice; diarized speakers whose voice
matches one are then named after it in every later recording of the same API key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import WAIT_SECONDS, QueueDep, SettingsDep, StoreDep, Waiter, WaiterDep, wait_for
from app.api.media import save_upload
from app.auth import Owner
from app.errors import ERROR_RESPONSES, ServiceError
from app.settings import Settings
from app.store.models import SpeakerProfile, TaskStatus, TaskType
from app.store.tasks import TaskStore
from app.store.views import UtcDatetime
from app.worker.queue import Queue, submit

router = APIRouter(prefix="/speakers", tags=["Speakers"], responses=ERROR_RESPONSES)

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


class Speaker(BaseModel):
    identifier: str
    name: str
    seconds: float
    """Seconds of speech the voice embedding was made from."""
    created_at: UtcDatetime
    model: str
    """Embedding model; the voice is matched by diarizers that use the same one."""


class SpeakerList(BaseModel):
    speakers: list[Speaker]


class Rename(BaseModel):
    name: Name


def _view(profile: SpeakerProfile) -> Speaker:
    return Speaker.model_validate(profile, from_attributes=True)


async def voice_of(
    file: UploadFile, settings: Settings, store: TaskStore, queue: Queue, waiter: Waiter,
    owner: str | None, start: float | None = None, end: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A worker's embedding of the speech in the file (`embedding`, `seconds`, `model`), made by
    a `speaker_enrolment` task; 400 when it holds too little speech."""
    key, file_name, duration = await run_in_threadpool(save_upload, file, settings)
    identifier = await run_in_threadpool(
        submit, store, queue, TaskType.speaker_enrolment, {}, owner=owner, file_name=file_name,
        input_key=key, inputs={"start": start, "end": end}, audio_duration=duration,
    )  # fmt: skip
    task = await wait_for(identifier, store, waiter, WAIT_SECONDS)
    if task.status != TaskStatus.completed or not task.result:
        raise ServiceError(400, "NO_VOICE", task.error or "The voice could not be enrolled yet.")
    return task.result


@router.post("", response_model=Speaker)
async def enrol(
    settings: SettingsDep, store: StoreDep, queue: QueueDep, waiter: WaiterDep, owner: Owner,
    name: Annotated[str, Form(max_length=200, description="Who this is, e.g. `Lucas`.")],
    file: Annotated[UploadFile, File(description="Audio or video of this one person speaking (3 s of speech or more).")],
    start: Annotated[float | None, Form(ge=0, description="Use the file from this second on.")] = None,
    end: Annotated[float | None, Form(gt=0, description="Use the file up to this second.")] = None,
) -> Speaker:  # fmt: skip
    """Enrol a voice: a worker makes its embedding from the speech in the file (the audio itself
    is not kept). Answers when done; 400 when the name is empty or there is too little speech."""
    name = name.strip()
    if not name:
        raise ServiceError(400, "EMPTY_NAME", "Give the speaker a name.")
    if start is not None and end is not None and end <= start:
        raise ServiceError(400, "BAD_RANGE", f"end ({end}) must come after start ({start}).")
    voice = await voice_of(file, settings, store, queue, waiter, owner, start, end)
    profile = await run_in_threadpool(
        store.add_profile, name=name, owner=owner, embedding=voice["embedding"],
        model=voice["model"], seconds=voice["seconds"],
    )  # fmt: skip
    return _view(profile)


@router.get("", response_model=SpeakerList)
def list_speakers(store: StoreDep, owner: Owner) -> SpeakerList:
    """The caller's speaker profiles, oldest first."""
    return SpeakerList(speakers=[_view(p) for p in store.profiles(owner)])


def _owned(store: StoreDep, identifier: str, owner: str | None) -> SpeakerProfile:
    profile = store.profile(identifier, owner)
    if profile is None:  # another key's profile is not found either
        raise ServiceError(404, "SPEAKER_NOT_FOUND", f"Speaker {identifier} was not found.")
    return profile


@router.patch("/{identifier}", response_model=Speaker)
def rename(identifier: str, body: Rename, store: StoreDep, owner: Owner) -> Speaker:
    """Rename a speaker; recordings processed from now on use the new name."""
    _owned(store, identifier, owner)
    store.rename_profile(identifier, body.name.strip())
    return _view(_owned(store, identifier, owner))


@router.delete("/{identifier}", response_model=Speaker)
def delete(identifier: str, store: StoreDep, owner: Owner) -> Speaker:
    """Forget a speaker: later recordings no longer match the voice."""
    profile = _owned(store, identifier, owner)
    store.delete_profile(identifier)
    return _view(profile)
