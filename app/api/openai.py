"""OpenAI-compatible speech to text: POST /v1/audio/transcriptions and /v1/audio/translations."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import math
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.api.deps import WAIT_SECONDS, QueueDep, SettingsDep, StoreDep, WaiterDep, wait_for, watch
from app.api.media import save_upload
from app.api.schemas import checked_model
from app.api.speakers import voice_of
from app.auth import Owner
from app.errors import (
    ERROR_RESPONSES,
    ErrorBody,
    ErrorResponse,
    ServiceError,
    envelope,
)
from app.pipeline.formats import render, words_of
from app.pipeline.options import (
    LANGUAGES,
    AlignmentOptions,
    AsrOptions,
    DiarizationOptions,
    ModelOptions,
    TaskParams,
    VadOptions,
)
from app.settings import Settings
from app.store.models import Task, TaskStatus, TaskType
from app.store.tasks import ENDED, TaskStore
from app.worker.queue import Queue, submit

KEEPALIVE_SECONDS = 10
"""A streamed answer sends a comment line with the task's stage and progress when it has sent
nothing for this long, so that proxies keep the connection open."""
STREAM_POLL_SECONDS = 1.0
"""How often a streamed answer reads its task for newly transcribed text."""
MAX_VOICES = 10
"""Most `known_speaker_references[]` one request may send (OpenAI takes 4)."""
MAX_FIELD_BYTES = 8 * 1024 * 1024
"""Largest form field other than the file: a `known_speaker_references[]` data URL of 10 s of
48 kHz stereo float WAV, as a browser records it, is 5 MB (Starlette's default is 1 MB)."""

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]
TranslationFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]


class _OpenAIRoute(APIRoute):
    """Request validation errors answer 400 with `error.message`, as OpenAI's API does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise ServiceError(400, "INVALID_REQUEST", _validation_message(exc)) from None
            except HTTPException as exc:
                if "exceeded maximum size" not in str(exc.detail):
                    raise
                raise ServiceError(
                    400,
                    "FIELD_TOO_LARGE",
                    f"A form field other than `file` is over {MAX_FIELD_BYTES >> 20} MB: a "
                    "known_speaker_references[] sample needs 2-10 s of audio (16 kHz mono WAV "
                    "is 32 kB a second).",
                ) from None

        return route


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        name = next((p for p in reversed(error.get("loc", ())) if isinstance(p, str)), "")
        parts.append(f"{name}: {error.get('msg', 'invalid value')}" if name else error["msg"])
    return "; ".join(parts) or "Invalid request."


router = APIRouter(
    prefix="/v1/audio",
    tags=["OpenAI compatible"],
    route_class=_OpenAIRoute,
    form_limits={"max_part_size": MAX_FIELD_BYTES},
    responses={
        **ERROR_RESPONSES,
        "4XX": {"model": ErrorResponse, "description": "Invalid request (validation errors too)"},
        500: {"model": ErrorResponse, "description": "The task failed on an internal error"},
        504: {"model": ErrorResponse, "description": "The task did not end within an hour"},
    },
)


class Transcription(BaseModel):
    """`response_format=json`."""

    text: str


class TranscriptionUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float
    """Seconds of audio, rounded up."""


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    """Start of the segment in 10 ms frames."""
    start: float
    end: float
    text: str
    tokens: list[int]
    """Always empty: the batched decoder does not return token ids."""
    temperature: float
    """The temperature the text was decoded at (the fallback raises it on a text that fails)."""
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    """Whisper's; windows it judged silent are dropped (the task's `silent_windows` lists them)."""
    speaker: str | None = None
    """With `diarize=true` only (not an OpenAI field)."""


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float
    speaker: str | None = None
    """With `diarize=true` only (not an OpenAI field)."""


class TranscriptionVerbose(BaseModel):
    """`response_format=verbose_json`."""

    task: Literal["transcribe", "translate"]
    language: str
    """Full English name of the spoken language (`english`, `german`); `english` for translations."""
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    """Unless only `word` timestamps were asked for."""
    words: list[TranscriptionWord] | None = None
    """When `timestamp_granularities[]` includes `word`."""
    usage: TranscriptionUsage


class DiarizedSegment(BaseModel):
    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str
    """`SPEAKER_00`, `SPEAKER_01`, … in order of first appearance."""


class TranscriptionDiarized(BaseModel):
    """`response_format=diarized_json` (implies `diarize=true`)."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegment]
    usage: TranscriptionUsage


