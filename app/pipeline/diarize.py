"""Who spoke when: pyannote's gated diarization pipeline, or one assembled from bundled weights."""

from __future__ import annotations

import logging
import threading
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.pipeline.models import ModelCache, ModelUnavailable, hub_available
from app.pipeline.types import SAMPLE_RATE, Progress, SpeakerTurn

if TYPE_CHECKING:
    import torch

    from app.settings import Settings

log = logging.getLogger(__name__)

OFFLINE_NAME = "offline:segmentation+resemblyzer"

OFFLINE_PARAMS = {
    "segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
    "clustering": {"method": "centroid", "threshold": 0.48, "min_cluster_size": 8},
}
"""Hyper-parameters of the offline pipeline. With these, the speaker count is right on sample.wav
for clustering thresholds 0.46-0.55 and on synthetic 2-4 voice conversations for 0.46-0.52."""

MIN_SPEAKER_SECONDS = 1.0
"""The offline pipeline folds a speaker heard for less than this into the closest voice (unless
the requested speaker count needs it): such clusters are artefacts of cuts and noise."""


class Diarizer(Protocol):
    name: str
    """Recorded in task metadata, e.g. `pyannote:pyannote/speaker-diarization-community-1`."""

    def diarize(
        self, audio: np.ndarray, *, num_speakers: int | None = None,
        min_speakers: int | None = None, max_speakers: int | None = None,
        progress: Progress | None = None,
    ) -> list[SpeakerTurn]: ...  # fmt: skip


def load_diarizer(*, cache: ModelCache, settings: Settings) -> Diarizer:
    """pyannote's pipeline (`settings.diarization_model`) when production is asked for or, in
    auto mode, when it can be had without waiting on an unreachable hub; else the offline one."""
    if settings.diarizer != "offline":
        try:
            return PyannoteDiarizer.load(cache, settings)
        except ModelUnavailable as exc:
            if settings.diarizer == "production":
                raise
            log.info("using the offline diarizer: %s", exc)
    return OfflineDiarizer.load(cache, settings)


def check_speaker_counts(
    num_speakers: int | None, min_speakers: int | None, max_speakers: int | None
) -> None:
    for field, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                         ("max_speakers", max_speakers)):  # fmt: skip
        if value is not None and value < 1:
            raise ValueError(f"{field} must be at least 1 (got {value}).")
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise ValueError(
            f"min_speakers ({min_speakers}) must not exceed max_speakers ({max_speakers})."
        )
    if num_speakers is not None and not (
        (min_speakers or 1) <= num_speakers <= (max_speakers or num_speakers)
    ):
        raise ValueError(
            f"num_speakers ({num_speakers}) must lie within min_speakers..max_speakers "
            f"({min_speakers}..{max_speakers})."
        )


class PyannoteDiarizer:
    """A pyannote.audio speaker diarization pipeline run on in-memory audio."""

    def __init__(self, pipeline: Any, name: str) -> None:
        self.pipeline = pipeline
        self.name = name
        self._lock = threading.Lock()  # one pipeline, one file at a time

    @classmethod
    def load(cls, cache: ModelCache, settings: Settings) -> PyannoteDiarizer:
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
            return cls(pipeline.to(torch.device(str(settings.device))), f"pyannote:{name}")

        return cache.get(("diarizer", source, settings.device), load)

    def diarize(
        self, audio: np.ndarray, *, num_speakers: int | None = None,
        min_speakers: int | None = None, max_speakers: int | None = None,
        progress: Progress | None = None,
    ) -> list[SpeakerTurn]:  # fmt: skip
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return []
        import torch

        file = {"waveform": torch.from_numpy(audio[None]), "sample_rate": SAMPLE_RATE}
        with self._lock, warnings.catch_warnings():
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


class OfflineDiarizer(PyannoteDiarizer):
    """pyannote's SpeakerDiarization pipeline assembled from weights that registry packages
    ship: the segmentation model bundled with whisperX (up to 3 speakers per 5 s window) and
    Resemblyzer's GE2E speaker encoder, with agglomerative clustering."""

    @classmethod
    def load(cls, cache: ModelCache, settings: Settings) -> OfflineDiarizer:
        device = str(settings.device)
        return cache.get(
            ("diarizer", OFFLINE_NAME, device), lambda: cls(_offline_pipeline(device), OFFLINE_NAME)
        )

    def _annotation(self, output: Any, keep: int) -> Any:
        return _fold_brief_speakers(output.speaker_diarization, output.speaker_embeddings, keep)


