"""Word timings for a transcript: whisperX's wav2vec2 aligner, or offline pocketsphinx / Whisper."""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.pipeline.models import ModelCache, ModelUnavailable, hub_available
from app.pipeline.transcribe import load_whisper
from app.pipeline.types import SAMPLE_RATE, AlignedTranscript, Progress, Segment, Transcript, Word

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)

LANGUAGES_WITHOUT_SPACES = ("ja", "zh")
"""Languages whose words are single characters, as in whisperX."""


class Aligner(Protocol):
    name: str
    """Recorded in task metadata, e.g. `wav2vec2:WAV2VEC2_ASR_BASE_960H`, `pocketsphinx:en-us`."""

    def align(
        self, transcript: Transcript, audio: np.ndarray, *, interpolate_method: str = "nearest",
        return_char_alignments: bool = False, progress: Progress | None = None,
    ) -> AlignedTranscript: ...  # fmt: skip


def load_aligner(
    language: str, *, cache: ModelCache, settings: Settings, align_model: str | None = None
) -> Aligner:
    """The aligner for `language`: whisperX's wav2vec2 model when production is asked for or (in
    auto mode) can be had, else pocketsphinx for English and Whisper's cross-attention for the
    rest. `align_model` names a hub model or a local folder (saved Wav2Vec2ForCTC + processor)."""
    language = language.lower()
    if align_model or settings.aligner == "production":
        return _load_wav2vec2(language, cache, settings, align_model)
    if settings.aligner == "auto":
        try:
            return _load_wav2vec2(language, cache, settings, None)
        except ModelUnavailable as exc:
            log.info("using an offline aligner: %s", exc)
    if language == "en":
        return cache.get(
            ("pocketsphinx", "en-us"),
            lambda: PocketsphinxAligner(lambda: load_whisper_aligner("en", cache, settings)),
        )
    return load_whisper_aligner(language, cache, settings)


def load_whisper_aligner(language: str, cache: ModelCache, settings: Settings) -> WhisperAligner:
    name = settings.whisper_model
    if name.endswith(".en") and language != "en":
        name = "base"  # the multilingual model that ships offline
    model, _ = load_whisper(cache, settings, name, str(settings.device), str(settings.compute_type))
    if language not in model.supported_languages:
        raise ModelUnavailable(f"Whisper model '{name}' cannot align language '{language}'.")
    return WhisperAligner(model, language, f"whisper:{name}")


def word_spans(text: str, language: str) -> list[tuple[int, int]]:
    """Character spans of the words of `text`: whitespace-separated, or single characters for
    languages written without spaces."""
    pattern = r"\S" if language in LANGUAGES_WITHOUT_SPACES else r"\S+"
    return [m.span() for m in re.finditer(pattern, text)]


def fill_words(
    transcript: Transcript, timed: Sequence[Sequence[Word]], interpolate_method: str = "nearest"
) -> AlignedTranscript:
    """Build the aligned transcript from what an aligner timed in each segment (`timed[i]` for
    segment i: words in order, each a piece of the segment's text with start/end).

    Every word of the input text is kept, in order. Timed words are clamped into their segment and
    made monotonic; the rest get times by `interpolate_method` (`nearest`, `linear`) or none
    (`ignore`). A segment with no timed word keeps its own start/end."""
    language = transcript.get("language", "")
    segments: list[Segment] = []
    for segment, pieces in zip(transcript["segments"], timed, strict=True):
        text = segment["text"]
        spans = word_spans(text, language)
        words: list[Word] = [{"word": text[a:b]} for a, b in spans]
        _place(text, spans, pieces, words)
        lo, hi = float(segment["start"]), max(float(segment["start"]), float(segment["end"]))
        _clamp(words, lo, hi)
        any_timed = any("start" in w for w in words)
        _interpolate(words, interpolate_method, lo, hi)
        for w in words:
            for key in ("start", "end", "score"):
                if key in w:
                    w[key] = round(float(w[key]), 3)
        base: Segment = {k: v for k, v in segment.items() if k not in ("words", "chars")}  # type: ignore[assignment]
        out: Segment = {**base, "words": words}
        if any_timed:
            out["start"] = min(w["start"] for w in words if "start" in w)
            out["end"] = max(w["end"] for w in words if "end" in w)
        segments.append(out)
    return {
        "segments": segments,
        "word_segments": [w for s in segments for w in s["words"]],
        "language": language,
    }


