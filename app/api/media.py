"""Getting input onto disk: uploads streamed to the media folder, URL downloads, JSON inputs.
A stored input is named by its key: its file name inside MEDIA_DIR (shared by every machine)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, RootModel, ValidationError

from app.errors import ServiceError
from app.net import BlockedURL, parse_url, pinned_request
from app.pipeline.audio import AudioError, probe_duration
from app.settings import Settings

AUDIO_EXTENSIONS = {".oga", ".m4a", ".aac", ".wav", ".amr", ".wma", ".awb", ".mp3", ".ogg",
                    ".flac", ".webm", ".opus"}  # fmt: skip
VIDEO_EXTENSIONS = {".wmv", ".mkv", ".avi", ".mov", ".mp4"}
CHUNK = 1 << 20


def _too_large(settings: Settings) -> ServiceError:
    return ServiceError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"The file is larger than the limit of {settings.max_upload_mb} MiB (MAX_UPLOAD_MB).",
    )


def clean_name(name: str, default: str) -> str:
    """A file name fit to store and show: no folders, no control characters, at most 255."""
    name = "".join(c for c in Path(name).name if c.isprintable())[:255].strip()
    return name or default


def _new_path(settings: Settings, name: str) -> Path:
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix.lower()[:10]
    return settings.media_dir / f"{uuid.uuid4()}{suffix}"


class _Room:
    """How many bytes may still be stored: the size limit, the media quota and the free space
    the disk must keep (MIN_FREE_DISK_MB); `add` raises 413 or 507 once a chunk passes them."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.size = settings, 0
        self.limit = settings.max_upload_mb * CHUNK
        room = shutil.disk_usage(settings.media_dir).free - settings.min_free_disk_mb * CHUNK
        if settings.media_quota_mb:
            used = sum(f.stat().st_size for f in settings.media_dir.iterdir() if f.is_file())
            room = min(room, settings.media_quota_mb * CHUNK - used)
        self.room = room
        if room <= 0:
            raise self._full()

    def _full(self) -> ServiceError:
        return ServiceError(
            507,
            "INSUFFICIENT_STORAGE",
            "The server has no room for more media right now (MIN_FREE_DISK_MB, MEDIA_QUOTA_MB); "
            "retry when running tasks have finished.",
        )

    def add(self, n: int) -> None:
        self.size += n
        if self.size > self.limit:
            raise _too_large(self.settings)
        if self.size > self.room:
            raise self._full()


def check_media(path: Path, name: str, settings: Settings) -> float | None:
    """Accept a file by its content: known extensions and anything else ffprobe finds audio in,
    no longer than MAX_AUDIO_SECONDS where the container states its duration (the decoder
    enforces the limit where it does not). Deletes the file when refusing it."""
    try:
        if path.stat().st_size == 0:
            raise ServiceError(
                400, "EMPTY_FILE", f"'{name}' is empty: upload a file that contains audio."
            )
        try:
            duration = probe_duration(path, memory_mb=settings.decode_memory_mb)
        except AudioError as exc:
            raise ServiceError(415, "UNSUPPORTED_MEDIA", f"'{name}': {exc}") from None
        if duration is not None and duration > settings.max_audio_seconds:
            raise ServiceError(
                413,
                "AUDIO_TOO_LONG",
                f"'{name}' is {duration:.0f} s long; the limit is {settings.max_audio_seconds} s "
                "(MAX_AUDIO_SECONDS). Split it into shorter files.",
            )
        return duration
    except ServiceError:
        path.unlink(missing_ok=True)
        raise


def save_upload(upload: UploadFile, settings: Settings) -> tuple[str, str, float | None]:
    """Copy an upload to the media folder in chunks. Returns (key, file name, duration)."""
    name = clean_name(upload.filename or "", "upload")
    suffix = Path(name).suffix.lower()
    known = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
    path = _new_path(settings, name)
    try:
        room = _Room(settings)
        with open(path, "wb") as out:
            while chunk := upload.file.read(CHUNK):
                room.add(len(chunk))
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        duration = check_media(path, name, settings)
    except ServiceError as exc:
        if suffix and suffix not in known and exc.code == "UNSUPPORTED_MEDIA":
            exc.message = (
                f"'{name}' is not a supported audio or video file. Supported: "
                f"{', '.join(sorted(known))}, and anything else ffmpeg decodes."
            )
        raise
    return path.name, name, duration


