"""Fixtures shared by every test: real speech from pyannote-audio, and per-test settings."""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never wait on a hub that is not there

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "models"  # bundled models are unpacked here once and shared by tests


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """pyannote-audio's sample: 30 s telephone call, two speakers, with reference turns/words."""
    return Path(str(resources.files("pyannote.audio") / "sample"))


@pytest.fixture(scope="session")
def sample_wav(sample_dir: Path) -> Path:
    return sample_dir / "sample.wav"


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory, sample_wav: Path) -> Path:
    """Ninety seconds of the real two-speaker call: long enough to act on while it runs."""
    path = tmp_path_factory.mktemp("long") / "ninety-seconds.wav"
    subprocess.run(["sox", *[str(sample_wav)] * 3, str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def sample_audio(sample_wav: Path) -> np.ndarray:
    from app.pipeline.audio import decode_audio

    return decode_audio(sample_wav)


@pytest.fixture(scope="session")
def sample_turns(sample_dir: Path) -> list[tuple[float, float, str]]:
    """Reference speaker turns (start, end, speaker) from sample.rttm."""
    turns = []
    for line in (sample_dir / "sample.rttm").read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


@pytest.fixture(scope="session")
def sample_reference(sample_dir: Path) -> list[tuple[float, float, str, str]]:
    """Reference utterances (start, end, speaker, text) from sample.stm."""
    rows = []
    for line in (sample_dir / "sample.stm").read_text().splitlines():
        f = line.split(maxsplit=5)
        rows.append((float(f[3]), float(f[4]), f[2], f[5] if len(f) > 5 else ""))
    return rows


@pytest.fixture
def settings(tmp_path: Path):
    from app.settings import Settings

    return Settings(
        _env_file=None,
        db_url=f"sqlite:///{tmp_path / 'test.db'}",
        media_dir=tmp_path / "media",
        model_dir=MODEL_DIR,
        device="cpu",
        compute_type="int8",
        hub_allowed=False,
        workers=0,  # tests start their workers themselves (tests/e2e/conftest.py)
        warm_up=False,  # models are loaded once per test session instead
    )


@pytest.fixture(scope="session")
def model_cache():
    """One model cache for the whole run, so each real model loads once."""
    from app.pipeline.models import ModelCache

    return ModelCache()


@pytest.fixture(scope="session")
def postgres_admin():
    """One PostgreSQL server for the run, started on first use (tests/postgres.py)."""
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """The same test on SQLite and on PostgreSQL (an empty database each time)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    from tests.postgres import new_database

    return new_database(request.getfixturevalue("postgres_admin"))