SENTENCE_END = re.compile(r"[.!?。！？]['\"”’)\]]*$")
ABBREVIATIONS = {
    "mr.",
    "mrs.",
    "ms.",
    "dr.",
    "prof.",
    "st.",
    "jr.",
    "sr.",
    "vs.",
    "etc.",
    "e.g.",
    "i.e.",
    "no.",
}


def split_sentences(result: AlignedTranscript) -> AlignedTranscript:
    """Split each fully timed segment into its sentences, as whisperX's aligner does, so a
    segment is a subtitle-sized unit; words, chars and other fields follow their sentence."""
    language = result.get("language", "")
    segments: list[Segment] = []
    for segment in result["segments"]:
        words, text = segment.get("words", []), segment["text"]
        spans = word_spans(text, language)
        ranges = _sentences(words)
        if len(spans) != len(words) or len(ranges) == 1 or not all("start" in w for w in words):
            segments.append(segment)
            continue
        chars = segment.get("chars")
        for first, last in ranges:
            a, b = spans[first][0], spans[last - 1][1]
            part: Segment = {**segment, "text": text[a:b], "words": words[first:last]}
            part["start"] = min(w["start"] for w in part["words"])
            part["end"] = max(w["end"] for w in part["words"])
            if chars is not None:
                part["chars"] = chars[a:b] if len(chars) == len(text) else []
            segments.append(part)
    return {**result, "segments": segments}


def _sentences(words: list[Word]) -> list[tuple[int, int]]:
    """[first, last) word ranges of the sentences in a segment, as whisperX's aligner splits
    segments into sentences; a word ending in . ! ? (not an abbreviation) ends one."""
    ranges, first = [], 0
    for n, word in enumerate(words):
        token = word["word"]
        ends = SENTENCE_END.search(token) and token.lower() not in ABBREVIATIONS
        if ends and not re.fullmatch(r"\w\.", token) and n + 1 < len(words):
            ranges.append((first, n + 1))
            first = n + 1
    ranges.append((first, len(words)))
    return ranges


def _place(
    text: str, spans: list[tuple[int, int]], pieces: Sequence[Word], words: list[Word]
) -> None:
    """Give each word the times of the timed pieces found over it in the text. A piece over
    several words shares its time by their letters in it (punctuation alone counts for none)."""
    cursor = 0
    ends = [b for _, b in spans]
    for piece in pieces:
        found = piece["word"].strip()
        if not found or "start" not in piece or "end" not in piece:
            continue
        at = text.find(found, cursor)
        if at < 0:
            continue
        cursor = at + len(found)
        first = bisect.bisect_right(ends, at)  # the first word ending after the piece starts
        overlap = {}
        for i in range(first, len(spans)):
            if spans[i][0] >= cursor:
                break
            overlap[i] = text[max(spans[i][0], at) : min(spans[i][1], cursor)]
        weights = {i: sum(c.isalnum() for c in part) for i, part in overlap.items()}
        if not any(weights.values()):
            weights = dict.fromkeys(weights, 1)
        total = sum(weights.values())
        start, end = float(piece["start"]), max(float(piece["start"]), float(piece["end"]))
        done = 0
        for i, weight in weights.items():
            if not weight:
                continue
            w = words[i]
            share_start = start + (end - start) * done / total
            done += weight
            share_end = start + (end - start) * done / total
            w["start"] = min(w.get("start", share_start), share_start)
            w["end"] = max(w.get("end", share_end), share_end)
            if "score" in piece:
                w["score"] = min(w.get("score", 1.0), float(piece["score"]))


def _clamp(words: list[Word], lo: float, hi: float) -> None:
    last_start, last_end = lo, lo
    for w in words:
        if "start" not in w:
            continue
        start = min(max(w["start"], last_start), hi)
        end = min(max(w["end"], start, last_end), hi)
        w["start"], w["end"] = start, end
        last_start, last_end = start, end


