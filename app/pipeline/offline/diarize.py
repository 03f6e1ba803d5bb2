"""A diarizer from bundled weights: pyannote's pipeline, whisperX's segmentation, Resemblyzer."""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from importlib import resources
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from app.pipeline.diarize import PyannoteDiarizer
from app.pipeline.models import ModelCache
from app.pipeline.types import SAMPLE_RATE

if TYPE_CHECKING:
    import torch

    from app.settings import Settings

OFFLINE_NAME = "offline:segmentation+resemblyzer"
OFFLINE_EMBEDDING = "resemblyzer-ge2e"

OFFLINE_PARAMS = {
    "segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
    "clustering": {"method": "centroid", "threshold": 0.44, "min_cluster_size": 8},
}
"""Hyper-parameters of the offline pipeline; the clustering ones are VoiceClustering's first pass
(0.44, cosine 0.90: at 0.48 the two real voices of sample.wav, centroids 0.83 apart, can fall in
one first-pass cluster)."""

LARGE_SHARE = 0.05
"""A first-pass cluster is a voice candidate when it holds this share of the embeddings: smaller
ones are fringes of a voice (or noise), and their number grows with the length of the audio."""

SAME_VOICE = {"cosine": 0.84, "together": 0.12, "surely": 0.92}
"""With the count unknown, two voice candidates are one person when their centroids have at least
`cosine` and they are heard in the same 5 s window (as two of its local speakers, which the
segmentation model says are different people) in at most `together` of the windows of the rarer
one; or, whatever the windows say, when their centroids have at least `surely`. Measured on the
dev set (bench/devset.py, size small): fragments of one voice lie at centroid cosine 0.78-0.91,
sharing 0-8 % of windows (17 % in a reverberant room); different people at up to 0.85 (0.83 for
the two real voices of sample.wav), sharing 18-100 % (0 % for one pair under babble noise). The
speaker count was right on 8 of 9 dev recordings for cosine 0.84, together 0.10-0.15, first
pass threshold 0.44; surely 0.90-0.92 made no difference."""

MIXED_VOICES = {"share": 0.10, "pairs": 3, "cosine": 0.86, "apart": 0.78}
"""With the count unknown and two voices or more found, one voice more is taken when no two
voices are then `apart` or closer (below the fragments of one voice in SAME_VOICE); or when it
parts at least `share` (and `pairs`) of the pairs of local speakers heard in one 5 s window
(different people, says the segmentation model) that the voices found put in one, and leaves no
two voices at `cosine` or closer: voices whose embeddings lie near, as far voices in a noisy room
do, are told apart by who talks at once. Measured on 30 dev recordings (bench/devset.py small,
and heldout-size at seeds 7, 11, 23): where the count found was short, one voice more left
voices 0.68-0.85 apart (0.71-0.74 with no window parted) or parted 13-26 % of the pairs; where
it was right or over, it left two voices 0.82-0.93 apart and parted at most 4 %, except in
reverberant two-person rooms, whose segmentation splits one voice in two local speakers (10-26
%, parts 0.88-0.89 apart)."""

EIGENGAP = {"most": 8, "neighbours": 0.25, "steps": 30, "size": 512}
"""With the count unknown, the voices found are at most the count that NME-SC reads off the
embeddings (Park et al. 2019, "Auto-tuning spectral clustering for speaker diarization using
normalized maximum eigengap"; NVIDIA NeMo's defaults): each embedding linked to its p nearest by
cosine (at most `size` of them, evenly spread; p at `steps` values up to `neighbours` of them),
the count is where the graph Laplacian's eigenvalues jump most (up to `most`: a count there bounds
nothing, nor one below 2), at the p whose jump, relative to the largest eigenvalue, is largest
for its p. Steps 2-4 run again at that count when more were found, and step 5 takes one voice
more beyond it only for voices that lie apart, not for the pairs of local speakers it parts:
with much overlap those are two people heard at once more often than one voice cut in two.
Measured on the 30 tuning recordings (bench/devset.py small, and heldout-size at seeds 7, 11, 23):
NME-SC alone was right on 17 (the count found before it: 20), over in two-person rooms with
reverberation (3-8 of 2), under with far microphones (2-3 of 4); it was below the count of steps
1-4 only with 15 % overlap (3 where 4 and 5 were found, 3 right) and once with far microphones,
where step 5 still found the 4 voices. With it the count found was right on 22 of 30, alike for
`neighbours` 0.15-0.30 and `steps` 30-100."""