@dataclass
class Job:
    """A validated request: the task to run and how to answer with its result."""

    file: UploadFile
    task: Literal["transcribe", "translate"]
    task_params: dict[str, Any]
    language: str | None
    response_format: str
    granularities: list[str]
    temperature: float
    stream: bool = False
    voices: list[tuple[str, UploadFile]] = field(default_factory=list)
    """`known_speaker_names[]` with their `known_speaker_references[]`, as audio files."""


FileField = Annotated[
    UploadFile,
    File(description="Audio or video: flac, mp3, mp4, m4a, ogg, wav, webm, … (judged by content)."),
]
ModelField = Annotated[
    str,
    Form(
        description="`whisper-1` or an OpenAI `gpt-…transcribe…` name (the service's WHISPER_MODEL), or any model name the service accepts, e.g. `base`, `tiny.en`, `large-v3`."
    ),
]
PromptField = Annotated[
    str | None,
    Form(
        max_length=2000,
        description="Text to guide the style or spelling (Whisper's initial prompt).",
    ),
]
TemperatureField = Annotated[
    float,
    Form(
        ge=0,
        le=1,
        description="Sampling temperature; 0 raises it step by step on a segment that loops or is improbable.",
    ),
]
DiarizeField = Annotated[
    bool,
    Form(
        description="Label speakers (`SPEAKER_00`, …) in segments, words and subtitles. Not an OpenAI field."
    ),
]
SpeakersField = Annotated[int | None, Form(ge=1, le=50, description="Not an OpenAI field.")]


def _list_field(name: str, description: str) -> Any:
    """A repeated form field, named `name[]` as OpenAI's clients send lists."""
    return Form(alias=f"{name}[]", description=description)


OPENAI_NAMES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize")  # fmt: skip
"""OpenAI's names that GET /v1/models lists first; `service_model` takes these and any other
`gpt-…transcribe…` name."""


def service_model(model: str, settings: Settings) -> str:
    """OpenAI's model names (`whisper-1`, `gpt-transcribe`, `gpt-4o-mini-transcribe`, …) mean
    the service's WHISPER_MODEL; any other name is a model of the service."""
    openai = model == "whisper-1" or (model.startswith("gpt-") and "transcribe" in model)
    return settings.whisper_model if openai else model