def _interpolate(words: list[Word], method: str, lo: float, hi: float) -> None:
    if method == "ignore" or not words:
        return
    known = [i for i, w in enumerate(words) if "start" in w]
    if not known:
        # nothing to anchor on: spread the words evenly over the segment
        step = (hi - lo) / len(words)
        for i, w in enumerate(words):
            w["start"], w["end"] = lo + i * step, lo + (i + 1) * step
        return
    starts = [words[i]["start"] for i in known]
    ends = [words[i]["end"] for i in known]
    for i, w in enumerate(words):
        if "start" in w:
            continue
        if method == "linear":
            w["start"] = float(np.interp(i, known, starts))
            w["end"] = float(np.interp(i, known, ends))
        else:  # the nearest timed word; the earlier one on a tie
            k = bisect.bisect(known, i)
            j = k - 1 if k == len(known) or (k > 0 and i - known[k - 1] <= known[k] - i) else k
            w["start"], w["end"] = starts[j], ends[j]


def _even_chars(segment: Segment) -> list[dict]:
    """Character timings spread evenly over each word (the offline aligners time words only)."""
    text = segment["text"]
    chars: list[dict] = [{"char": c} for c in text]
    cursor = 0
    for w in segment.get("words", []):
        at = text.find(w["word"], cursor)
        cursor = at + len(w["word"])
        if "start" not in w:
            continue
        step = (w["end"] - w["start"]) / len(w["word"])
        for k in range(at, cursor):
            chars[k].update(start=round(w["start"] + (k - at) * step, 3),
                            end=round(w["start"] + (k - at + 1) * step, 3))  # fmt: skip
    return chars


def _clip(audio: np.ndarray, segment: Segment) -> tuple[np.ndarray, float]:
    start = max(0.0, float(segment["start"]))
    return audio[int(start * SAMPLE_RATE) : int(float(segment["end"]) * SAMPLE_RATE)], start


class _SegmentAligner:
    """Times each segment's words on that segment's audio, then fills in the rest."""

    name: str

    def time_words(self, text: str, clip: np.ndarray) -> list[Word]:
        """Timed pieces of `text` in `clip`, in seconds from the clip's start."""
        raise NotImplementedError

    def align(
        self, transcript: Transcript, audio: np.ndarray, *, interpolate_method: str = "nearest",
        return_char_alignments: bool = False, progress: Progress | None = None,
    ) -> AlignedTranscript:  # fmt: skip
        timed: list[list[Word]] = []
        segments = transcript["segments"]
        for n, segment in enumerate(segments, 1):
            clip, offset = _clip(audio, segment)
            speech = bool(segment["text"].strip()) and len(clip) >= SAMPLE_RATE // 20
            words = self.time_words(segment["text"], clip) if speech else []
            for w in words:
                w["start"] += offset
                w["end"] += offset
            timed.append(words)
            if progress is not None:
                progress(100 * n / len(segments))
        result = fill_words(transcript, timed, interpolate_method)
        if return_char_alignments:
            for segment in result["segments"]:
                segment["chars"] = _even_chars(segment)
        return split_sentences(result)


class Wav2Vec2Aligner:
    """whisperX's CTC forced alignment with a wav2vec2 model (the production aligner)."""

    def __init__(self, model: Any, metadata: dict, device: str, name: str, model_dir: Path):
        self.model, self.metadata, self.device = model, metadata, device
        self.name = f"wav2vec2:{name}"
        self._model_dir = model_dir

    def align(
        self, transcript: Transcript, audio: np.ndarray, *, interpolate_method: str = "nearest",
        return_char_alignments: bool = False, progress: Progress | None = None,
    ) -> AlignedTranscript:  # fmt: skip
        from whisperx.alignment import align

        _ensure_punkt(self.metadata["language"], self._model_dir)
        timed: list[list[Word]] = []
        chars: list[list[dict]] = []
        segments = transcript["segments"]
        for n, segment in enumerate(segments, 1):
            words: list[Word] = []
            seg_chars: list[dict] = []
            if segment["text"].strip():
                one = {"start": segment["start"], "end": segment["end"], "text": segment["text"]}
                # whisperX may split or drop sentences; fill_words maps its words back to ours
                out = align([one], self.model, self.metadata, audio, self.device,
                            interpolate_method="ignore",
                            return_char_alignments=return_char_alignments)  # fmt: skip
                for sub in out["segments"]:
                    words += [w for w in sub["words"] if _finite(w)]
                    seg_chars += sub.get("chars") or []
            timed.append(words)
            chars.append(seg_chars)
            if progress is not None:
                progress(100 * n / len(segments))
        result = fill_words(transcript, timed, interpolate_method)
        if return_char_alignments:
            for segment, seg_chars in zip(result["segments"], chars, strict=True):
                segment["chars"] = seg_chars or _even_chars(segment)
        return split_sentences(result)