SPARE_SEEDS = 3
TIGHTER = 0.007
"""At the count given or found, k-means also starts from each choice of that many candidates
among the largest count + SPARE_SEEDS, and the clustering whose embeddings lie closest to their
centroids wins, the merged candidates' own only by TIGHTER: greedy merging can join two voices
while a fragment of a third stays apart. Measured on 30 dev recordings (see MIXED_VOICES): where
it had, the best choice was 0.008-0.011 tighter (DER 29-36 % to 2-4 %); where one voice too many
was found, up to 0.006, by cutting a voice more evenly (DER 12 % to 25 %); elsewhere 0.000."""

MAX_LINKAGE = 2000
"""At most this many embeddings (evenly spread over the recording) go through the first pass,
whose cost is quadratic; every embedding takes part in grouping and k-means (linear)."""

KMEANS_ITERATIONS = 10

MIN_SPEAKER_SECONDS = 1.0
"""The offline pipeline folds a speaker heard for less than this into the closest voice (unless
the requested speaker count needs it): such clusters are artefacts of cuts and noise."""


def load_offline_diarizer(
    cache: ModelCache, settings: Settings
) -> AbstractContextManager[OfflineDiarizer]:
    device = str(settings.device)
    return cache.use(
        ("diarizer", OFFLINE_NAME, device),
        lambda: OfflineDiarizer(_offline_pipeline(device), OFFLINE_NAME, OFFLINE_EMBEDDING),
    )


class OfflineDiarizer(PyannoteDiarizer):
    """pyannote's SpeakerDiarization pipeline assembled from weights that registry packages
    ship: the segmentation model bundled with whisperX (up to 3 speakers per 5 s window) and
    Resemblyzer's GE2E speaker encoder, with agglomerative clustering."""

    def _annotation(self, output: Any, keep: int) -> tuple[Any, dict[Any, np.ndarray]]:
        annotation, voices = super()._annotation(output, keep)
        return _fold_brief_speakers(annotation, voices, keep), voices


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
        # on CPU, 8 windows at a time run faster than 32 (3 minutes: 5.9 -> 5.5 s, the same turns)
        segmentation_batch_size=32 if device == "cuda" else 8,
    )
    pipeline.clustering = voice_clustering()
    pipeline._embedding = ResemblyzerEmbedding(device)
    pipeline.instantiate(OFFLINE_PARAMS)
    return pipeline.to(torch.device(device))


def _fold_brief_speakers(annotation: Any, voices: dict[Any, np.ndarray], keep: int) -> Any:
    """Each brief speaker renamed to the closest voice (which keeps its own centroid)."""
    labels = list(annotation.labels())
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


def voice_clustering() -> Any:
    """pyannote's AgglomerativeClustering whose clustering is `cluster_voices`."""
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering

    class VoiceClustering(AgglomerativeClustering):
        """Over-cluster, keep the large clusters, group them into voices, refine by k-means.

        pyannote's AHC cuts a voice into a core and fringe fragments at its threshold, and its
        absolute `min_cluster_size` lets fragments count as speakers on long audio; when the count
        is forced it walks the dendrogram to a level where two voices have merged while a fragment
        stays apart. Here (as pyannote's VBx path does with KMeans when the count is forced) the
        first pass only seeds: see `cluster_voices`."""

        def __call__(
            self, embeddings: np.ndarray, segmentations: Any = None,
            num_clusters: int | None = None, min_clusters: int | None = None,
            max_clusters: int | None = None, **kwargs: Any,
        ) -> Any:  # fmt: skip
            train, chunks, speakers = self.filter_embeddings(embeddings, segmentations)
            num_clusters, min_clusters, max_clusters = self.set_num_clusters(
                len(train), num_clusters, min_clusters, max_clusters
            )
            if max_clusters < 2 or len(train) < 2:  # one speaker: pyannote's own shortcut
                return super().__call__(embeddings, segmentations, num_clusters, min_clusters,
                                        max_clusters, **kwargs)  # fmt: skip
            clusters = cluster_voices(
                train, chunks, threshold=self.threshold, min_cluster_size=self.min_cluster_size,
                min_clusters=min_clusters, max_clusters=max_clusters, num_clusters=num_clusters,
            )  # fmt: skip
            return self.assign_embeddings(embeddings, chunks, speakers, clusters)

    return VoiceClustering(metric="cosine")


