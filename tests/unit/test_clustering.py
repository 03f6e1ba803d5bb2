"""The offline diarizer's count estimate (NME-SC's eigengap), on embeddings drawn around known
voices."""

import numpy as np
import pytest

from app.pipeline.offline.diarize import EIGENGAP, _eigengap_count, _unit


def _embeddings(voices: int, per_voice: int, spread: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(voices, 64)))
    x = np.repeat(centres, per_voice, axis=0) + spread * rng.normal(size=(voices * per_voice, 64))
    return _unit(x)


@pytest.mark.parametrize("voices", [2, 3, 4, 5])
def test_the_eigengap_finds_as_many_voices_as_the_embeddings_hold(voices):
    assert _eigengap_count(_embeddings(voices, 60, 0.08), 8, EIGENGAP) == voices


def test_the_eigengap_subsamples_long_recordings_and_never_exceeds_its_bound():
    x = _embeddings(3, 400, 0.08)  # more than EIGENGAP["size"]: an even subsample is used
    assert _eigengap_count(x, 8, EIGENGAP) == 3
    assert _eigengap_count(_embeddings(6, 40, 0.08), 4, EIGENGAP) <= 4
    assert _eigengap_count(x[:2], 8, EIGENGAP) == 1  # too few to tell