class ResemblyzerEmbedding:
    """Resemblyzer's voice encoder, shaped as pyannote's pipeline calls a speaker embedding:
    one embedding per waveform, from the samples its mask marks as that speaker's."""

    sample_rate = SAMPLE_RATE
    dimension = 256
    metric = "cosine"
    min_num_samples = SAMPLE_RATE // 10

    def __init__(self, device: str) -> None:
        import torchaudio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated scipy and pkg_resources imports
            from resemblyzer import VoiceEncoder, hparams

        self.encoder = VoiceEncoder(device, verbose=False)
        # resemblyzer.audio.wav_to_mel_spectrogram (librosa's power mel spectrogram), the same
        # to 1e-7 without the numba compilation librosa spends seconds on at first use
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=hparams.sampling_rate,
            n_fft=hparams.sampling_rate * hparams.mel_window_length // 1000,
            hop_length=hparams.sampling_rate * hparams.mel_window_step // 1000,
            n_mels=hparams.mel_n_channels,
            mel_scale="slaney",
            norm="slaney",
            pad_mode="constant",
        ).to(self.encoder.device)

    def __call__(self, waveforms: torch.Tensor, masks: torch.Tensor | None = None) -> np.ndarray:
        import torch

        batch, _, num_samples = waveforms.shape
        embeddings = np.full((batch, self.dimension), np.nan, dtype=np.float32)
        partials, owners = [], []
        with torch.inference_mode():
            for b in range(batch):
                speech = waveforms[b, 0].cpu().numpy()
                if masks is not None:
                    mask = masks[b].cpu().numpy()
                    frame = np.arange(num_samples) * len(mask) // num_samples
                    speech = speech[mask[frame] > 0.5]
                if speech.size < self.min_num_samples:
                    continue
                # Resemblyzer's preprocessing: raise quiet speech to -30 dBFS (never lower it)
                rms = float(np.sqrt(np.mean(speech**2)))
                speech = speech * max(1.0, 10 ** (-30 / 20) / max(rms, 1e-9))
                wavs, mels = self.encoder.compute_partial_slices(speech.size, 1.3, 0.75)
                speech = np.pad(speech, (0, max(0, wavs[-1].stop - speech.size)))
                mel = self._mel(torch.from_numpy(speech).to(self.encoder.device)).T
                partials += [mel[s] for s in mels]
                owners += [b] * len(mels)
            if not partials:
                return embeddings
            partial_embeddings = self.encoder(torch.stack(partials)).cpu().numpy()
        for b in set(owners):
            mean = partial_embeddings[np.asarray(owners) == b].mean(axis=0)
            embeddings[b] = mean / np.linalg.norm(mean)
        return embeddings


def _offline_pipeline(device: str) -> Any:
    import torch
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.audio.pipelines.utils import get_model
    from pyannote.core import SlidingWindowFeature

    class OfflineSpeakerDiarization(SpeakerDiarization):
        def reconstruct(self, segmentations: Any, hard_clusters: Any, count: Any) -> Any:
            # pyannote adds a made-up speaker wherever the segmentation hears more voices at once
            # than clustering found; cap the count at the voices found instead
            capped = np.minimum(count.data, hard_clusters.max() + 1)
            count = SlidingWindowFeature(capped, count.sliding_window)
            return super().reconstruct(segmentations, hard_clusters, count)

    segmentation = get_model(str(resources.files("whisperx") / "assets" / "pytorch_model.bin"))
    pipeline = OfflineSpeakerDiarization(
        segmentation=segmentation,
        segmentation_step=0.2,  # of the 5 s window: half the work of 0.1, same accuracy here
        embedding=segmentation,  # placeholder, replaced below
        embedding_exclude_overlap=True,
        plda=object.__new__(PLDA),  # required by the constructor, used only by VBx clustering
        clustering="AgglomerativeClustering",
        embedding_batch_size=64,
        segmentation_batch_size=32,
    )
    pipeline._embedding = ResemblyzerEmbedding(device)
    pipeline.instantiate(OFFLINE_PARAMS)
    return pipeline.to(torch.device(device))


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


def _fold_brief_speakers(annotation: Any, centroids: np.ndarray, keep: int) -> Any:
    labels = list(annotation.labels())
    voices = dict(zip(labels, centroids, strict=True))
    while len(labels) > keep:
        brief = min(labels, key=annotation.label_duration)
        if annotation.label_duration(brief) >= MIN_SPEAKER_SECONDS:
            break
        labels.remove(brief)
        closest = max(labels, key=lambda label: _cosine(voices[brief], voices[label]))
        annotation = annotation.rename_labels({brief: closest}).support()
    return annotation


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


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