def cluster_voices(
    embeddings: np.ndarray, chunks: np.ndarray, *, threshold: float, min_cluster_size: int,
    min_clusters: int, max_clusters: int, num_clusters: int | None, share: float = LARGE_SHARE,
    same_voice: dict[str, float] = SAME_VOICE, mixed: dict[str, float] = MIXED_VOICES,
    eigengap: dict[str, float] = EIGENGAP, max_linkage: int = MAX_LINKAGE,
) -> np.ndarray:  # fmt: skip
    """0-based cluster of each embedding (rows of `embeddings`, any norm; `chunks`: the window
    each comes from).

    1. pyannote's centroid AHC at `threshold` over (at most `max_linkage` of) the embeddings;
    2. its clusters holding `share` of them (or the largest, to the count asked for) are voice
       candidates;
    3. candidates are merged greedily, closest centroids first: to the given count (closeness
       less the share of windows the two are heard in together), or, unknown, while a pair is
       one voice by SAME_VOICE, then on to the EIGENGAP count;
    4. spherical k-means over every embedding from the merged centroids, or from a choice of
       candidates whose clustering is tighter (SPARE_SEEDS);
    5. unknown, one voice more (steps 2-4 to that count) while the voices it leaves lie apart,
       or it parts local speakers of one window (up to the EIGENGAP count), by MIXED_VOICES."""
    from scipy.cluster.hierarchy import fcluster, linkage

    x = _unit(np.asarray(embeddings, dtype=np.float64))
    n = len(x)
    if n < 2:
        return np.zeros(n, dtype=int)
    first = _spread(x, max_linkage)
    m = len(first)
    clusters = fcluster(linkage(first, method="centroid", metric="euclidean"), threshold,
                        criterion="distance") - 1  # fmt: skip
    labels, sizes = np.unique(clusters, return_counts=True)
    labels = labels[np.argsort(-sizes, kind="stable")]
    bar = max(min(min_cluster_size, max(1, round(0.1 * m))), int(np.ceil(share * m)))

    def voices(num: int | None, low: int, high: int) -> np.ndarray:
        want = num or low
        large = max(int(np.sum(sizes >= bar)), 1, min(want, len(labels)))
        seeds = _unit(np.vstack([first[clusters == k].mean(axis=0) for k in labels[:large]]))
        assign = _kmeans(x, _merge_voices(x, chunks, seeds, num, low, high, same_voice), want)
        count = assign.max() + 1
        best, tightest = assign, _cohesion(x, assign) + TIGHTER
        for chosen in combinations(range(min(large, count + SPARE_SEEDS)), count):
            other = _kmeans(x, seeds[list(chosen)], count)
            if other.max() + 1 == count and (cohesion := _cohesion(x, other)) > tightest:
                best, tightest = other, cohesion
        return best

    assign = voices(num_clusters, min_clusters, max_clusters)
    if num_clusters is not None or assign.max() < 1:
        return assign
    most = min(max_clusters, int(eigengap["most"]))
    bound = _eigengap_count(x, most, eigengap)
    bound = max(bound, min_clusters, 2) if bound < most else max_clusters
    if assign.max() + 1 > bound:
        assign = voices(bound, bound, bound)
    left, right = _window_pairs(np.asarray(chunks))
    while assign.max() + 1 < max_clusters:  # step 5
        k = assign.max() + 2
        more = voices(k, k, k)
        if more.max() <= assign.max():
            break
        centroids = _unit(np.vstack([x[more == g].sum(axis=0) for g in range(k)]))
        closest = float(np.max(centroids @ centroids.T - 2.0 * np.eye(k)))
        parted = np.sum(assign[left] == assign[right]) - np.sum(more[left] == more[right])
        heard = k <= bound and parted >= max(mixed["pairs"], mixed["share"] * len(left))
        if closest >= mixed["apart"] and not (heard and closest < mixed["cosine"]):
            break
        assign = more
    return assign


def _eigengap_count(x: np.ndarray, most: int, eigengap: dict[str, float]) -> int:
    """NME-SC's speaker count (1 to `most`) of unit embeddings `x`: see EIGENGAP."""
    x = _spread(x, int(eigengap["size"]))
    n = len(x)
    if n < 3 or most < 2:
        return 1
    nearest = np.argsort(-(x @ x.T + 3.0 * np.eye(n)), axis=1)  # itself first
    top = max(int(eigengap["neighbours"] * n), 2)
    best, count = np.inf, 1
    for p in np.unique(np.linspace(1, top, min(int(eigengap["steps"]), top)).astype(int)):
        graph = np.zeros((n, n))
        graph[np.repeat(np.arange(n), p), nearest[:, :p].reshape(-1)] = 1.0
        graph = 0.5 * (graph + graph.T)
        np.fill_diagonal(graph, 0.0)
        eigenvalues = np.linalg.eigvalsh(np.diag(graph.sum(axis=1)) - graph)
        gaps = np.diff(eigenvalues)[: min(most, n - 1)]
        k = int(np.argmax(gaps))
        ratio = (p / n) / (gaps[k] / (eigenvalues[-1] + 1e-10) + 1e-10)
        if ratio < best:
            best, count = ratio, k + 1
    return count