def _finite(word: Word) -> bool:
    return math.isfinite(word.get("start", math.nan)) and math.isfinite(word.get("end", math.nan))


def _load_wav2vec2(
    language: str, cache: ModelCache, settings: Settings, align_model: str | None
) -> Wav2Vec2Aligner:
    root = settings.model_dir / "alignment"  # hub downloads land here (HF cache layout)
    local = Path(align_model).expanduser() if align_model else None
    if local is not None and local.is_dir():
        name, local_only = str(local), True
    else:
        online = settings.aligner != "offline" and hub_available(settings.hub_allowed)
        how = (
            f"Download it once into {root} (run with network and HUB_ALLOWED=true), pass "
            f"align_model=<folder with a saved Wav2Vec2ForCTC and processor>, or set "
            f"ALIGNER=auto/offline to use the bundled offline aligners."
        )
        if not online and not (root.is_dir() and any(root.iterdir())):
            raise ModelUnavailable(f"No wav2vec2 alignment model is available offline. {how}")
        import whisperx.alignment as wxa

        name = (
            align_model
            or wxa.DEFAULT_ALIGN_MODELS_TORCH.get(language)
            or wxa.DEFAULT_ALIGN_MODELS_HF.get(language)
        )
        if name is None:
            raise ModelUnavailable(
                f"whisperX has no default alignment model for '{language}': pass align_model "
                f"(a wav2vec2 CTC model on the hub or a local folder)."
            )
        local_only = not online
        if local_only and not _in_cache(name, root):
            raise ModelUnavailable(f"Alignment model '{name}' is not in {root}. {how}")

    def load() -> Wav2Vec2Aligner:
        from whisperx.alignment import load_align_model

        try:
            model, metadata = load_align_model(
                language, settings.device, model_name=name, model_dir=str(root),
                model_cache_only=local_only,
            )  # fmt: skip
        except (ValueError, OSError) as exc:
            raise ModelUnavailable(f"Alignment model '{name}' could not be loaded: {exc}") from exc
        return Wav2Vec2Aligner(model, metadata, str(settings.device), name, settings.model_dir)

    return cache.get(("wav2vec2", name, language, settings.device), load)


def _in_cache(name: str, root: Path) -> bool:
    import torchaudio

    bundle = getattr(torchaudio.pipelines, name, None)
    if bundle is not None:  # torchaudio keeps the file under its URL's base name
        return (root / Path(bundle._path).name).is_file()
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json", cache_dir=root), str)


_PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def _ensure_punkt(language: str, model_dir: Path) -> None:
    """whisperX splits sentences with NLTK's punkt_tab, which no package ships and which it would
    download at run time; empty parameters are enough for that split (we keep our segments)."""
    import nltk
    from whisperx.utils import PUNKT_LANGUAGES

    name = PUNKT_LANGUAGES.get(language, "english")
    try:
        nltk.data.find(f"tokenizers/punkt_tab/{name}/")
        return
    except LookupError:
        pass
    root = model_dir / "nltk_data"
    folder = root / "tokenizers" / "punkt_tab" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in _PUNKT_FILES:
        (folder / file).touch()
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))


