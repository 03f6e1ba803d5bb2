"""A diarizer from bundled weights: pyannote's pipeline, whisperX's segmentation, Resemblyzer."""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from app.pipeline.diarize import PyannoteDiarizer
from app.pipeline.models import ModelCache
from app.pipeline.types import SAMPLE_RATE

if TYPE_CHECKING:
    import torch

    from app.settings import Settings

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


def load_offline_diarizer(
    cache: ModelCache, settings: Settings
) -> AbstractContextManager[OfflineDiarizer]:
    device = str(settings.device)
    return cache.use(
        ("diarizer", OFFLINE_NAME, device),
        lambda: OfflineDiarizer(_offline_pipeline(device), OFFLINE_NAME),
    )


class OfflineDiarizer(PyannoteDiarizer):
    """pyannote's SpeakerDiarization pipeline assembled from weights that registry packages
    ship: the segmentation model bundled with whisperX (up to 3 speakers per 5 s window) and
    Resemblyzer's GE2E speaker encoder, with agglomerative clustering."""

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
