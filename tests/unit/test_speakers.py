"""Matching diarized voices with speaker profiles: decided relative to the other voices and
profiles, not by one similarity cut-off (vectors made with known cosines)."""

import numpy as np

from app.pipeline.speakers import match_speakers, name_speakers


def _voices(similarities: dict[tuple[str, str], float], dim: int = 64, seed: int = 0) -> dict:
    """Unit vectors whose pairwise cosines are those asked for (others near 0.5), by building
    them from a shared part and a private part per vector."""
    rng = np.random.default_rng(seed)
    names = sorted({n for pair in similarities for n in pair})
    gram = np.full((len(names), len(names)), 0.5)
    np.fill_diagonal(gram, 1.0)
    for (a, b), s in similarities.items():
        i, j = names.index(a), names.index(b)
        gram[i, j] = gram[j, i] = s
    root = np.linalg.cholesky(gram)  # rows: vectors with exactly these cosines
    basis, _ = np.linalg.qr(rng.normal(size=(dim, len(names))))
    return {n: (basis @ root[k]).tolist() for k, n in enumerate(names)}


def test_each_enrolled_voice_gets_its_name_and_an_unknown_voice_none():
    v = _voices({("A", "pA"): 0.86, ("B", "pB"): 0.84, ("C", "pA"): 0.6})
    profiles = [{"name": "Ann", "embedding": v["pA"]}, {"name": "Bob", "embedding": v["pB"]}]
    matches = match_speakers({"S0": v["A"], "S1": v["B"], "S2": v["C"]}, profiles)
    assert {k: m[0] for k, m in matches.items()} == {"S0": "Ann", "S1": "Bob", "S2": None}
    assert 0.85 < matches["S0"][1] < 0.87


def test_a_voice_that_scores_high_on_someone_elses_profile_stays_unnamed():
    """The trial that defeated a fixed cut-off: a voice whose own profile was deleted scored
    0.83 against another profile. That profile's owner is in the recording, closer still."""
    v = _voices({("X", "pB"): 0.83, ("B", "pB"): 0.88, ("X", "B"): 0.7})
    matches = match_speakers({"S0": v["X"], "S1": v["B"]}, [{"name": "Bob", "embedding": v["pB"]}])
    assert matches["S1"][0] == "Bob" and matches["S0"][0] is None


def test_a_profile_too_close_to_two_voices_names_neither():
    v = _voices({("A", "p"): 0.84, ("B", "p"): 0.83, ("A", "B"): 0.8})
    matches = match_speakers({"S0": v["A"], "S1": v["B"]}, [{"name": "Ann", "embedding": v["p"]}])
    assert [m[0] for m in matches.values()] == [None, None]


def test_a_weak_likeness_is_nobody():
    v = _voices({("A", "p"): 0.62})
    assert match_speakers({"S0": v["A"]}, [{"name": "Ann", "embedding": v["p"]}])["S0"][0] is None


def test_names_replace_labels_in_turns_and_embeddings_and_other_models_are_not_compared():
    v = _voices({("A", "pA"): 0.9})
    turns = [{"label": "0", "speaker": "S0", "start": 0.0, "end": 1.0}]
    profiles = [{"name": "Ann", "embedding": v["pA"], "model": "resemblyzer-ge2e"},
                {"name": "Old", "embedding": v["pA"], "model": "pyannote:wespeaker"}]  # fmt: skip
    named, embeddings, record = name_speakers(turns, {"S0": v["A"]}, profiles, "resemblyzer-ge2e")
    assert named[0]["speaker"] == "Ann" and list(embeddings) == ["Ann"]
    assert record["speaker_matches"] == [{"label": "S0", "name": "Ann", "similarity": 0.9}]
    assert "pyannote:wespeaker" in record["speaker_match_note"]
