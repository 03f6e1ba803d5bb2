"""Getting input onto disk: uploads streamed to the media folder, URL downloads, JSON inputs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from fastapi import UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, RootModel, ValidationError

from app.errors import ServiceError
from app.net import BlockedURL, check_url
from app.pipeline.audio import AudioError, probe_duration
from app.settings import Settings

AUDIO_EXTENSIONS = {
    ".oga",
    ".m4a",
    ".aac",
    ".wav",
    ".amr",
    ".wma",
    ".awb",
    ".mp3",
    ".ogg",
    ".flac",
    ".webm",
    ".opus",
}
VIDEO_EXTENSIONS = {".wmv", ".mkv", ".avi", ".mov", ".mp4"}
CHUNK = 1 << 20


def _too_large(settings: Settings) -> ServiceError:
    return ServiceError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"The file is larger than the limit of {settings.max_upload_mb} MiB (MAX_UPLOAD_MB).",
    )


def _new_path(settings: Settings, name: str) -> Path:
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix.lower()[:10]
    return settings.media_dir / f"{uuid.uuid4()}{suffix}"


def check_media(path: Path, name: str) -> float | None:
    """Accept a file by its content: known extensions and anything else ffprobe finds audio in.
    Returns the duration when the container states it. Deletes the file when refusing it."""
    try:
        if path.stat().st_size == 0:
            raise ServiceError(
                400, "EMPTY_FILE", f"'{name}' is empty: upload a file that contains audio."
            )
        try:
            return probe_duration(path)
        except AudioError as exc:
            raise ServiceError(415, "UNSUPPORTED_MEDIA", f"'{name}': {exc}") from None
    except ServiceError:
        path.unlink(missing_ok=True)
        raise


def save_upload(upload: UploadFile, settings: Settings) -> tuple[Path, str, float | None]:
    """Copy an upload to the media folder in chunks. Returns (path, file name, duration)."""
    name = Path(upload.filename or "upload").name
    suffix = Path(name).suffix.lower()
    known = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
    path = _new_path(settings, name)
    limit, size = settings.max_upload_mb * CHUNK, 0
    try:
        with open(path, "wb") as out:
            while chunk := upload.file.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(settings)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        duration = check_media(path, name)
    except ServiceError as exc:
        if suffix and suffix not in known and exc.code == "UNSUPPORTED_MEDIA":
            exc.message = (
                f"'{name}' is not a supported audio or video file. Supported: "
                f"{', '.join(sorted(known))}, and anything else ffmpeg decodes."
            )
        raise
    return path, name, duration


def _check_public(url: str, settings: Settings) -> None:
    try:
        check_url(url, settings.allow_private_urls)
    except BlockedURL as exc:
        raise ServiceError(400, "BAD_URL", str(exc)) from None


def download(url: str, settings: Settings) -> tuple[Path, str, float | None]:
    """Fetch `url` into the media folder with the upload size limit and a time limit."""
    parsed = urlparse(url)
    _check_public(url, settings)
    name = Path(parsed.path).name or "download"
    path = _new_path(settings, name)
    limit, size = settings.max_upload_mb * CHUNK, 0
    deadline = time.monotonic() + settings.download_timeout_seconds
    current = url
    try:
        with httpx.Client(timeout=httpx.Timeout(30, read=60), follow_redirects=False) as client:
            for _ in range(5):
                _check_public(current, settings)  # every redirect is checked again
                with client.stream("GET", current) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = str(response.url.join(response.headers["location"]))
                        continue
                    if not response.is_success:
                        raise ServiceError(
                            400,
                            "DOWNLOAD_FAILED",
                            f"Downloading the URL failed with HTTP {response.status_code}.",
                        )
                    if int(response.headers.get("content-length") or 0) > limit:
                        raise _too_large(settings)
                    with open(path, "wb") as out:
                        for chunk in response.iter_bytes(CHUNK):
                            size += len(chunk)
                            if size > limit:
                                raise _too_large(settings)
                            if time.monotonic() > deadline:
                                raise ServiceError(
                                    400,
                                    "DOWNLOAD_FAILED",
                                    f"Downloading the URL took longer than {settings.download_timeout_seconds:.0f} s (DOWNLOAD_TIMEOUT_SECONDS).",
                                )
                            out.write(chunk)
                    break
            else:
                raise ServiceError(400, "DOWNLOAD_FAILED", "The URL redirects too many times.")
    except httpx.HTTPError as exc:
        path.unlink(missing_ok=True)
        raise ServiceError(
            400, "DOWNLOAD_FAILED", f"Downloading the URL failed ({type(exc).__name__})."
        ) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, name, check_media(path, name)


def read_json(
    upload: UploadFile, field: str, shape: type[BaseModel] | type[RootModel], settings: Settings
) -> Any:
    """Parse an uploaded JSON file and check its shape; bad input is a 422 naming the field,
    in FastAPI's validation format."""
    data = upload.file.read(settings.max_upload_mb * CHUNK + 1)
    if len(data) > settings.max_upload_mb * CHUNK:
        raise _too_large(settings)
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", field),
                    "input": None,
                    "msg": f"'{field}' is not valid JSON: {exc}",
                }
            ]
        ) from None
    try:
        return shape.model_validate(value).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", field, *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