def _job(
    request: Request,
    *,
    file: UploadFile,
    model: str,
    language: str | None,
    task: Literal["transcribe", "translate"],
    prompt: str | None,
    response_format: str,
    temperature: float,
    granularities: list[str],
    diarize: bool,
    num_speakers: int | None,
    min_speakers: int | None,
    max_speakers: int | None,
    keywords: list[str] | None = None,
    languages: list[str] | None = None,
    stream: bool = False,
    voices: list[tuple[str, UploadFile]] | None = None,
) -> Job:
    """Validate with the task API's own rules and build the same task parameters."""
    settings: Settings = request.app.state.settings
    diarize = diarize or response_format == "diarized_json"
    if stream and response_format not in ("json", "text", "diarized_json"):
        raise ServiceError(400, "INVALID_REQUEST", (
            f"stream=true sends text events, not {response_format}: use response_format "
            "json, text or diarized_json, or leave stream out"
        ))  # fmt: skip
    try:
        given = {"language": language} if language is not None else {}
        options = checked_model(request, ModelOptions(
            **given, languages=languages, task=task, model=service_model(model, settings)
        ))  # fmt: skip
        params = TaskParams(
            model=options,
            # OpenAI's 0 means "raise the temperature until the text passes", as Whisper's CLI
            asr=AsrOptions(
                temperatures=[temperature] if temperature else [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                initial_prompt=prompt or None,
                hotwords=", ".join(keywords) if keywords else None,
            ),
            vad=VadOptions(),
            # word timings cost an alignment pass: run it only when words are asked for, or
            # when speakers are, so that they are assigned word by word
            alignment=AlignmentOptions(align="word" in granularities or diarize),
            diarization=DiarizationOptions(
                min_speakers=min_speakers, max_speakers=max_speakers,
                num_speakers=num_speakers, diarize=diarize,
            ),
        )  # fmt: skip
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return Job(
        file, task, params.stored(), options.language, response_format, granularities,
        temperature, stream, voices or [],
    )  # fmt: skip


def transcription_job(
    request: Request,
    file: FileField,
    model: ModelField,
    language: Annotated[
        str | None,
        Form(description="ISO 639-1 code of the speech (`en`, `de`); omit to detect it."),
    ] = None,
    prompt: PromptField = None,
    response_format: Annotated[
        ResponseFormat,
        Form(
            description="`json` ({text}), `text`, `srt`, `vtt`, `verbose_json` (segments, words) or `diarized_json` (speaker segments; implies `diarize`)."
        ),
    ] = "json",
    temperature: TemperatureField = 0.0,
    timestamp_granularities: Annotated[
        list[Granularity] | None,
        _list_field(
            "timestamp_granularities",
            "`segment` and/or `word` (for `verbose_json`); `word` adds an alignment pass.",
        ),
    ] = None,
    languages: Annotated[
        list[str] | None,
        _list_field(
            "languages",
            "ISO 639-1 codes the speech may be in: detection picks the likeliest of them.",
        ),
    ] = None,
    keywords: Annotated[
        list[str] | None,
        _list_field("keywords", "Words or phrases to favour (Whisper's hotwords)."),
    ] = None,
    stream: Annotated[
        bool,
        Form(
            description="Answer with server-sent events: `transcript.text.delta` with the text as it is transcribed (for `diarized_json` a segment each at the end, with a `transcript.text.segment`), then `transcript.text.done`; a comment line after 10 s with nothing sent."
        ),
    ] = False,
    known_speaker_names: Annotated[
        list[str] | None,
        _list_field(
            "known_speaker_names",
            "Names of the people in `known_speaker_references[]`, in the same order: their speakers are labelled with these names (implies `diarize`).",
        ),
    ] = None,
    known_speaker_references: Annotated[
        list[str] | None,
        _list_field(
            "known_speaker_references",
            "A data URL (`data:audio/wav;base64,…`) of 3-10 s of each known speaker alone.",
        ),
    ] = None,
    diarize: DiarizeField = False,
    num_speakers: SpeakersField = None,
    min_speakers: SpeakersField = None,
    max_speakers: SpeakersField = None,
) -> Job:
    voices = _voices(known_speaker_names or [], known_speaker_references or [])
    return _job(
        request, file=file, model=model, language=language, task="transcribe", prompt=prompt,
        response_format=response_format, temperature=temperature,
        granularities=list(timestamp_granularities or ["segment"]), diarize=diarize or bool(voices),
        num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
        keywords=keywords, languages=languages, stream=stream, voices=voices,
    )  # fmt: skip


def _voices(names: list[str], references: list[str]) -> list[tuple[str, UploadFile]]:
    """Known speakers as (name, audio file), from their names and data URLs."""
    if len(names) != len(references) or len(names) > MAX_VOICES:
        raise ServiceError(400, "INVALID_REQUEST", (
            f"{len(names)} known_speaker_names[] and {len(references)} "
            f"known_speaker_references[] were sent: send one reference a name, {MAX_VOICES} at most"
        ))  # fmt: skip
    voices = []
    for index, (name, url) in enumerate(zip(names, references, strict=True)):
        head, comma, data = url.partition(",")
        audio = b""
        if name.strip() and comma and head.startswith("data:") and head.endswith(";base64"):
            with contextlib.suppress(binascii.Error):
                audio = base64.b64decode(data, validate=True)
        if not audio:
            raise ServiceError(400, "INVALID_REQUEST", (
                f"known_speaker_references[{index}] must be a base64 data URL "
                "(data:audio/wav;base64,…) of a named speaker: 3-10 s of that person alone"
            ))  # fmt: skip
        voices.append((name.strip(), UploadFile(io.BytesIO(audio), filename=f"voice-{index}")))
    return voices


def translation_job(
    request: Request,
    file: FileField,
    model: ModelField,
    prompt: PromptField = None,
    response_format: Annotated[
        TranslationFormat,
        Form(description="`json` ({text}), `text`, `srt`, `vtt` or `verbose_json` (segments)."),
    ] = "json",
    temperature: TemperatureField = 0.0,
    diarize: DiarizeField = False,
    num_speakers: SpeakersField = None,
    min_speakers: SpeakersField = None,
    max_speakers: SpeakersField = None,
) -> Job:
    return _job(
        request, file=file, model=model, language="auto", task="translate", prompt=prompt,
        response_format=response_format, temperature=temperature, granularities=["segment"],
        diarize=diarize, num_speakers=num_speakers, min_speakers=min_speakers,
        max_speakers=max_speakers,
    )  # fmt: skip


TEXT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON for `json`, `verbose_json` and `diarized_json`; the file itself for `text`, `srt` and `vtt`.",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/x-subrip": {"schema": {"type": "string"}},
            "text/vtt": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/transcriptions",
    response_model=Transcription | TranscriptionVerbose | TranscriptionDiarized,
    responses=TEXT_RESPONSES,
)
async def create_transcription(
    job: Annotated[Job, Depends(transcription_job)],
    settings: SettingsDep,
    store: StoreDep,
    queue: QueueDep,
    waiter: WaiterDep,
    owner: Owner,
) -> Response:
    """Transcribe audio, as OpenAI's endpoint does, and answer when done (synchronously), or
    with `stream=true` as server-sent events. Runs as an ordinary `full_process` task on the
    service's workers, so it queues behind other tasks and is listed by `GET /task/all`; the
    `X-Task-Identifier` header names it. Words are aligned only when `word` timestamps or
    speakers are asked for."""

    async def profile(index: int, name: str, upload: UploadFile) -> dict[str, Any]:
        try:
            voice = await voice_of(upload, settings, store, queue, waiter, owner)
        except ServiceError as exc:
            exc.message = f"known_speaker_references[{index}] ({name}): {exc.message}"
            raise
        return {"name": name, "embedding": voice["embedding"], "model": voice["model"]}

    # each voice is a task: with several workers they are enrolled side by side
    profiles = await asyncio.gather(*(profile(i, *voice) for i, voice in enumerate(job.voices)))
    identifier = await run_in_threadpool(_create, job, settings, store, queue, owner, profiles)
    if not job.stream:
        task = await wait_for(identifier, store, waiter, WAIT_SECONDS)
        return await run_in_threadpool(_answer, task, job)  # subtitles of hours take seconds
    updates = watch(identifier, store, waiter, WAIT_SECONDS, STREAM_POLL_SECONDS)
    first = await anext(updates)  # no worker, or the task gone: an error answer, not a stream
    return StreamingResponse(
        _events(first, updates, job),
        media_type="text/event-stream",
        headers={"X-Task-Identifier": identifier, "Cache-Control": "no-cache"},
    )