def _cohesion(x: np.ndarray, assign: np.ndarray) -> float:
    """Mean cosine of the embeddings to their cluster's centroid: what k-means raises."""
    centroids = _unit(np.vstack([x[assign == g].sum(axis=0) for g in range(assign.max() + 1)]))
    return float(np.mean(np.sum(x * centroids[assign], axis=1)))


def _window_pairs(chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both ends of each pair of embeddings from one window."""
    order = np.argsort(chunks, kind="stable")
    window = chunks[order]
    left, right = [np.zeros(0, dtype=int)], [np.zeros(0, dtype=int)]
    for d in range(1, int(np.unique(window, return_counts=True)[1].max())):
        same = window[d:] == window[:-d]
        left.append(order[:-d][same])
        right.append(order[d:][same])
    return np.concatenate(left), np.concatenate(right)


def _kmeans(x: np.ndarray, centroids: np.ndarray, want: int) -> np.ndarray:
    """Spherical k-means over every embedding from `centroids` (step 4)."""
    n = len(x)
    while len(centroids) < min(want, n):  # more asked for than found: seed with the outliers
        centroids = np.vstack([centroids, x[np.argmin(np.max(x @ centroids.T, axis=1))]])
    for _ in range(KMEANS_ITERATIONS):  # spherical k-means over every embedding
        assign = np.argmax(x @ centroids.T, axis=1)
        moved = np.vstack([
            _unit(x[assign == g].mean(axis=0)) if np.any(assign == g) else centroids[g]
            for g in range(len(centroids))
        ])  # fmt: skip
        if np.allclose(moved, centroids):
            break
        centroids = moved
    _, assign = np.unique(np.argmax(x @ centroids.T, axis=1), return_inverse=True)
    return assign


def _merge_voices(
    x: np.ndarray, chunks: np.ndarray, centroids: np.ndarray, num_clusters: int | None,
    min_clusters: int, max_clusters: int, same_voice: dict[str, float],
) -> np.ndarray:  # fmt: skip
    """Unit centroids of the candidates merged into voices (step 3 of `cluster_voices`)."""
    nearest = np.argmax(x @ centroids.T, axis=1)
    sums = np.vstack([x[nearest == g].sum(axis=0) for g in range(len(centroids))])
    _, window = np.unique(chunks, return_inverse=True)
    heard = np.zeros((window.max() + 1, len(centroids)), dtype=bool)  # window × candidate
    heard[window, nearest] = True
    keep = np.flatnonzero(sums.any(axis=1))  # candidates no embedding is nearest to are gone
    sums, heard = sums[keep], heard[:, keep]
    low = max(min_clusters, 1)
    while len(sums) > low:
        unit = _unit(sums)
        close = unit @ unit.T
        windows = heard.sum(axis=0).astype(np.float64)
        together = (heard.T.astype(np.float64) @ heard) / np.maximum(
            np.minimum.outer(windows, windows), 1.0
        )
        np.fill_diagonal(close, -np.inf)
        if num_clusters is not None:
            if len(sums) <= num_clusters:
                break
            score = close - together
        else:
            same = (close >= same_voice["cosine"]) & (together <= same_voice["together"])
            same |= close >= same_voice["surely"]
            if not same.any() and len(sums) <= max_clusters:
                break
            score = np.where(same, close, close - 2.0) if same.any() else close - together
        i, j = np.unravel_index(np.argmax(score), score.shape)
        sums[i] += sums[j]
        heard[:, i] |= heard[:, j]
        sums, heard = np.delete(sums, j, axis=0), np.delete(heard, j, axis=1)
    return _unit(sums)


def _spread(x: np.ndarray, size: int) -> np.ndarray:
    """At most `size` rows of `x`, evenly spread over it (first and last kept)."""
    return x if len(x) <= size else x[np.linspace(0, len(x) - 1, size).astype(int)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
