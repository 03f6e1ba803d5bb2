"""Speech to text with whisperX's batched faster-whisper pipeline (VAD-cut chunks)."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from app.pipeline.models import ModelCache, resolve_whisper_model
from app.pipeline.types import Progress, Transcript

if TYPE_CHECKING:
    import whisperx.asr

    from app.settings import Settings

log = logging.getLogger(__name__)


def load_whisper(
    cache: ModelCache, settings: Settings, name: str, device: str, compute_type: str,
    device_index: int = 0, threads: int = 0,
) -> tuple[whisperx.asr.WhisperModel, str]:  # fmt: skip
    """The CTranslate2 Whisper model `name`, loaded once per device and compute type.
    Returns (model, source) with source `local`, `bundled` or `hub`."""
    path, source = resolve_whisper_model(name, settings.model_dir, settings.hub_allowed)
    threads = threads or settings.cpu_threads

    def load() -> Any:
        from whisperx.asr import WhisperModel

        return WhisperModel(
            path, device=device, device_index=device_index, compute_type=compute_type,
            cpu_threads=threads, local_files_only=source != "hub",
            download_root=str(settings.model_dir / "hub"),
        )  # fmt: skip

    key = ("whisper", path, device, device_index, compute_type, threads)
    return cache.get(key, load), source
