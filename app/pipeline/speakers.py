"""Speakers known by name: the diarized voices of a recording matched with the caller's profiles."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.pipeline.types import SpeakerTurn

MIN_SIMILARITY = 0.72
"""No profile names a voice less similar than this (Resemblyzer: different speakers score a
median 0.73, the same speaker on other audio 0.84-0.86)."""
MARGIN = 0.04
"""A match must beat the runner-up profile of the voice and the runner-up voice of the profile
by this much: similar scores mean the embedding cannot tell them apart."""


def _unit(vector: list[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    return v / (np.linalg.norm(v) or 1.0)


def match_speakers(
    embeddings: dict[str, list[float]], profiles: list[dict[str, Any]]
) -> dict[str, tuple[str | None, float]]:
    """(profile name or None, similarity to the closest profile) for each diarized label.

    A single similarity cut-off cannot tell "this is Lucas" from "this voice sounds a bit like
    Lucas", so a pair is decided relative to the rest of the recording and of the profiles:
    voice and profile must be each other's closest match by MARGIN, the profile must be closer
    to the voice than any other person heard in the recording is, and the similarity must reach
    MIN_SIMILARITY. Pairs are taken best first; a profile names at most one voice."""
    labels = list(embeddings)
    if not labels:
        return {}
    if not profiles:
        return dict.fromkeys(labels, (None, 0.0))
    voices = np.stack([_unit(embeddings[label]) for label in labels])
    known = np.stack([_unit(p["embedding"]) for p in profiles])
    score = voices @ known.T  # labels × profiles, cosine
    among = voices @ voices.T
    np.fill_diagonal(among, -1.0)
    best = {label: (None, round(float(score[i].max()), 3)) for i, label in enumerate(labels)}
    result: dict[str, tuple[str | None, float]] = dict(best)
    taken_labels: set[int] = set()
    taken_profiles: set[int] = set()
    for flat in np.argsort(-score, axis=None):
        i, j = divmod(int(flat), len(profiles))
        if i in taken_labels or j in taken_profiles:
            continue
        s = score[i, j]
        other_profiles = np.delete(score[i], j)
        other_voices = np.delete(score[:, j], i)
        if (
            s >= MIN_SIMILARITY
            and (other_profiles.size == 0 or s - other_profiles.max() >= MARGIN)
            and (other_voices.size == 0 or s - other_voices.max() >= MARGIN)
            and (len(labels) == 1 or s > among[i].max())
        ):
            result[labels[i]] = (profiles[j]["name"], round(float(s), 3))
            taken_labels.add(i)
            taken_profiles.add(j)
    return result


def name_speakers(
    turns: list[SpeakerTurn],
    embeddings: dict[str, list[float]],
    profiles: list[dict[str, Any]],
    model: str,
) -> tuple[list[SpeakerTurn], dict[str, list[float]], dict[str, Any]]:
    """Turns and embeddings with matched labels replaced by profile names, and what goes into
    `metadata.processing`: `speaker_matches` ({label, name or null, similarity} per speaker)
    and, when profiles of another embedding model could not be compared, a note saying so."""
    usable = [p for p in profiles if p.get("model") == model]
    matches = match_speakers(embeddings, usable)
    names = {label: name for label, (name, _) in matches.items() if name}
    record: dict[str, Any] = {"speaker_matches": [
        {"label": label, "name": name, "similarity": similarity}
        for label, (name, similarity) in matches.items()
    ]}  # fmt: skip
    others = sorted({p.get("model", "?") for p in profiles} - {model})
    if others:
        record["speaker_match_note"] = (
            f"profiles made by {', '.join(others)} were not compared: this diarizer's voices "
            f"are {model} embeddings; enrol those speakers again to match them here"
        )
    renamed: list[SpeakerTurn] = [
        {**t, "speaker": names.get(t["speaker"], t["speaker"])} for t in turns
    ]
    return renamed, {names.get(k, k): v for k, v in embeddings.items()}, record