def download(url: str, settings: Settings) -> tuple[str, str, float | None]:
    """Fetch `url` into the media folder within the upload size limit and DOWNLOAD_TIMEOUT_SECONDS,
    connecting only to checked public addresses (each redirect checked again)."""
    try:
        name = clean_name(unquote(parse_url(url).path), "download")
    except BlockedURL as exc:
        raise ServiceError(400, "BAD_URL", str(exc)) from None
    path = _new_path(settings, name)
    timeout = settings.download_timeout_seconds
    deadline = time.monotonic() + timeout
    too_slow = ServiceError(
        400,
        "DOWNLOAD_FAILED",
        f"Downloading the URL took longer than {timeout:.0f} s (DOWNLOAD_TIMEOUT_SECONDS).",
    )
    current = url
    try:
        room = _Room(settings)
        with httpx.Client(timeout=httpx.Timeout(min(30, timeout), read=min(60, timeout))) as client:
            for _ in range(5):
                try:
                    request = pinned_request(
                        client,
                        "GET",
                        current,
                        settings.allow_private_urls,
                        headers={"accept-encoding": "identity"},  # stored as sent: no inflating
                    )
                except BlockedURL as exc:  # every redirect is checked again
                    raise ServiceError(400, "BAD_URL", str(exc)) from None
                response = client.send(request, stream=True)
                try:
                    if response.is_redirect and "location" in response.headers:
                        current = str(httpx.URL(current).join(response.headers["location"]))
                        continue
                    if not response.is_success:
                        raise ServiceError(
                            400,
                            "DOWNLOAD_FAILED",
                            f"Downloading the URL failed with HTTP {response.status_code}.",
                        )
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > room.limit:
                        raise _too_large(settings)
                    with open(path, "wb") as out:
                        for chunk in response.iter_raw(CHUNK):
                            room.add(len(chunk))
                            if time.monotonic() > deadline:
                                raise too_slow
                            out.write(chunk)
                    break
                finally:
                    response.close()
            else:
                raise ServiceError(400, "DOWNLOAD_FAILED", "The URL redirects too many times.")
    except httpx.TimeoutException as exc:
        path.unlink(missing_ok=True)
        if time.monotonic() > deadline:
            raise too_slow from None
        raise ServiceError(
            400,
            "DOWNLOAD_FAILED",
            f"The server of the URL did not answer in time ({type(exc).__name__}).",
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        path.unlink(missing_ok=True)
        raise ServiceError(
            400, "DOWNLOAD_FAILED", f"Downloading the URL failed ({type(exc).__name__})."
        ) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path.name, name, check_media(path, name, settings)


def _no_constants(name: str) -> Any:
    """NaN and Infinity are not JSON (and PostgreSQL refuses to store them)."""
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def read_json(
    upload: UploadFile,
    field: str,
    shape: type[BaseModel] | type[RootModel[Any]],
    settings: Settings,
) -> Any:
    """Parse an uploaded JSON file and check its shape; bad input is a 422 naming the field,
    in FastAPI's validation format."""
    data = upload.file.read(settings.max_json_mb * CHUNK + 1)
    if len(data) > settings.max_json_mb * CHUNK:
        raise ServiceError(
            413,
            "PAYLOAD_TOO_LARGE",
            f"'{field}' is larger than the limit of {settings.max_json_mb} MiB (MAX_JSON_MB).",
        )
    try:
        value = json.loads(data, parse_constant=_no_constants)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = (
            "is nested too deeply"
            if isinstance(exc, RecursionError)
            else f"is not valid JSON: {exc}"
        )
        error = {
            "type": "json_invalid",
            "loc": ("body", field),
            "input": None,
            "msg": f"'{field}' {reason}",
        }
        raise RequestValidationError([error]) from None
    try:
        return shape.model_validate(value).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", field, *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
