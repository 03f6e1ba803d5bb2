"""whisper-asr-webservice compatible speech to text: POST /asr and POST /detect-language, as
Bazarr, Speakr, subgen and the Obsidian transcription plugin call them."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Annotated, Any, BinaryIO, Literal, cast
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.deps import WAIT_SECONDS, StoreDep, WaiterDep, wait_for
from app.api.media import save_upload
from app.api.openai import _unfinished
from app.api.schemas import checked_model
from app.auth import Owner
from app.errors import ERROR_RESPONSES, ErrorResponse, ServiceError
from app.pipeline.formats import cues, timestamp, tsv, txt
from app.pipeline.options import (
    LANGUAGES,
    AlignmentOptions,
    AsrOptions,
    DiarizationOptions,
    ModelOptions,
    TaskParams,
    VadOptions,
)
from app.pipeline.types import SAMPLE_RATE
from app.settings import Settings
from app.store.models import TaskStatus, TaskType
from app.worker.queue import submit

ENGINE = "whisperx"
"""The `Asr-Engine` header: the upstream engine whose output this API follows."""
DETECT_SECONDS = 300
"""Language detection hears the first 30 s of speech, looked for in raw PCM's first five
minutes (the rest is not stored)."""
VAD_FILTER = VadOptions(vad_onset=0.6)
"""`vad_filter=true`: VAD always runs here; the flag makes it stricter about what is speech."""
ALIASES = {name: code for code, name in LANGUAGES.items()} | {"jv": "jw", "nb": "no"}
"""Language names (`english`, as openai-whisper takes them) and the codes some clients send
for Whisper's `jw` and `no`."""

Output = Literal["txt", "vtt", "srt", "tsv", "json"]

router = APIRouter(
    tags=["whisper-asr-webservice compatible"],
    responses={
        **ERROR_RESPONSES,
        500: {"model": ErrorResponse, "description": "The task failed on an internal error"},
        504: {"model": ErrorResponse, "description": "The task did not end within an hour"},
    },
)

AudioFile = Annotated[
    UploadFile,
    File(description="Audio or video (judged by content); raw PCM with `encode=false`."),
]
Encode = Annotated[
    bool,
    Query(
        description="`false`: the upload is raw 16 kHz mono signed 16-bit little-endian PCM (what Bazarr sends)."
    ),
]
Speakers = Annotated[int | None, Query(ge=1, le=50)]


@dataclass
class Submitted:
    """A queued task and how to answer with its result."""

    identifier: str
    file_name: str
    output: str = "txt"


class _Pcm:
    """Raw s16le PCM read as a WAV file: a header, then at most `size` bytes of samples."""

    def __init__(self, pcm: IO[bytes], size: int) -> None:
        self.pcm, self.left = pcm, size
        self.header: bytes | None = struct.pack(
            "<4sI4s4sIHHIIHH4sI", b"RIFF", min(36 + size, 0xFFFFFFFF), b"WAVE", b"fmt ", 16,
            1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16, b"data", min(size, 0xFFFFFFFF - 36),
        )  # fmt: skip

    def read(self, n: int = -1) -> bytes:
        if self.header is not None:
            header, self.header = self.header, None
            return header
        chunk = self.pcm.read(min(n, self.left)) if self.left > 0 else b""
        self.left -= len(chunk)
        return chunk


def _save(
    upload: UploadFile, encode: bool, settings: Settings, seconds: float | None = None
) -> tuple[str, str, float | None]:
    """Store the upload; raw PCM (`encode=false`) as a WAV file, so that it is an ordinary
    input (checked, decoded and limited like any other)."""
    if encode:
        return save_upload(upload, settings)
    size = upload.file.seek(0, os.SEEK_END)
    upload.file.seek(0)
    if size == 0 or size % 2:
        raise ServiceError(
            400,
            "INVALID_PCM",
            f"With encode=false the upload is raw 16-bit PCM, but it has {size} bytes "
            "(an even number above 0 is needed): send encode=true for an audio or video file.",
        )
    if seconds is not None:
        size = min(size, int(seconds * SAMPLE_RATE) * 2)
    wav = UploadFile(cast(BinaryIO, _Pcm(upload.file, size)), filename=upload.filename)
    return save_upload(wav, settings)


