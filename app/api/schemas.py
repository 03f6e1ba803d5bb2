"""Request options (query parameters, named as in whisperX-FastAPI), checked once against the
settings and the workers, and request/response shapes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, Field, RootModel
from starlette.datastructures import UploadFile as StarletteUploadFile

from app.errors import ServiceError
from app.net import BlockedURL, check_url, parse_url
from app.pipeline.models import WHISPER_MODELS, ModelUnavailable, resolve_whisper_model
from app.pipeline.options import (
    AlignmentOptions,
    AsrOptions,
    DiarizationOptions,
    ModelOptions,
    VadOptions,
)


def _invalid(field: str, message: str, value: Any, where: str = "query") -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, field), "msg": message, "input": value}]
    )


async def one_file_a_field(request: Request) -> None:
    """A field sent with two files or more is a 422 (FastAPI would keep the last, silently):
    every route takes one file a field, one recording a task."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return
    files = [name for name, value in (await request.form()).multi_items()
             if isinstance(value, StarletteUploadFile)]  # fmt: skip
    for name in dict.fromkeys(files):
        if (n := files.count(name)) > 1:
            message = (f"{n} files were sent as '{name}'; send one a request (a task each), "
                       "or join the recordings into one file")  # fmt: skip
            raise _invalid(name, message, f"{n} files", where="body")


def checked_model(request: Request, options: ModelOptions) -> ModelOptions:
    """Fill `model` and `language` from the settings (WHISPER_MODEL, DEFAULT_LANG) and check
    what needs them: the model exists here, an English-only model gets English, a GPU asked
    for is there (the workers say). The device-dependent defaults are the worker's."""
    settings = request.app.state.settings
    given = "language" in options.model_fields_set or options.languages  # languages: detect
    language = options.language if given else settings.default_lang
    name = options.model or settings.whisper_model
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
    half = options.compute_type == "float16"
    if options.device == "cuda" or (half and options.device is None):
        devices = {w.device for w in request.app.state.store.workers()}
        if devices and "cuda" not in devices:
            raise ServiceError(
                400,
                "DEVICE_UNAVAILABLE",
                "No worker has a CUDA device: use device=cpu or leave it out."
                if options.device == "cuda"
                else "No worker has a CUDA device, and compute_type=float16 needs one: "
                "use int8 or float32 on CPU, or leave compute_type out.",
            )
    if half and options.device == "cpu":
        raise ServiceError(
            400,
            "DEVICE_UNAVAILABLE",
            "compute_type=float16 runs on CUDA only: use int8 or float32 with device=cpu.",
        )
    try:
        resolve_whisper_model(name, settings.model_dir, settings.hub_allowed)
    except ModelUnavailable as exc:
        raise ServiceError(400, "MODEL_UNAVAILABLE", str(exc)) from None
    return options.model_copy(update={"model": name, "language": language})


def _model_options(request: Request, options: Annotated[ModelOptions, Query()]) -> ModelOptions:
    return checked_model(request, options)


ModelDep = Annotated[ModelOptions, Depends(_model_options)]
AsrDep = Annotated[AsrOptions, Query()]
VadDep = Annotated[VadOptions, Query()]
AlignDep = Annotated[AlignmentOptions, Query()]
DiarizeDep = Annotated[DiarizationOptions, Query()]


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


def _callback_url(
    request: Request,
    callback_url: Annotated[
        str | None,
        AfterValidator(well_formed_url),
        Query(
            description="URL the finished task is POSTed to (the body of GET /task/{identifier}).",
            pattern=URL_PATTERN,
            max_length=4096,
        ),
    ] = None,
) -> str | None:
    """A 422 at submission for a webhook that could not be delivered now: its host does not
    resolve, or resolves to a private address without ALLOW_PRIVATE_URLS (each delivery
    checks again, as the name may resolve elsewhere by then)."""
    if callback_url is not None:
        try:
            check_url(callback_url, request.app.state.settings.allow_private_urls)
        except BlockedURL as exc:
            raise _invalid("callback_url", str(exc), callback_url) from None
    return callback_url


CallbackDep = Annotated[str | None, Depends(_callback_url)]


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
