"""Request options (query parameters, named as in whisperX-FastAPI) and response shapes."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, Field, RootModel

from app.errors import ServiceError
from app.net import BlockedURL, parse_url, redact_url
from app.pipeline.models import WHISPER_MODELS, ModelUnavailable, resolve_whisper_model
from app.settings import cuda_available
from app.store.models import Task, TaskStatus, TaskType
from app.store.tasks import as_utc

InterpolateMethod = Literal["nearest", "linear", "ignore"]


@lru_cache(maxsize=1)
def whisper_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def _invalid(field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", field), "msg": message, "input": value}]
    )


def parse_number_list(field: str, values: list[str], kind: type) -> list:
    """Accept both repeated keys (`?x=1&x=2`) and comma lists (`?x=1,2`)."""
    parsed = []
    for value in values:
        for item in str(value).split(","):
            if item.strip():
                try:
                    parsed.append(kind(item.strip()))
                except ValueError:
                    raise _invalid(
                        field, f"'{item}' is not a valid {kind.__name__}", value
                    ) from None
    return parsed


def check_language(language: str | None) -> str | None:
    if language is None or language.strip().lower() in ("", "auto"):
        return None
    code = language.strip().lower()
    if code not in whisper_languages():
        raise _invalid(
            "language",
            f"'{language}' is not a language Whisper knows; use an ISO 639-1 code such as "
            "'en', 'de', 'fr', or omit it (or 'auto') to detect the language",
            language,
        )
    return code


class ModelParams(BaseModel):
    language: str | None
    task: Literal["transcribe", "translate"]
    model: str
    device: Literal["cuda", "cpu"]
    device_index: int
    batch_size: int
    chunk_size: int
    compute_type: str
    threads: int


def model_params(
    request: Request,
    language: Annotated[
        str | None,
        Query(
            description="ISO 639-1 code of the speech; omit or `auto` to detect it. Default: DEFAULT_LANG."
        ),
    ] = None,
    task: Annotated[
        Literal["transcribe", "translate"],
        Query(description="`translate` gives English text for any language."),
    ] = "transcribe",
    model: Annotated[
        str | None,
        Query(
            description=f"Whisper model: one of {', '.join(WHISPER_MODELS)}, or a model folder under MODEL_DIR. Default: WHISPER_MODEL."
        ),
    ] = None,
    device: Annotated[
        Literal["cuda", "cpu"] | None, Query(description="Default: DEVICE (CUDA when available).")
    ] = None,
    device_index: Annotated[int, Query(ge=0, description="GPU index.")] = 0,
    batch_size: Annotated[
        int | None,
        Query(
            ge=1,
            le=256,
            description="Chunks decoded at once. Default: BATCH_SIZE (8 on CUDA, 2 on CPU).",
        ),
    ] = None,
    chunk_size: Annotated[
        int, Query(ge=1, le=30, description="Longest chunk the VAD merges speech into, in seconds.")
    ] = 20,
    compute_type: Annotated[
        Literal["float16", "float32", "int8"] | None,
        Query(description="Default: COMPUTE_TYPE (float16 on CUDA, int8 on CPU)."),
    ] = None,
    threads: Annotated[
        int, Query(ge=0, le=256, description="CPU threads; 0 = CPU_THREADS setting.")
    ] = 0,
) -> ModelParams:
    settings = request.app.state.settings
    language = check_language(language) if language is not None else settings.default_lang
    name = model or settings.whisper_model
    if name not in WHISPER_MODELS and not (settings.model_dir / name / "model.bin").is_file():
        raise _invalid(
            "model",
            f"unknown model '{name}'; use one of {', '.join(WHISPER_MODELS)} or put a "
            f"CTranslate2 model folder at {settings.model_dir / name}",
            name,
        )
    if name.endswith(".en") and language not in (None, "en"):
        raise _invalid(
            "language",
            f"model '{name}' is English-only; use a multilingual model for language '{language}'",
            language,
        )
    device = device or settings.device
    if device == "cuda" and settings.device != "cuda" and not cuda_available():
        raise ServiceError(
            400,
            "DEVICE_UNAVAILABLE",
            "CUDA is not available on this host: use device=cpu or leave it out.",
        )
    try:
        resolve_whisper_model(name, settings.model_dir, settings.hub_allowed)
    except ModelUnavailable as exc:
        raise ServiceError(400, "MODEL_UNAVAILABLE", str(exc)) from None
    return ModelParams(
        language=language,
        task=task,
        model=name,
        device=device or settings.device,
        device_index=device_index,
        batch_size=batch_size or settings.batch_size,
        chunk_size=chunk_size,
        compute_type=compute_type or settings.compute_type,
        threads=threads,
    )


def asr_options(
    beam_size: Annotated[int, Query(ge=1, le=20)] = 5,
    best_of: Annotated[int, Query(ge=1, le=20)] = 5,
    patience: Annotated[float, Query(gt=0, le=10)] = 1.0,
    length_penalty: Annotated[float, Query(ge=0, le=10)] = 1.0,
    temperatures: Annotated[
        list[str],
        Query(
            description="Sampling temperature(s) in [0, 1], tried in order when decoding fails: `0` or `0,0.2,0.4` (or repeated keys)."
        ),
    ] = ["0.0"],  # noqa: B006
    compression_ratio_threshold: Annotated[float, Query(gt=0)] = 2.4,
    log_prob_threshold: Annotated[float, Query()] = -1.0,
    no_speech_threshold: Annotated[float, Query(ge=0, le=1)] = 0.6,
    initial_prompt: Annotated[str | None, Query(max_length=2000)] = None,
    suppress_tokens: Annotated[
        list[str],
        Query(description="Token ids to suppress: `-1` (default set), `1,2,3` or repeated keys."),
    ] = ["-1"],  # noqa: B006
    suppress_numerals: Annotated[bool, Query()] = False,
    hotwords: Annotated[str | None, Query(max_length=2000)] = None,
) -> dict[str, Any]:
    temps = parse_number_list("temperatures", temperatures, float) or [0.0]
    if any(not 0 <= t <= 1 for t in temps):
        raise _invalid("temperatures", "temperatures must be between 0 and 1", temperatures)
    tokens = parse_number_list("suppress_tokens", suppress_tokens, int)
    return {
        "beam_size": beam_size,
        "best_of": best_of,
        "patience": patience,
        "length_penalty": length_penalty,
        "temperatures": temps,
        "compression_ratio_threshold": compression_ratio_threshold,
        "log_prob_threshold": log_prob_threshold,
        "no_speech_threshold": no_speech_threshold,
        "initial_prompt": initial_prompt,
        "suppress_tokens": tokens,
        "suppress_numerals": suppress_numerals,
        "hotwords": hotwords,
    }


def vad_options(
    vad_onset: Annotated[
        float, Query(gt=0, lt=1, description="Speech starts above this score.")
    ] = 0.5,
    vad_offset: Annotated[
        float, Query(gt=0, lt=1, description="Speech ends below this score.")
    ] = 0.363,
) -> dict[str, float]:
    return {"vad_onset": vad_onset, "vad_offset": vad_offset}


def alignment_params(
    align_model: Annotated[
        str | None,
        Query(
            description="wav2vec2 CTC model (hub name or local folder); empty: the language's default, or the offline aligner."
        ),
    ] = None,
    interpolate_method: Annotated[
        InterpolateMethod,
        Query(
            description="How words the aligner cannot time get times; `ignore` leaves them untimed (never dropped)."
        ),
    ] = "nearest",
    return_char_alignments: Annotated[bool, Query()] = False,
    align: Annotated[
        bool, Query(description="Word-level alignment step (full pipeline only).")
    ] = True,
) -> dict[str, Any]:
    return {
        "align_model": align_model,
        "interpolate_method": interpolate_method,
        "return_char_alignments": return_char_alignments,
        "align": align,
    }


def diarization_params(
    min_speakers: Annotated[int | None, Query(ge=1, le=50)] = None,
    max_speakers: Annotated[int | None, Query(ge=1, le=50)] = None,
    num_speakers: Annotated[
        int | None, Query(ge=1, le=50, description="Exact number of speakers, when known.")
    ] = None,
    diarize: Annotated[
        bool, Query(description="Speaker diarization step (full pipeline only).")
    ] = True,
) -> dict[str, Any]:
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise _invalid("min_speakers", "min_speakers must not exceed max_speakers", min_speakers)
    if num_speakers is not None and (
        (min_speakers is not None and num_speakers < min_speakers)
        or (max_speakers is not None and num_speakers > max_speakers)
    ):
        raise _invalid(
            "num_speakers", "num_speakers must lie within min_speakers..max_speakers", num_speakers
        )
    return {
        "min_speakers": min_speakers,
        "max_speakers": max_speakers,
        "num_speakers": num_speakers,
        "diarize": diarize,
    }


def full_params(
    model: ModelParams, asr: dict, vad: dict, alignment: dict, diarization: dict
) -> dict[str, Any]:
    """The stored options of a full-pipeline task, as app.pipeline.run.full_process reads them."""
    return {
        "model": model.model_dump(),
        "asr": asr,
        "vad": vad,
        "alignment": alignment,
        "diarization": diarization,
    }


ModelDep = Annotated[ModelParams, Depends(model_params)]
AsrDep = Annotated[dict[str, Any], Depends(asr_options)]
VadDep = Annotated[dict[str, float], Depends(vad_options)]
AlignDep = Annotated[dict[str, Any], Depends(alignment_params)]
DiarizeDep = Annotated[dict[str, Any], Depends(diarization_params)]


class Response(BaseModel):
    """Answer to every task submission."""

    identifier: str
    message: str = "Task queued"


class CancelResponse(BaseModel):
    identifier: str
    message: str = "Task cancelled"


class DeleteResponse(BaseModel):
    identifier: str
    message: str = "Task deleted"


URL_PATTERN = r"^https?://[^\s\x00-\x1f\x7f]+$"


def well_formed_url(url: str | None) -> str | None:
    """A 422 at submission for a URL no request could be made to (its address is checked
    when it is fetched, as the name may resolve elsewhere by then)."""
    if url is not None:
        try:
            parse_url(url)
        except BlockedURL as exc:
            raise ValueError(str(exc)) from None
    return url


CallbackDep = Annotated[
    str | None,
    AfterValidator(well_formed_url),
    Query(
        description="URL the finished task is POSTed to (the body of GET /task/{identifier}).",
        pattern=URL_PATTERN,
        max_length=4096,
    ),
]

UtcDatetime = Annotated[datetime | None, AfterValidator(as_utc)]
"""Stored times are UTC; SQLite returns them without a zone."""
RedactedUrl = Annotated[str | None, AfterValidator(redact_url)]
"""URLs are shown without passwords and token-like query values (presigned links)."""


class TaskSummary(BaseModel):
    identifier: str
    status: TaskStatus
    task_type: TaskType
    file_name: str | None
    url: RedactedUrl
    audio_duration: float | None
    language: str | None
    error: str | None
    duration: float | None
    start_time: UtcDatetime
    end_time: UtcDatetime
    created_at: UtcDatetime = None
    stage: str | None = None
    progress: float | None = None


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    total: int | None = None


class TaskMetadata(BaseModel):
    task_type: TaskType
    task_params: dict[str, Any]
    language: str | None
    file_name: str | None
    url: RedactedUrl
    callback_url: RedactedUrl
    duration: float | None
    """Seconds spent processing."""
    audio_duration: float | None
    start_time: UtcDatetime
    end_time: UtcDatetime
    created_at: UtcDatetime = None
    stage: str | None = None
    """Current stage: starting, transcribing, aligning, diarizing, combining, done, failed."""
    progress: float | None = None
    """Percent of the whole task done."""
    queue_position: int | None = None
    """1 = next to start; only while queued."""
    processing: dict[str, Any] = Field(default_factory=dict)
    """How the result was made: model and its source, device, compute type, aligner, diarizer,
    detected language probability and candidates, seconds per stage."""
    webhook: dict[str, Any] | None = None
    """Outcome of the callback delivery."""


class TaskResult(BaseModel):
    status: TaskStatus
    result: Any | None
    metadata: TaskMetadata
    error: str | None


def task_summary(task: Task) -> TaskSummary:
    return TaskSummary.model_validate(task, from_attributes=True)


def task_result(task: Task, queue_position: int | None = None) -> TaskResult:
    metadata = TaskMetadata.model_validate(task, from_attributes=True).model_copy(
        update={"queue_position": queue_position, "processing": task.info or {}}
    )
    return TaskResult(status=task.status, result=task.result, error=task.error, metadata=metadata)


class _Open(BaseModel):
    model_config = {"extra": "allow"}


class WordIn(_Open):
    word: str
    start: float | None = None
    end: float | None = None
    score: float | None = None


class SegmentIn(_Open):
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    words: list[WordIn] | None = None


class TranscriptIn(_Open):
    """A whisperX transcription: the input of /service/align."""

    segments: list[SegmentIn]
    language: str = Field(min_length=2, max_length=16)


class AlignedTranscriptIn(_Open):
    """An aligned whisperX transcript: the first input of /service/combine."""

    segments: list[SegmentIn]
    word_segments: list[WordIn] | None = None
    language: str | None = None


class SpeakerTurnIn(_Open):
    speaker: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    label: str | None = None


class DiarizationIn(RootModel[list[SpeakerTurnIn]]):
    """A diarization as /service/diarize returns it: the second input of /service/combine."""
