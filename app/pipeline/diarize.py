"""Who spoke when: pyannote's gated diarization pipeline (the offline one: offline/diarize.py)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.pipeline.models import ModelCache, ModelUnavailable, hub_available
from app.pipeline.types import SAMPLE_RATE, Progress, SpeakerTurn

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)


class Diarizer(Protocol):
    name: str
    """Recorded in task metadata, e.g. `pyannote:pyannote/speaker-diarization-community-1`."""

    def diarize(
        self, audio: np.ndarray, *, num_speakers: int | None = None,
        min_speakers: int | None = None, max_speakers: int | None = None,
        progress: Progress | None = None,
    ) -> list[SpeakerTurn]: ...  # fmt: skip


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

    def __init__(self, pipeline: Any, name: str) -> None:
        self.pipeline = pipeline
        self.name = name

    def diarize(
        self, audio: np.ndarray, *, num_speakers: int | None = None,
        min_speakers: int | None = None, max_speakers: int | None = None,
        progress: Progress | None = None,
    ) -> list[SpeakerTurn]:  # fmt: skip
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return []
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
        annotation = self._annotation(output, num_speakers or min_speakers or 1)
        if len(annotation.labels()) < (num_speakers or min_speakers or 0):
            log.info(
                "asked for %s speakers, the audio gave %d",
                num_speakers or f"at least {min_speakers}",
                len(annotation.labels()),
            )
        if progress is not None:
            progress(100.0)
        return _turns(annotation, audio.size / SAMPLE_RATE)

    def _annotation(self, output: Any, keep: int) -> Any:
        return getattr(output, "speaker_diarization", output)  # pyannote 3.x gives it directly


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
        return PyannoteDiarizer(pipeline.to(torch.device(str(settings.device))), f"pyannote:{name}")

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


def _hook(progress: Progress | None) -> Any:
    """A pyannote pipeline hook that reports the two long steps as 0-20 % and 20-95 %."""
    if progress is None:
        return None
    spans = {"segmentation": (0.0, 20.0), "embeddings": (20.0, 95.0)}
    done = [0.0]

    def hook(step: str, artifact: Any, file: Any = None, total: Any = None, completed: Any = None):
        if step in spans and total and completed is not None:
            low, high = spans[step]
            percent = low + (high - low) * min(completed / total, 1.0)
            if percent > done[0]:
                done[0] = percent
                progress(percent)

    return hook


def _turns(annotation: Any, duration: float) -> list[SpeakerTurn]:
    """Turns sorted by start, inside the audio, speakers renamed SPEAKER_00, SPEAKER_01, … in
    order of first appearance."""
    speakers: dict[str, str] = {}
    turns: list[SpeakerTurn] = []
    for segment, track, label in sorted(
        annotation.itertracks(yield_label=True), key=lambda t: (t[0].start, t[0].end)
    ):
        start, end = round(max(segment.start, 0.0), 3), round(min(segment.end, duration), 3)
        if end > start:
            speaker = speakers.setdefault(label, f"SPEAKER_{len(speakers):02d}")
            turns.append({"label": str(track), "speaker": speaker, "start": start, "end": end})
    return turns