class WhisperAligner(_SegmentAligner):
    """Whisper's cross-attention DTW (faster-whisper's word timestamps) on the known text, with
    word edges moved out of pauses: DTW gives each pause to a neighbouring word."""

    WINDOW = 30.0  # seconds Whisper's encoder sees at once
    MAX_TOKENS = 440  # its decoder sees 448 tokens, the start sequence included
    PREPEND = "\"'“¿([{-"  # faster-whisper's defaults
    APPEND = "\"'.。,，!！?？:：”)]}、"

    def __init__(self, model: Any, language: str, name: str):
        from faster_whisper.tokenizer import Tokenizer

        self.model, self.name, self.language = model, name, language
        self.tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
        )

    def time_words(self, text: str, clip: np.ndarray) -> list[Word]:
        spans = word_spans(text, self.language)
        tokens = len(self.tokenizer.encode(" " + text))
        count = max(
            math.ceil(len(clip) / (self.WINDOW * SAMPLE_RATE)),
            math.ceil(tokens / (self.MAX_TOKENS * 0.9)),  # margin: words split unevenly
        )
        words: list[Word] = []
        # too long for one window: split the words by their share of the text
        for k in range(count):
            part = [s for s in spans if k * len(text) <= s[0] * count < (k + 1) * len(text)]
            if not part:
                continue
            a, b = len(clip) * k // count, len(clip) * (k + 1) // count
            for w in self._time_window(text[part[0][0] : part[-1][1]], clip[a:b]):
                w["start"] += a / SAMPLE_RATE
                w["end"] += a / SAMPLE_RATE
                words.append(w)
        return words

    def _time_window(self, text: str, clip: np.ndarray) -> list[Word]:
        from faster_whisper.audio import pad_or_trim

        tokens = self.tokenizer.encode(" " + text)
        features = self.model.feature_extractor(clip)
        frames = min(self.model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
        if not tokens or len(tokens) > self.MAX_TOKENS or frames < 2:
            return []
        encoded = self.model.encode(pad_or_trim(features[:, :frames]))
        subsegment = {"tokens": tokens, "seek": 0, "start": 0.0, "end": frames / 100}
        self.model.add_word_timestamps(
            [[subsegment]], self.tokenizer, encoded, frames, self.PREPEND, self.APPEND, 0.0
        )
        words: list[Word] = [
            {"word": w["word"], "start": w["start"], "end": w["end"], "score": w["probability"]}
            for w in subsegment["words"]
        ]
        if words:
            snap_to_pauses(words, clip)
            refine_boundaries(words, clip)
        return words


def snap_to_pauses(words: list[Word], clip: np.ndarray, min_pause: float = 0.1) -> None:
    """Move word edges out of pauses: trim leading/trailing silence, and put each pause (a quiet
    run of at least `min_pause` s) between the two words whose boundary is nearest to it."""
    hop = SAMPLE_RATE // 100  # 10 ms frames
    n = len(clip) // hop
    if n < 2:
        return
    power = np.mean(clip[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)
    db = 10 * np.log10(power + 1e-10)
    floor, peak = np.percentile(db, 10), np.percentile(db, 95)
    quiet = db < floor + 0.25 * (peak - floor)
    loud = np.flatnonzero(~quiet)
    if loud.size == 0:
        return
    first, last = words[0], words[-1]
    first["start"] = max(first["start"], min(loud[0] / 100, first["end"]))
    last["end"] = min(last["end"], max((loud[-1] + 1) / 100, last["start"]))
    edges = np.flatnonzero(np.diff(np.r_[0, quiet.astype(np.int8), 0]))
    pauses = [(a / 100, b / 100) for a, b in zip(edges[::2], edges[1::2], strict=True)
              if b - a >= min_pause * 100 and a > 0 and b < n]  # fmt: skip
    bounds = [(words[i]["end"] + words[i + 1]["start"]) / 2 for i in range(len(words) - 1)]
    taken: dict[int, tuple[float, float]] = {}
    for start, end in sorted(pauses, key=lambda p: p[0] - p[1]):  # longest first
        distance = [max(start - b, b - end, 0.0) for b in bounds]
        free = [i for i in np.argsort(distance) if distance[i] <= 0.5 and i not in taken]
        if free:
            taken[int(free[0])] = (start, end)
    for i, (start, end) in taken.items():
        words[i]["end"] = max(words[i]["start"], start)
        words[i + 1]["start"] = min(words[i + 1]["end"], end)


def frame_energy(clip: np.ndarray, hop: int, width: int) -> np.ndarray:
    """Log energy (dB) of `width`-sample frames centred every `hop` samples."""
    n = len(clip) // hop
    padded = np.pad(clip.astype(np.float64), (width // 2, width))
    frames = np.lib.stride_tricks.sliding_window_view(padded, width)[: n * hop : hop]
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)


def refine_boundaries(
    words: list[Word], clip: np.ndarray, reach: float = 0.2, min_word: float = 0.03
) -> None:
    """Move each boundary between two touching words (DTW's word edges: 20 ms steps, often
    100-300 ms off) to the quietest point within `reach` s of it, slightly preferring nearer
    points; a quiet run there (within 3 dB of its minimum) goes between the two words.
    Boundaries `snap_to_pauses` put in a pause stay. Measured with whisper:base on synthetic
    speech (bench/quality.py): median word-start error 70 -> under 10 ms on continuous speech,
    120-150 -> under 10 ms with 30-80 ms gaps; sample.wav's utterance edges unchanged. Where DTW
    is far off (tiny.en) the median still drops but the worst tenth gets worse."""
    hop = SAMPLE_RATE // 200  # 5 ms steps, 10 ms frames
    rate = SAMPLE_RATE / hop
    db = frame_energy(clip, hop, 2 * hop)
    n = len(db)
    # each word keeps half its DTW length: a boundary that DTW put a word late would otherwise
    # jump to the next word's end and squeeze the word between (seen with tiny.en)
    keep = [max(min_word, (w["end"] - w["start"]) / 2) for w in words]
    for i, (a, b) in enumerate(zip(words, words[1:], strict=False)):
        if b["start"] - a["end"] > 0.05:
            continue
        centre = (a["end"] + b["start"]) / 2
        lo, hi = max(a["start"] + keep[i], 0.0), b["end"] - keep[i + 1]
        f0 = round(max(centre - reach, lo) * rate)
        f1 = min(round(min(centre + reach, hi) * rate), n)
        if f1 - f0 < 2:
            continue
        distance = np.abs(np.arange(f0, f1) / rate - centre)
        k = f0 + int(np.argmin(db[f0:f1] + 5 * distance))  # 1 dB per 200 ms
        quiet = db < db[k] + 3
        first, last = k, k + 1
        while first - 1 >= round(lo * rate) and quiet[first - 1]:
            first -= 1
        while last < min(round(hi * rate), n) and quiet[last]:
            last += 1
        a["end"] = max(a["start"], first / rate)
        b["start"] = min(b["end"], last / rate)


class PocketsphinxAligner(_SegmentAligner):
    """English HMM forced alignment with pocketsphinx's bundled en-us model and CMUdict. Words the
    dictionary lacks get a spelling-based pronunciation; a segment it cannot align is timed by
    `fallback` (Whisper)."""

    name = "pocketsphinx:en-us"
    PAD = 0.5  # seconds of silence around each clip

    def __init__(self, fallback: Callable[[], _SegmentAligner] | None = None):
        from pocketsphinx import Decoder

        # dither: digital silence (exact zeros) derails the search; the wide word-exit beam
        # keeps words the model finds unlikely; without the lattice best-path pass the search
        # drops a segment's last word less often (synthetic speech: 14 of 36 clips handed to
        # Whisper before, 6 after)
        self._decoder = Decoder(
            lm=None, loglevel="FATAL", dither=True, seed=1, wbeam=1e-80, bestpath=False
        )
        self._lock = threading.Lock()  # a decoder runs one utterance at a time
        self._guessed: set[str] = set()
        self._fallback = fallback

    def time_words(self, text: str, clip: np.ndarray) -> list[Word]:
        spans = word_spans(text, "en")
        plan: list[tuple[int, str, bool]] = []  # (word index, dictionary word, guessed)
        with self._lock:
            for i, (a, b) in enumerate(spans):
                for spoken in spoken_words(text[a:b]):
                    plan.append((i, *self._pronounceable(spoken)))
            # silence around the clip lets the search start and finish outside clipped words
            pad = np.zeros(int(self.PAD * SAMPLE_RATE), np.int16)
            speech = (np.clip(clip, -1, 1) * 32767).astype(np.int16)
            pcm = np.concatenate([pad, speech, pad]).tobytes()
            known = [p for p in plan if not p[2]]
            # a guessed pronunciation can make the search fail; then leave those words out
            for attempt in [plan, known] if len(known) < len(plan) else [plan]:
                frames = self._force([p[1] for p in attempt], pcm)
                if frames is not None:
                    break
        if frames is None:
            return self._fall_back(text, clip)
        words: dict[int, Word] = {}
        for (i, _, _), (first, last) in zip(attempt, frames, strict=True):
            a, b = spans[i]
            w = words.setdefault(i, {"word": text[a:b], "start": first / 100 - self.PAD})
            w["end"] = (last + 1) / 100 - self.PAD
        return [words[i] for i in sorted(words)]

    def _pronounceable(self, word: str) -> tuple[str, bool]:
        if word not in self._guessed and self._decoder.lookup_word(word) is None:
            self._decoder.add_word(word, guess_phones(word), True)
            self._guessed.add(word)
        return word, word in self._guessed

    def _force(self, words: list[str], pcm: bytes) -> list[tuple[int, int]] | None:
        if not words:
            return []
        try:
            self._decoder.set_align_text(" ".join(words))
        except RuntimeError:
            return None
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        frames = [(s.start_frame, s.end_frame) for s in self._decoder.seg() or []
                  if not s.word.startswith(("<", "["))]  # fmt: skip
        return frames if self._decoder.hyp() is not None and len(frames) == len(words) else None

    def _fall_back(self, text: str, clip: np.ndarray) -> list[Word]:
        if self._fallback is None:
            return []
        try:
            return self._fallback().time_words(text, clip)
        except ModelUnavailable as exc:
            log.warning("pocketsphinx could not align a segment and Whisper is missing: %s", exc)
            return []


_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}


def number_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, scale in _SCALES:
        if n >= size:
            head, rest = divmod(n, size)
            return number_words(head) + [scale] + (number_words(rest) if rest else [])
    raise AssertionError  # unreachable: n >= 100 meets the hundred scale


def spoken_words(token: str) -> list[str]:
    """How an English written word is said, as lowercase dictionary words: digits, symbols
    and accents spelled out, punctuation dropped."""
    text = unicodedata.normalize("NFKD", token.lower().replace("\u2019", "'"))
    text = text.encode("ascii", "ignore").decode()
    for symbol, said in _SYMBOLS.items():
        text = text.replace(symbol, said)
    out: list[str] = []
    for part in re.findall(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)*", text):
        if not part[0].isdigit():
            out.append(part)
            continue
        whole, _, fraction = part.replace(",", "").partition(".")
        n = int(whole)
        if (len(whole) > 1 and whole[0] == "0") or len(whole) > 12:
            out += [_ONES[int(d)] for d in whole]
        elif 1100 <= n <= 1999 and n % 100 and "," not in part:  # years: nineteen ninety nine
            tail = ["oh", _ONES[n % 10]] if n % 100 < 10 else number_words(n % 100)
            out += number_words(n // 100) + tail
        else:
            out += number_words(n)
        if fraction:
            out += ["point"] + [_ONES[int(d)] for d in fraction]
    return out


_LETTER_PHONES = {
    "sh": "SH", "ch": "CH", "th": "TH", "ph": "F", "ng": "NG", "ck": "K", "qu": "K W",
    "ee": "IY", "oo": "UW", "ou": "AW", "ai": "EY", "ay": "EY", "oa": "OW", "wh": "W",
    "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH",
    "i": "IH", "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P",
    "q": "K", "r": "R", "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S",
    "y": "IY", "z": "Z",
}  # fmt: skip


def guess_phones(word: str) -> str:
    """A rough ARPAbet pronunciation from spelling, for words CMUdict lacks."""
    phones, i = [], 0
    while i < len(word):
        pair = word[i : i + 2]
        if pair in _LETTER_PHONES:
            phones.append(_LETTER_PHONES[pair])
            i += 2
        else:
            if word[i] in _LETTER_PHONES:
                phones.append(_LETTER_PHONES[word[i]])
            i += 1
    return " ".join(phones) or "AH"
