"""The aligners made from bundled models: pocketsphinx for English, Whisper's cross-attention."""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from app.pipeline.align import SegmentAligner, word_spans
from app.pipeline.models import ModelCache, ModelUnavailable
from app.pipeline.transcribe import load_whisper
from app.pipeline.types import SAMPLE_RATE, Segment, Word

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)


def load_offline_aligner(
    language: str, cache: ModelCache, settings: Settings
) -> AbstractContextManager[_ClipAligner]:
    """pocketsphinx for English (Whisper times what it cannot), Whisper for other languages."""
    if language != "en":
        return load_whisper_aligner(language, cache, settings)
    return cache.use(
        ("aligner", PocketsphinxAligner.name),
        lambda: PocketsphinxAligner(lambda: load_whisper_aligner("en", cache, settings)),
    )


@contextmanager
def load_whisper_aligner(
    language: str, cache: ModelCache, settings: Settings
) -> Iterator[WhisperAligner]:
    """Whisper's cross-attention aligner on WHISPER_MODEL (`base` for other languages than
    English when that model is English-only)."""
    name = settings.whisper_model
    if name.endswith(".en") and language != "en":
        name = "base"  # the multilingual model that ships offline
    device, compute_type = str(settings.device), str(settings.compute_type)
    with load_whisper(cache, settings, name, device, compute_type) as (pipeline, _):
        if language not in pipeline.model.supported_languages:
            raise ModelUnavailable(f"Whisper model '{name}' cannot align language '{language}'.")
        yield WhisperAligner(pipeline.model, language, f"whisper:{name}")


class _ClipAligner(SegmentAligner):
    """Times each segment's words on that segment's audio."""

    def time_words(self, text: str, clip: np.ndarray) -> list[Word]:
        """Timed pieces of `text` in `clip`, in seconds from the clip's start."""
        raise NotImplementedError

    def time_segment(
        self, segment: Segment, audio: np.ndarray, _chars: bool
    ) -> tuple[list[Word], list[dict[str, Any]]]:
        start = max(0.0, float(segment["start"]))
        clip = audio[int(start * SAMPLE_RATE) : int(float(segment["end"]) * SAMPLE_RATE)]
        words = self.time_words(segment["text"], clip) if len(clip) >= SAMPLE_RATE // 20 else []
        for w in words:
            w["start"] += start
            w["end"] += start
        return words, []


class WhisperAligner(_ClipAligner):
    """Whisper's cross-attention DTW (faster-whisper's word timestamps) on the known text, with
    word edges moved out of pauses: DTW gives each pause to a neighbouring word."""

    WINDOW = 30.0  # seconds Whisper's encoder sees at once
    MAX_TOKENS = 440  # its decoder sees 448 tokens, the start sequence included
    PREPEND = "\"'“¿([{-"  # faster-whisper's defaults
    APPEND = "\"'.。,，!！?？:：”)]}、"

    def __init__(self, model: Any, language: str, name: str):
        from faster_whisper.tokenizer import Tokenizer

        self.model, self.name, self.language = model, name, language
        self.lanes = model.model.num_workers  # CTranslate2 releases the GIL
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


class PocketsphinxAligner(_ClipAligner):
    """English HMM forced alignment with pocketsphinx's bundled en-us model and CMUdict. Words the
    dictionary lacks get a spelling-based pronunciation; a segment it cannot align is timed by
    `fallback` (Whisper). One decoder runs one utterance at a time: one user (the model cache's
    rule)."""

    name = "pocketsphinx:en-us"
    PAD = 0.5  # seconds of silence around each clip

    def __init__(self, fallback: Callable[[], AbstractContextManager[_ClipAligner]] | None = None):
        from pocketsphinx import Decoder

        # dither: digital silence (exact zeros) derails the search; the wide word-exit beam
        # keeps words the model finds unlikely; without the lattice best-path pass the search
        # drops a segment's last word less often (synthetic speech: 14 of 36 clips handed to
        # Whisper before, 6 after)
        self._decoder = Decoder(
            lm=None, loglevel="FATAL", dither=True, seed=1, wbeam=1e-80, bestpath=False
        )
        self._guessed: set[str] = set()
        self._fallback = fallback

    def time_words(self, text: str, clip: np.ndarray) -> list[Word]:
        spans = word_spans(text, "en")
        plan: list[tuple[int, str, bool]] = []  # (word index, dictionary word, guessed)
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
        # the dither's random numbers and the live cepstral mean go on from the utterances
        # before: without this, a word's times depended on what was aligned earlier (0.05 ms)
        self._decoder.reinit_feat()
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
            with self._fallback() as whisper:
                return whisper.time_words(text, clip)
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
