"""Logging and warning filters of every process (API and workers)."""

from __future__ import annotations

import json
import logging
import os
import warnings
from datetime import UTC, datetime

from app.net import RedactAccessLog
from app.settings import Settings

NOISY = ("pyannote", "torchaudio", "speechbrain", "lightning", "pytorch_lightning", "torch",
         "transformers", "whisperx", "pkg_resources", "resemblyzer")  # fmt: skip


class JsonLines(logging.Formatter):
    """LOG_FORMAT=json: one JSON object a line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }  # fmt: skip
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    # pyannote sends usage telemetry by default; a self-hosted service does not phone home.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    logging.getLogger("app").setLevel("DEBUG" if settings.dev else settings.log_level.upper())
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessLog) for f in access.filters):
        access.addFilter(RedactAccessLog())  # callback URLs in query strings may hold tokens
    if settings.log_format == "json":
        names = [None, "app", "uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error",
                 "gunicorn.access", "celery"]  # fmt: skip
        for handler in {h for name in names for h in logging.getLogger(name).handlers}:
            handler.setFormatter(JsonLines())
    if settings.filter_warning:
        for module in NOISY:
            warnings.filterwarnings("ignore", module=module)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*torchcodec.*")
