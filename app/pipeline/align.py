"""Word timings for a transcript: whisperX's wav2vec2 aligner (offline ones in offline/align.py)."""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from app.pipeline.models import ModelCache, ModelUnavailable, hub_available
from app.pipeline.types import AlignedTranscript, Progress, Segment, Transcript, Word

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


@contextmanager
def load_aligner(
    language: str, *, cache: ModelCache, settings: Settings, align_model: str | None = None
) -> Iterator[Aligner]:
    """The aligner for `language`, held by this caller alone: whisperX's wav2vec2 model when
    production is asked for or (in auto mode) can be had, else pocketsphinx for English and
    Whisper's cross-attention for the rest. `align_model` names a hub model or a local folder
    (saved Wav2Vec2ForCTC + processor)."""
    language = language.lower()
    production = bool(align_model) or settings.aligner == "production"
    with ExitStack() as stack:
        aligner: Aligner | None = None
        if production or settings.aligner == "auto":
            try:
                aligner = stack.enter_context(_wav2vec2(language, cache, settings, align_model))
            except ModelUnavailable as exc:
                if production:
                    raise
                log.info("using an offline aligner: %s", exc)
        if aligner is None:
            from app.pipeline.offline.align import load_offline_aligner

            aligner = stack.enter_context(load_offline_aligner(language, cache, settings))
        yield aligner


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
ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "etc.", "e.g.",
                 "i.e.", "no."}  # fmt: skip


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


def _even_chars(segment: Segment) -> list[dict[str, Any]]:
    """Character timings spread evenly over each word (the offline aligners time words only)."""
    text = segment["text"]
    chars: list[dict[str, Any]] = [{"char": c} for c in text]
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


class SegmentAligner:
    """Times each segment's words on its own, then fills in the rest; whisperX's sentence
    splitting follows."""

    name: str
    lanes = 1
    """Segments timed at once (each in its own thread: the model must release the GIL)."""

    def time_segment(
        self, segment: Segment, audio: np.ndarray, chars: bool
    ) -> tuple[list[Word], list[dict[str, Any]]]:
        """Timed pieces of the segment's text (seconds in `audio`) and, when `chars`, the
        timings of its characters (empty: spread evenly over the words)."""
        raise NotImplementedError

    def align(
        self, transcript: Transcript, audio: np.ndarray, *, interpolate_method: str = "nearest",
        return_char_alignments: bool = False, progress: Progress | None = None,
    ) -> AlignedTranscript:  # fmt: skip
        timed: list[list[Word]] = []
        chars: list[list[dict[str, Any]]] = []
        segments = transcript["segments"]

        def time(segment: Segment) -> tuple[list[Word], list[dict[str, Any]]]:
            if not segment["text"].strip():
                return [], []
            return self.time_segment(segment, audio, return_char_alignments)

        pool = ThreadPoolExecutor(self.lanes) if self.lanes > 1 else None
        try:
            for n, (words, seg_chars) in enumerate((pool.map if pool else map)(time, segments), 1):
                timed.append(words)
                chars.append(seg_chars)
                if progress is not None:
                    progress(100 * n / len(segments))
        finally:
            if pool is not None:  # a cancel (raised by progress) waits for no queued segment
                pool.shutdown(cancel_futures=True)
        result = fill_words(transcript, timed, interpolate_method)
        if return_char_alignments:
            for segment, seg_chars in zip(result["segments"], chars, strict=True):
                segment["chars"] = seg_chars or _even_chars(segment)
        return split_sentences(result)


class Wav2Vec2Aligner(SegmentAligner):
    """whisperX's CTC forced alignment with a wav2vec2 model (the production aligner)."""

    def __init__(self, model: Any, metadata: dict[str, Any], device: str, name: str):
        self.model, self.metadata, self.device = model, metadata, device
        self.name = f"wav2vec2:{name}"

    def time_segment(
        self, segment: Segment, audio: np.ndarray, chars: bool
    ) -> tuple[list[Word], list[dict[str, Any]]]:
        from whisperx.alignment import align

        one = {"start": segment["start"], "end": segment["end"], "text": segment["text"]}
        # whisperX may split or drop sentences; fill_words maps its words back to ours
        out = align([one], self.model, self.metadata, audio, self.device,
                    interpolate_method="ignore", return_char_alignments=chars)  # fmt: skip
        words = [w for sub in out["segments"] for w in sub["words"] if _finite(w)]
        return words, [c for sub in out["segments"] for c in sub.get("chars") or []]


def _finite(word: Word) -> bool:
    return math.isfinite(word.get("start", math.nan)) and math.isfinite(word.get("end", math.nan))


def wav2vec2_source(language: str, settings: Settings, align_model: str | None) -> tuple[str, bool]:
    """(name or folder, local files only) of the wav2vec2 model that aligns `language`, or
    ModelUnavailable saying why there is none; reads no weights, so a task given an unusable
    `align_model` can fail before it transcribes."""
    root = settings.model_dir / "alignment"  # hub downloads land here (HF cache layout)
    local = Path(align_model).expanduser() if align_model else None
    if local is not None and local.is_dir():
        return str(local), True
    online = settings.aligner != "offline" and hub_available(settings.hub_allowed)
    how = (
        f"Download it once into {root} (run with network and HUB_ALLOWED=true), or pass "
        "align_model=<folder with a saved Wav2Vec2ForCTC and processor>"
    )
    how += (
        ", or leave align_model out to use the language's default."
        if align_model
        else ", or set ALIGNER=auto/offline to use the bundled offline aligners."
    )

    def unavailable(why: str) -> ModelUnavailable:
        if align_model:
            return ModelUnavailable(
                f"align_model '{align_model}' is not a folder on this worker, and {why}. {how}"
            )
        return ModelUnavailable(f"{why[0].upper()}{why[1:]}. {how}")

    if not online and not (root.is_dir() and any(root.iterdir())):
        raise unavailable("no wav2vec2 alignment model is available offline")
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
    if not online and not _in_cache(name, root):
        raise unavailable(f"alignment model '{name}' is not in {root}")
    return name, not online


def _wav2vec2(
    language: str, cache: ModelCache, settings: Settings, align_model: str | None
) -> AbstractContextManager[Wav2Vec2Aligner]:
    root = settings.model_dir / "alignment"
    name, local_only = wav2vec2_source(language, settings, align_model)

    def load() -> Wav2Vec2Aligner:
        from whisperx.alignment import load_align_model

        try:
            model, metadata = load_align_model(
                language, settings.device, model_name=name, model_dir=str(root),
                model_cache_only=local_only,
            )  # fmt: skip
        except (ValueError, OSError) as exc:
            raise ModelUnavailable(f"Alignment model '{name}' could not be loaded: {exc}") from exc
        _ensure_punkt(metadata["language"], settings.model_dir)
        return Wav2Vec2Aligner(model, metadata, str(settings.device), name)

    return cache.use(("aligner", f"wav2vec2:{name}", settings.device, None, language), load)


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