def _queue(
    request: Request, upload: UploadFile, encode: bool, task_type: TaskType,
    build: Callable[[], TaskParams], owner: str | None, seconds: float | None = None,
) -> Submitted:  # fmt: skip
    """Check the options, store the upload and queue the task."""
    state = request.app.state
    try:
        params = build()
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    key, name, duration = _save(upload, encode, state.settings, seconds)
    identifier = submit(
        state.store, state.queue, task_type, params.stored(), file_name=name, input_key=key,
        language=params.model.language if params.model else None, audio_duration=duration,
        owner=owner,
    )  # fmt: skip
    return Submitted(identifier, upload.filename or "audio_file")


def _language(value: str) -> str:
    code = value.strip().lower()
    return ALIASES.get(code, code)


def asr_task(
    request: Request,
    audio_file: AudioFile,
    owner: Owner,
    encode: Encode = True,
    task: Annotated[
        Literal["transcribe", "translate"],
        Query(description="`translate`: English text; `language` stays the spoken one."),
    ] = "transcribe",
    language: Annotated[
        str | None,
        Query(
            description="Whisper code of the speech (`en`, `de`, `haw`; names such as `english` too); omit or `auto` to detect it. Default: DEFAULT_LANG."
        ),
    ] = None,
    initial_prompt: Annotated[str | None, Query(max_length=2000)] = None,
    vad_filter: Annotated[
        bool,
        Query(
            description="Voice activity detection always runs; `true` makes it stricter (vad_onset 0.6 instead of 0.5)."
        ),
    ] = False,
    word_timestamps: Annotated[
        bool,
        Query(description="Align words: `words` in JSON segments and word-timed subtitle cues."),
    ] = False,
    diarize: Annotated[
        bool, Query(description="Label speakers: `[SPEAKER_00]: ` lines, `speaker` in JSON.")
    ] = False,
    min_speakers: Speakers = None,
    max_speakers: Speakers = None,
    output: Annotated[Output, Query(description="Format of the answer.")] = "txt",
    enable_diarization: Annotated[
        bool, Query(description="Same as `diarize` (Speakr sends both).")
    ] = False,
    return_speaker_embeddings: Annotated[
        bool, Query(description="`speaker_embeddings` in JSON, as whisperx-asr-service gives.")
    ] = False,
    hotwords: Annotated[
        str | None, Query(max_length=2000, description="Words to favour (not upstream).")
    ] = None,
    model: Annotated[
        str | None,
        Query(description="Whisper model (not upstream; Speakr sends it). Default: WHISPER_MODEL."),
    ] = None,
) -> Submitted:
    diarize = diarize or enable_diarization

    def build() -> TaskParams:
        given = {"language": _language(language)} if language is not None else {}
        return TaskParams(
            model=checked_model(request, ModelOptions(**given, task=task, model=model or None)),
            asr=AsrOptions(initial_prompt=initial_prompt or None, hotwords=hotwords or None),
            vad=VAD_FILTER if vad_filter else VadOptions(),
            # as in the OpenAI endpoints: align only when words are asked for, or speakers
            alignment=AlignmentOptions(align=word_timestamps or diarize),
            diarization=DiarizationOptions(
                min_speakers=min_speakers,
                max_speakers=max_speakers,
                diarize=diarize,
                return_speaker_embeddings=return_speaker_embeddings,
            ),
        )

    submitted = _queue(request, audio_file, encode, TaskType.full_process, build, owner)
    submitted.output = output
    return submitted


