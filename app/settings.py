"""Service settings, read from the environment and `.env` (names follow whisperX-FastAPI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["cuda", "cpu"]
ComputeType = Literal["float16", "float32", "int8", "int8_float16", "int8_float32", "default"]
StageChoice = Literal["auto", "production", "offline"]
QueueChoice = Literal["local", "celery"]


def cuda_available() -> bool:
    """True when a CUDA device can be used; checked without importing torch where possible."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", use_attribute_docstrings=True, env_ignore_empty=True
    )

    whisper_model: str = "base"
    """Default ASR model. `base` is multilingual (99 languages, language detection) and ships in
    registry packages, so it runs offline; `tiny.en` is the fast English-only choice."""
    default_lang: str | None = None
    """Default language (ISO 639-1). Empty or `auto`: detect it from the audio."""
    device: Device | None = None
    """`cuda` or `cpu`. Empty: CUDA when available, else CPU."""
    compute_type: ComputeType | None = None
    """CTranslate2 compute type. Empty: `float16` on CUDA, `int8` on CPU."""
    db_url: str = "sqlite:///records.db"
    """SQLAlchemy database URL; SQLite runs in WAL mode."""
    hf_token: str | None = None
    """Hugging Face token for the gated pyannote diarization pipeline (production diarizer)."""
    log_level: str = "INFO"
    """Log level of the service's loggers."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object a line (time, level, logger, message) for log shippers."""
    environment: str = "production"
    """Free-form deployment name (`production`, `development`, …), reported by /health."""
    dev: bool = False
    """Development mode: auto-reload and debug logging when started with `make run`."""
    filter_warning: bool = True
    """Silence the noisy deprecation warnings of the ML libraries in the logs."""

    host: str = "127.0.0.1"
    """Address `make run` binds to."""
    port: int = 8000
    """Port `make run` binds to."""
    queue: QueueChoice = "local"
    """`local`: workers take queued tasks from the database (no broker; the default).
    `celery`: a Redis broker (BROKER_URL) carries task identifiers to Celery workers."""
    broker_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL of the Celery broker (QUEUE=celery)."""
    workers: int = Field(default=1, ge=0, le=64)
    """Local worker processes `make run` starts beside the API (and restarts when one dies);
    0 serves the API alone, with workers started elsewhere (`make worker`)."""
    max_concurrent_tasks: int = Field(default=1, ge=1, le=64)
    """Tasks one Celery worker runs at once (prefork children): one per GPU. On a CPU host each
    pipeline already uses every core, so 1 is right; a local worker runs one task at a time."""
    task_time_limit_seconds: int = Field(default=6 * 3600, ge=60)
    """Longest a task may run; it then fails with that reason (the broker's visibility timeout
    is set an hour above it, so a long task is never sent to a second worker)."""
    media_dir: Path = Path("media")
    """Where uploads and downloads are stored while their task runs (deleted when it ends)."""
    model_dir: Path = Path("models")
    """Local model folders (`<model_dir>/<name>/model.bin`) and where bundled models are unpacked."""
    hub_allowed: bool = True
    """Allow downloads from the Hugging Face hub when a model is not available locally. Also
    off when `HF_HUB_OFFLINE=1` or the hub cannot be reached within two seconds."""
    aligner: StageChoice = "auto"
    """Word aligner: `production` (whisperX wav2vec2, needs the hub or a local model),
    `offline` (bundled models only), or `auto` (production when it loads, else offline)."""
    diarizer: StageChoice = "auto"
    """Speaker diarizer: `production` (pyannote's gated pipeline, needs HF_TOKEN and the hub),
    `offline` (bundled weights), or `auto` (production when it loads, else offline)."""
    diarization_model: str = "pyannote/speaker-diarization-community-1"
    """pyannote pipeline used by the production diarizer (a hub name or a local config.yaml)."""
    batch_size: int = Field(default=8, ge=1, le=256)
    """Default ASR batch size (chunks decoded at once), on CUDA and CPU alike."""
    cpu_threads: int = Field(default=0, ge=0)
    """Threads per model on CPU; 0 = every core."""
    worker_nice: int = Field(default=10, ge=0, le=19)
    """Workers lower their CPU priority by this much (Unix nice), so that the API and anything
    else interactive on the same machine answers quickly while pipelines take every core; 0
    keeps it. A worker with the cores to itself runs as fast either way."""
    preload_models: bool = False
    """Workers warm up (below) before they take their first task instead of beside it."""
    warm_up: bool = True
    """Workers load the default model, an aligner and the diarizer at start and run each once
    (state `warming`, shown by readiness), so the first task is as fast as the next."""
    model_idle_seconds: int = Field(default=0, ge=0)
    """Release a model after this many seconds unused; 0 keeps models loaded."""
    max_upload_mb: int = Field(default=1024, ge=1)
    """Largest accepted upload or download, in MiB (413 beyond it)."""
    max_audio_seconds: int = Field(default=4 * 3600, ge=1)
    """Longest accepted audio, in seconds; longer tasks fail with a clear reason."""
    download_timeout_seconds: float = Field(default=300, gt=0)
    """Time allowed to download a file given by URL."""
    callback_timeout_seconds: float = Field(default=10, gt=0)
    """Time allowed for one webhook delivery."""
    webhook_secret: str | None = None
    """Secret for the `X-Webhook-Signature` HMAC-SHA256 header of callbacks; empty: unsigned."""
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    """Deliveries tried per callback before it is recorded as failed."""
    webhook_backoff_seconds: float = Field(default=1.0, ge=0)
    """Wait before the first retry; doubles after each failed attempt."""
    allow_private_urls: bool = False
    """Let URL input and webhooks reach private/loopback addresses (tests and trusted networks)."""

    max_json_mb: int = Field(default=64, ge=1)
    """Largest JSON input (transcript, diarization) of /service/align and /service/combine, in MiB."""
    decode_timeout_seconds: float = Field(default=900, gt=0)
    """Time allowed to decode one file; a file that takes longer fails as corrupt."""
    decode_memory_mb: int = Field(default=4096, ge=256)
    """Address-space limit of each ffmpeg/ffprobe process, so a hostile file cannot exhaust memory."""
    min_free_disk_mb: int = Field(default=1024, ge=0)
    """Refuse uploads and downloads (507) when the media folder's disk has less free space."""
    media_quota_mb: int = Field(default=0, ge=0)
    """Most space stored media may take, in MiB (507 beyond it); 0 = bounded by free disk only."""
    media_retention_seconds: int = Field(default=0, ge=0)
    """Keep a task's input media this long after it ends (0: delete it when the task ends)."""
    result_retention_hours: float = Field(default=0, ge=0)
    """Delete ended tasks and their results this long after they end; 0 keeps them."""
    api_keys: str | None = None
    """Comma-separated API keys. When set, every endpoint but /health and the docs needs
    `Authorization: Bearer <key>`, and each key sees only its own tasks. Empty: no auth."""
    rate_limit_per_minute: int = Field(default=0, ge=0)
    """Requests per minute per API key (per client address without auth); beyond it 429 with
    `Retry-After`. 0: unlimited."""

    @field_validator("default_lang", mode="before")
    @classmethod
    def _auto_is_none(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    def media_path(self, key: str) -> Path:
        """The file of a media key: keys are names inside MEDIA_DIR, shared by every machine."""
        return self.media_dir / Path(key).name

    def for_worker(self) -> Settings:
        """A copy with the device-dependent defaults filled in, as a worker runs with them (it
        imports torch to look for CUDA: API processes never call this)."""
        device = self.device or ("cuda" if cuda_available() else "cpu")
        compute_type = self.compute_type or ("float16" if device == "cuda" else "int8")
        return self.model_copy(update={"device": device, "compute_type": compute_type})
