"""Logging and warning filters of every process (API and workers)."""

from __future__ import annotations

import logging
import os
import warnings

from app.net import RedactAccessLog
from app.settings import Settings

NOISY = ("pyannote", "torchaudio", "speechbrain", "lightning", "pytorch_lightning", "torch",
         "transformers", "whisperx", "pkg_resources", "resemblyzer")  # fmt: skip


def configure_logging(settings: Settings) -> None:
    # pyannote sends usage telemetry by default; a self-hosted service does not phone home.
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    logging.getLogger("app").setLevel("DEBUG" if settings.dev else settings.log_level.upper())
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessLog) for f in access.filters):
        access.addFilter(RedactAccessLog())  # callback URLs in query strings may hold tokens
    if settings.filter_warning:
        for module in NOISY:
            warnings.filterwarnings("ignore", module=module)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*torchcodec.*")