ASR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The transcript in the `output` format, as text/plain (JSON included, as upstream).",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.post("/asr", responses=ASR_RESPONSES)
async def asr(
    submitted: Annotated[Submitted, Depends(asr_task)], store: StoreDep, waiter: WaiterDep
) -> Response:
    """Transcribe or translate, as whisper-asr-webservice (engine `whisperx`) does, and answer
    when done (synchronously). Runs as an ordinary `full_process` task on the service's
    workers, listed by `GET /task/all` (the `X-Task-Identifier` header names it). Options are
    query parameters, the file is the multipart field `audio_file`. Speakers read
    `[SPEAKER_00]: text`; subtitles are cut into cues of two lines of 42 characters.
    Errors use the service's JSON envelope (never valid SRT, so Bazarr keeps no error text)."""
    task = await wait_for(submitted.identifier, store, waiter, WAIT_SECONDS)
    headers = {"Asr-Engine": ENGINE, "X-Task-Identifier": task.identifier}
    if task.status != TaskStatus.completed:
        return _unfinished(task, headers)
    disposition = f'attachment; filename="{quote(submitted.file_name)}.{submitted.output}"'
    body = await run_in_threadpool(write, task.result or {}, submitted.output)  # seconds for hours
    return Response(
        body, media_type="text/plain", headers=headers | {"Content-Disposition": disposition}
    )


def _prefix(speaker: str | None) -> str:
    return f"[{speaker}]: " if speaker else ""


def write(result: dict[str, Any], output: str) -> str:
    """A finished transcript in whisper-asr-webservice's layout of `output`."""
    segments = [s for s in result.get("segments", []) if s["text"].strip()]
    if output == "json":  # whisperx's result plus the `text` the other engines give
        text = " ".join(s["text"].strip() for s in segments)
        return json.dumps({"text": text, **result}, ensure_ascii=False)
    if output == "tsv":
        return tsv(segments)
    if output == "txt":
        return txt(segments, _prefix)
    blocks = []
    for number, cue in enumerate(cues(segments, label_width=lambda s: len(_prefix(s))), 1):
        text = "\n".join([_prefix(cue.speaker) + cue.lines[0], *cue.lines[1:]])
        # WebVTT leaves out the hours below one, as upstream
        separator, hours = (",", True) if output == "srt" else (".", False)
        start, end = (timestamp(ms, separator, hours) for ms in (cue.start_ms, cue.end_ms))
        span = f"{start} --> {end}"
        head = f"{number}\n" if output == "srt" else ""
        blocks.append(f"{head}{span}\n{text.replace('-->', '->')}\n\n")
    return ("" if output == "srt" else "WEBVTT\n\n") + "".join(blocks)


class DetectedLanguage(BaseModel):
    detected_language: str
    """English name of the language, lower case (`english`), as Whisper names it."""
    language_code: str
    """Whisper's code (`en`; `haw`, `yue`, `jw` too)."""
    confidence: float
    """Probability of that language, 0 to 1."""


def detection_task(
    request: Request, audio_file: AudioFile, owner: Owner, encode: Encode = True
) -> Submitted:
    settings: Settings = request.app.state.settings
    name = settings.whisper_model
    if name.endswith(".en") or name.startswith("distil-"):  # English-only models
        name = "base"

    def build() -> TaskParams:
        return TaskParams(model=checked_model(request, ModelOptions(model=name, language=None)))

    return _queue(
        request, audio_file, encode, TaskType.language_detection, build, owner, DETECT_SECONDS
    )


@router.post("/detect-language", response_model=DetectedLanguage)
async def detect_language(
    submitted: Annotated[Submitted, Depends(detection_task)], store: StoreDep, waiter: WaiterDep
) -> Response:
    """The language of the first 30 s of speech, as whisper-asr-webservice answers it, from WHISPER_MODEL
    (`base` where that is English-only). Runs as a `language_detection` task on the workers."""
    task = await wait_for(submitted.identifier, store, waiter, WAIT_SECONDS)
    headers = {"X-Task-Identifier": task.identifier}
    if task.status != TaskStatus.completed:
        return _unfinished(task, headers)
    return JSONResponse(task.result, headers=headers)
