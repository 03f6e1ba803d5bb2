"""Who spoke when: pyannote's gated diarization pipeline (the offline one: offline/diarize.py)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.pipeline.models import ModelCache, ModelUnavailable, hub_available
from app.pipeline.types import SAMPLE_RATE, Progress, SpeakerTurn

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)


MIN_ENROL_SECONDS = 3.0
"""`embed` refuses audio with less speech than this: too little for a stable voice embedding."""


@dataclass
class Diarization:
    """Who spoke when, and what each speaker sounds like."""

    turns: list[SpeakerTurn]
    embeddings: dict[str, list[float]] = field(default_factory=dict)
    """Speaker label (SPEAKER_XX, as in `turns`) → unit-norm voice embedding of that speaker (the
    cluster centroid), rounded to 5 decimals; comparable with `embed` of the same diarizer. Every
    label has one, except a speaker pyannote's production pipeline adds where it hears more
    voices at once than it found clusters (it has no centroid); the offline one adds none."""


class Diarizer(Protocol):
    name: str
    """Recorded in task metadata, e.g. `pyannote:pyannote/speaker-diarization-community-1`."""
    embedding_model: str
    """What the voice embeddings come from: embeddings of different models are not comparable."""

    def diarize(
        self, audio: np.ndarray, *, num_speakers: int | None = None,
        min_speakers: int | None = None, max_speakers: int | None = None,
        progress: Progress | None = None,
    ) -> Diarization: ...  # fmt: skip

    def embed(self, audio: np.ndarray) -> tuple[list[float], float]:
        """One unit-norm voice embedding of the speech in `audio` (one person speaking) and the
        seconds of speech it was taken from; ValueError under MIN_ENROL_SECONDS of speech."""
        ...


@contextmanager
def load_diarizer(*, cache: ModelCache, settings: Settings) -> Iterator[Diarizer]:
    """The diarizer, held by this caller alone: pyannote's pipeline (`settings.diarization_model`)
    when production is asked for or, in auto mode, when it can be had without waiting on an
    unreachable hub; else the offline one."""
    with ExitStack() as stack:
        diarizer: Diarizer | None = None
        if settings.diarizer != "offline":
            try:
                diarizer = stack.enter_context(_pyannote(cache, settings))
            except ModelUnavailable as exc:
                if settings.diarizer == "production":
                    raise
                log.info("using the offline diarizer: %s", exc)
        if diarizer is None:
            from app.pipeline.offline.diarize import load_offline_diarizer

            diarizer = stack.enter_context(load_offline_diarizer(cache, settings))
        yield diarizer


class PyannoteDiarizer:
    """A pyannote.audio speaker diarization pipeline run on in-memory audio."""

    def __init__(self, pipeline: Any, name: str, embedding_model: str) -> None:
        self.pipeline = pipeline
        self.name = name
        self.embedding_model = embedding_model

    def diarize(
        self, audio: np.ndarray, *, num_speakers: int | None = None,
        min_speakers: int | None = None, max_speakers: int | None = None,
        progress: Progress | None = None,
    ) -> Diarization:  # fmt: skip
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return Diarization([])
        import torch

        file = {"waveform": torch.from_numpy(audio[None]), "sample_rate": SAMPLE_RATE}
        with warnings.catch_warnings():
            # pyannote warns when it finds fewer speakers than min_speakers, and numpy when no
            # speech is long enough to cluster (all of it then goes to one speaker)
            warnings.filterwarnings("ignore", message=r"(?s).*outside\s+the given bounds")
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            output = self.pipeline(
                file, num_speakers=num_speakers, min_speakers=min_speakers,
                max_speakers=max_speakers, hook=_hook(progress),
            )  # fmt: skip
        annotation, voices = self._annotation(output, num_speakers or min_speakers or 1)
        if len(annotation.labels()) < (num_speakers or min_speakers or 0):
            log.info(
                "asked for %s speakers, the audio gave %d",
                num_speakers or f"at least {min_speakers}",
                len(annotation.labels()),
            )
        if progress is not None:
            progress(100.0)
        turns, names = _turns(annotation, audio.size / SAMPLE_RATE)
        embeddings = {}
        for label, speaker in names.items():
            voice = np.asarray(voices.get(label, 0.0), dtype=np.float64).reshape(-1)
            norm = float(np.linalg.norm(voice))
            if np.isfinite(norm) and norm > 0:  # pyannote pads centroids it lacks with zeros
                embeddings[speaker] = [round(float(v), 5) for v in voice / norm]
        return Diarization(turns, embeddings)

    def _annotation(
        self,
        output: Any,
        keep: int,  # noqa: ARG002 (the offline diarizer folds down to it)
    ) -> tuple[Any, dict[Any, np.ndarray]]:
        """The annotation and each of its labels' centroid, of at least `keep` speakers."""
        annotation = getattr(output, "speaker_diarization", output)  # pyannote 3.x: directly
        centroids = getattr(output, "speaker_embeddings", None)
        if centroids is None:
            return annotation, {}
        return annotation, dict(zip(annotation.labels(), np.asarray(centroids), strict=False))

    def embed(self, audio: np.ndarray) -> tuple[list[float], float]:
        import torch

        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        mask = speech_frames(audio)
        seconds = round(float(mask.sum()) * FRAME_SECONDS, 2)
        if seconds < MIN_ENROL_SECONDS:
            raise ValueError(
                f"only {seconds:.1f} s of speech was found; enrol at least "
                f"{MIN_ENROL_SECONDS:g} s of one person speaking"
            )
        embedding = self.pipeline._embedding(
            torch.from_numpy(audio[None, None]), torch.from_numpy(mask[None].astype(np.float32))
        )[0]
        norm = float(np.linalg.norm(embedding))
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("no voice embedding could be taken from this audio")
        return [round(float(v), 5) for v in embedding / norm], seconds