@router.post(
    "/translations",
    response_model=Transcription | TranscriptionVerbose,
    responses=TEXT_RESPONSES,
)
async def create_translation(
    job: Annotated[Job, Depends(translation_job)],
    settings: SettingsDep,
    store: StoreDep,
    queue: QueueDep,
    waiter: WaiterDep,
    owner: Owner,
) -> Response:
    """Translate speech in any language into English text, as OpenAI's endpoint does, and
    answer when done. Needs a multilingual model (`whisper-1`/`base`, not a `.en` one)."""
    identifier = await run_in_threadpool(_create, job, settings, store, queue, owner)
    task = await wait_for(identifier, store, waiter, WAIT_SECONDS)
    return await run_in_threadpool(_answer, task, job)


def _create(
    job: Job, settings: Settings, store: TaskStore, queue: Queue, owner: str | None,
    profiles: list[dict[str, Any]] | None = None,
) -> str:  # fmt: skip
    """Store the upload and queue its task; `profiles`: voices to name besides the caller's."""
    key, name, duration = save_upload(job.file, settings)
    return submit(
        store, queue, TaskType.full_process, job.task_params, file_name=name, input_key=key,
        language=job.language, audio_duration=duration, owner=owner,
        **({"inputs": {"speaker_profiles": profiles}} if profiles else {}),
    )  # fmt: skip


async def _events(first: Task, updates: AsyncIterator[Task], job: Job) -> AsyncIterator[str]:
    """`stream=true`: the text as OpenAI's events. While the task runs, a delta with each
    piece transcribed (not for `diarized_json`, whose segments need the speakers) or else a
    comment with its stage every KEEPALIVE_SECONDS; the rest and `done` when it ends (an
    `error` event, which OpenAI's clients raise, when it failed or ran out of time)."""
    task, sent, quiet_since = first, "", 0.0
    diarized = job.response_format == "diarized_json"
    try:
        while task.status not in ENDED:
            heard = "" if diarized else task.partial_text or ""
            if len(heard) > len(sent) and heard.startswith(sent):  # a retry starts anew
                yield _event(_delta(heard[len(sent) :].strip(), first=not sent))
                sent, quiet_since = heard, time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield f": {task.stage or task.status} {task.progress or 0:.0f}%\n\n"
                quiet_since = time.monotonic()
            task = await anext(updates)
    except StopAsyncIteration:  # out of time: the task goes on
        pass
    except ServiceError as exc:  # the task was deleted meanwhile
        yield _event(_error(exc.code, exc.message))
        return
    if task.status != TaskStatus.completed:
        yield _event(_error(*_failure(task)[1:]))
        return
    segments, text = _spoken(task.result or {})
    if sent:  # the deltas add up to the text, unless alignment changed what was heard
        if text.startswith(sent) and text[len(sent) :].strip():
            yield _event(_delta(text[len(sent) :].strip(), first=False))
    else:
        for index, s in enumerate(segments):
            delta = _delta(s["text"].strip(), first=index == 0)
            if diarized:
                yield _event(delta | {"segment_id": f"seg_{index}"})
                yield _event(_diarized(index, s))
            else:
                yield _event(delta)
    yield _event({"type": "transcript.text.done", "text": text})