def _pyannote(cache: ModelCache, settings: Settings) -> AbstractContextManager[PyannoteDiarizer]:
    """`settings.diarization_model` from a local pipeline folder or config.yaml, from the
    copy a previous download left in `<model_dir>/diarization`, or from the hub (HF_TOKEN
    needed). When none serves, raises ModelUnavailable at once (after a 2 s reachability check
    of the hub at most) instead of stalling on hub lookups."""
    name = settings.diarization_model
    root = settings.model_dir / "diarization"  # hub downloads land here (HF cache layout)
    source = _local_pipeline(name, root)
    if source is None:
        how = (
            f"The production diarizer needs pyannote's pipeline '{name}': set HF_TOKEN to a "
            f"Hugging Face token of an account that accepted its terms at https://hf.co/{name}, "
            f"allow network access (HUB_ALLOWED=true, HF_HUB_OFFLINE unset) so it is "
            f"downloaded once into {root}, or set DIARIZATION_MODEL to a local pipeline "
            f"folder or config.yaml. DIARIZER=offline (or auto) uses the bundled offline "
            f"diarizer instead."
        )
        if not settings.hf_token:
            raise ModelUnavailable(f"HF_TOKEN is not set. {how}")
        if not hub_available(settings.hub_allowed):
            raise ModelUnavailable(f"The Hugging Face hub cannot be reached. {how}")
        source = name

    def load() -> PyannoteDiarizer:
        import torch
        from pyannote.audio import Pipeline

        try:
            pipeline = Pipeline.from_pretrained(source, token=settings.hf_token, cache_dir=root)
        except Exception as exc:  # gated, missing files, bad config: all mean "not here"
            raise ModelUnavailable(
                f"pyannote pipeline '{name}' could not be loaded ({exc}). Check that HF_TOKEN "
                f"belongs to an account that accepted the terms at https://hf.co/{name}."
            ) from exc
        if pipeline is None:
            raise ModelUnavailable(
                f"pyannote pipeline '{name}' could not be downloaded: accept its terms at "
                f"https://hf.co/{name} with the account of HF_TOKEN."
            )
        pipeline = pipeline.to(torch.device(str(settings.device)))
        return PyannoteDiarizer(pipeline, f"pyannote:{name}", _embedding_model(pipeline, name))

    return cache.use(("diarizer", f"pyannote:{name}", settings.device), load)


def _local_pipeline(name: str, root: Path) -> str | None:
    """A pipeline that loads without the hub: a local path, or a copy downloaded before."""
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(name, "config.yaml", cache_dir=root)
    except ValueError:  # not a valid hub name
        return None
    return str(Path(config).parent) if isinstance(config, str) else None


def _embedding_model(pipeline: Any, name: str) -> str:
    """`pyannote:<embedding model>`: its hub name, or `<pipeline>/embedding` when the pipeline
    names it by a local path (which differs from machine to machine)."""
    embedding = getattr(pipeline, "embedding", None)
    if isinstance(embedding, dict) and "checkpoint" in embedding:
        embedding = "/".join(
            str(embedding[k]) for k in ("checkpoint", "subfolder") if k in embedding
        )
    if isinstance(embedding, str) and not Path(embedding).expanduser().exists():
        return f"pyannote:{embedding}"
    return f"pyannote:{name}/embedding"


FRAME_SECONDS = 0.01


def speech_frames(audio: np.ndarray, floor_db: float = 30.0) -> np.ndarray:
    """Energy voice activity of 10 ms frames: louder than the 95th percentile frame less
    `floor_db` and 6 dB above the noise floor (the 10th percentile frame)."""
    hop = int(FRAME_SECONDS * SAMPLE_RATE)
    frames = audio[: audio.size // hop * hop].astype(np.float64).reshape(-1, hop)
    if frames.size == 0:
        return np.zeros(0, dtype=bool)
    power = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud, quiet = np.percentile(power, 95), np.percentile(power, 10)
    return (power > max(loud - floor_db, quiet + 6.0)) & (power > -70.0)


def _hook(progress: Progress | None) -> Any:
    """A pyannote pipeline hook that reports the two long steps as 0-20 % and 20-95 %."""
    if progress is None:
        return None
    spans = {"segmentation": (0.0, 20.0), "embeddings": (20.0, 95.0)}
    done = [0.0]

    def hook(step: str, _artifact: Any, total: Any = None, completed: Any = None, **_: Any) -> None:
        if step in spans and total and completed is not None:
            low, high = spans[step]
            percent = low + (high - low) * min(completed / total, 1.0)
            if percent > done[0]:
                done[0] = percent
                progress(percent)

    return hook


def _turns(annotation: Any, duration: float) -> tuple[list[SpeakerTurn], dict[Any, str]]:
    """Turns sorted by start, inside the audio, speakers renamed SPEAKER_00, SPEAKER_01, … in
    order of first appearance; and the renaming (annotation label → speaker)."""
    speakers: dict[Any, str] = {}
    turns: list[SpeakerTurn] = []
    for segment, track, label in sorted(
        annotation.itertracks(yield_label=True), key=lambda t: (t[0].start, t[0].end)
    ):
        start, end = round(max(segment.start, 0.0), 3), round(min(segment.end, duration), 3)
        if end > start:
            speaker = speakers.setdefault(label, f"SPEAKER_{len(speakers):02d}")
            turns.append({"label": str(track), "speaker": speaker, "start": start, "end": end})
    return turns, speakers