def _delta(piece: str, *, first: bool) -> dict[str, Any]:
    """A delta event; pieces after the first begin with the space that joins them."""
    return {"type": "transcript.text.delta", "delta": piece if first else f" {piece}"}


def _event(data: BaseModel | dict[str, Any]) -> str:
    body = data.model_dump() if isinstance(data, BaseModel) else data
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _error(code: str, message: str) -> ErrorResponse:
    return ErrorResponse(error=ErrorBody(code=code, message=message), detail=message)


def _failure(task: Task) -> tuple[int, str, str]:
    """Status, code and message for a task that failed or is still running."""
    error = task.error or "The task failed."
    if task.status != TaskStatus.failed:
        status, code = 504, "TIMEOUT"
        error = (
            f"Task {task.identifier} did not end within {WAIT_SECONDS} s and goes on: "
            f"GET /task/{task.identifier} gives its result."
        )
    elif task.stage == "cancelled":
        status, code = 409, "TASK_CANCELLED"
    elif error.startswith("Internal error"):
        status, code = 500, "TASK_FAILED"
    else:
        status, code = 400, "TASK_FAILED"
    return status, code, error


def _unfinished(task: Task, headers: dict[str, str]) -> Response:
    """The error answer for a task that failed or is still running."""
    status, code, error = _failure(task)
    # a new task would end the same way: OpenAI clients retry 5xx answers unless told not to
    return envelope(status, code, error, headers={**headers, "x-should-retry": "false"})


def _spoken(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The segments that hold text, and their text as one string."""
    segments = [s for s in result.get("segments", []) if s["text"].strip()]
    return segments, " ".join(s["text"].strip() for s in segments)


def _diarized(index: int, s: dict[str, Any]) -> DiarizedSegment:
    speaker = s.get("speaker", "SPEAKER_00")
    return DiarizedSegment(
        id=f"seg_{index}", start=s["start"], end=s["end"], text=s["text"].strip(), speaker=speaker
    )


def _answer(task: Task, job: Job) -> Response:
    headers = {"X-Task-Identifier": task.identifier}
    if task.status != TaskStatus.completed:
        return _unfinished(task, headers)
    result = task.result or {}
    segments, text = _spoken(result)
    fmt = job.response_format
    if fmt == "text":
        return PlainTextResponse(text + "\n", headers=headers)
    if fmt in ("srt", "vtt"):
        body, media_type = render(result, fmt)
        return Response(body, media_type=media_type, headers=headers)
    if fmt == "json":
        return JSONResponse(Transcription(text=text).model_dump(), headers=headers)
    duration = task.audio_duration or max((s["end"] for s in segments), default=0.0)
    usage = TranscriptionUsage(seconds=math.ceil(duration))
    if fmt == "diarized_json":
        body_model: BaseModel = TranscriptionDiarized(
            duration=duration,
            text=text,
            usage=usage,
            segments=[_diarized(index, s) for index, s in enumerate(segments)],
        )
    else:
        body_model = _verbose(segments, text, duration, usage, job, result.get("language"))
    return JSONResponse(body_model.model_dump(exclude_none=True), headers=headers)


def _verbose(
    segments: list[dict[str, Any]],
    text: str,
    duration: float,
    usage: TranscriptionUsage,
    job: Job,
    language: str | None,
) -> TranscriptionVerbose:
    verbose = TranscriptionVerbose(
        task=job.task,
        language="english"
        if job.task == "translate"
        else LANGUAGES.get(language or "", language or ""),
        duration=duration,
        text=text,
        usage=usage,
    )
    if "segment" in job.granularities:
        verbose.segments = [
            TranscriptionSegment(
                id=index,
                seek=round(s["start"] * 100),
                start=s["start"],
                end=s["end"],
                text=s["text"].strip(),
                tokens=[],
                temperature=s.get("temperature", job.temperature),
                avg_logprob=s.get("avg_logprob", 0.0),
                compression_ratio=_compression_ratio(s["text"]),
                no_speech_prob=s.get("no_speech_prob", 0.0),
                speaker=s.get("speaker"),
            )
            for index, s in enumerate(segments)
        ]
    if "word" in job.granularities:
        verbose.words = [TranscriptionWord(**word) for s in segments for word in words_of(s)]
    return verbose


def _compression_ratio(text: str) -> float:
    """Whisper's repetition measure: text bytes over their zlib-compressed size."""
    data = text.strip().encode()
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0
