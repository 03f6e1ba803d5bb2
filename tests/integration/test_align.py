"""Word alignment with real models on synthetic speech with exact word times, and on sample.wav."""

from __future__ import annotations

import io
import json
import subprocess
import wave
from contextlib import nullcontext

import numpy as np
import pytest
from scipy.signal import resample_poly

from app.pipeline.align import load_aligner, word_spans
from app.pipeline.models import ModelUnavailable
from app.pipeline.offline.align import PocketsphinxAligner, load_whisper_aligner
from app.pipeline.types import SAMPLE_RATE, Transcript
from tests.speech import espeak_word_by_word, espeak_words

ENGLISH = [
    "the quick brown fox jumps over the lazy dog while seven tired workers count boxes",
    "she sells sea shells by the sea shore and the shells she sells are surely from the shore",
    "a large rhinoceros wandered into the village market yesterday morning looking for food",
]
VOICES = [("en-us", 150), ("en-gb", 190), ("en-us+f3", 170), ("en-us+m3", 130)]


def say_word(word: str, voice: str, rate: int) -> np.ndarray:
    """One word from espeak-ng at 16 kHz, its leading and trailing silence cut off."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "--stdout", word],
        capture_output=True,
        check=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate_in = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768
    audio = resample_poly(samples, SAMPLE_RATE, rate_in).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def speak(
    words: list[str], voice: str = "en-us", rate: int = 160, seed: int = 0, lead: float = 0.3
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Words said one by one with random pauses (0-0.3 s, some none) between them: the audio and
    each word's exact (word, start, end) in seconds."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    truth, at = [], len(parts[0])
    for word in words:
        audio = say_word(word, voice, rate)
        gap = 0 if rng.uniform() < 0.25 else int(rng.uniform(0.03, 0.3) * SAMPLE_RATE)
        truth.append((word, at / SAMPLE_RATE, (at + len(audio)) / SAMPLE_RATE))
        parts += [audio, np.zeros(gap, np.float32)]
        at += len(audio) + gap
    parts.append(np.zeros(int(0.3 * SAMPLE_RATE), np.float32))
    return np.concatenate(parts), truth


def one_segment(text: str, audio: np.ndarray, language: str = "en") -> Transcript:
    return {
        "segments": [{"start": 0.0, "end": len(audio) / SAMPLE_RATE, "text": text}],
        "language": language,
    }


def aligner_name(language: str, cache, settings, **kwargs) -> str:
    with load_aligner(language, cache=cache, settings=settings, **kwargs) as aligner:
        return aligner.name


def start_errors(aligned, truth) -> np.ndarray:
    words = aligned["word_segments"]
    assert [w["word"] for w in words] == [t[0] for t in truth]
    return np.abs([w["start"] - t[1] for w, t in zip(words, truth, strict=True)])


@pytest.fixture(scope="module")
def english() -> list[tuple[str, np.ndarray, list[tuple[str, float, float]]]]:
    cases = []
    for seed, (voice, rate) in enumerate(VOICES):
        text = ENGLISH[seed % len(ENGLISH)]
        audio, truth = speak(text.split(), voice, rate, seed)
        cases.append((text, audio, truth))
    return cases


@pytest.fixture
def offline(settings):
    settings.aligner = "offline"
    return settings


def test_pocketsphinx_times_english_words_within_tens_of_ms(english, offline, model_cache):
    with load_aligner("en", cache=model_cache, settings=offline) as first:
        pass
    with load_aligner("en", cache=model_cache, settings=offline) as aligner:
        assert aligner is first and aligner.name == "pocketsphinx:en-us"  # loaded once
        errors = np.concatenate(
            [start_errors(aligner.align(one_segment(t, a), a), truth) for t, a, truth in english]
        )
    assert np.median(errors) < 0.03
    assert np.percentile(errors, 90) < 0.06


def test_whisper_dtw_times_english_words(english, settings, model_cache):
    # the clips one after another, a segment each: on 2 threads two segments are timed at once
    audio = np.concatenate([a for _, a, _ in english])
    offsets = np.cumsum([0] + [len(a) / SAMPLE_RATE for _, a, _ in english])
    segments = [
        {"start": float(at), "end": float(end), "text": t}
        for (t, _, _), at, end in zip(english, offsets[:-1], offsets[1:], strict=True)
    ]
    truth = [
        (w, s + at, e + at)
        for (_, _, t), at in zip(english, offsets, strict=False)
        for w, s, e in t
    ]
    settings = settings.model_copy(update={"cpu_threads": 2}).for_worker()
    with load_whisper_aligner("en", model_cache, settings) as aligner:
        assert aligner.name == "whisper:base" and aligner.lanes == 2
        errors = start_errors(aligner.align({"segments": segments, "language": "en"}, audio), truth)
    assert np.median(errors) < 0.05
    assert np.percentile(errors, 90) < 0.3


@pytest.mark.parametrize("language", ["en", "de"])
def test_whisper_word_boundaries_in_continuous_speech_and_short_gaps(
    language, settings, model_cache
):
    # DTW alone is 70 ms off at a median on continuous speech and 120-150 ms with 30-80 ms gaps
    # between words; the energy refinement of the boundaries between words brings both down
    text = {
        "en": "please remember to water the plants on the balcony before you leave",
        "de": "der alte Mann liest jeden Morgen die Zeitung am offenen Fenster",
    }[language]
    voice = "en-us" if language == "en" else "de"
    zeros = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    audio, truth = espeak_words(text, voice, 170)
    continuous = np.concatenate([zeros, audio, zeros]), [(w, s + 0.3, e + 0.3) for w, s, e in truth]
    gaps = espeak_word_by_word(text.split(), voice, 150, gaps=(0.03, 0.08), no_gap_share=0.0)
    with load_whisper_aligner(language, model_cache, settings) as aligner:
        for audio, truth in (continuous, gaps):
            errors = start_errors(aligner.align(one_segment(text, audio, language), audio), truth)
            assert np.nanmedian(errors) < 0.06


def test_whisper_splits_a_segment_longer_than_its_window(english, settings, model_cache):
    audio = np.concatenate([a for _, a, _ in english])
    offsets = np.cumsum([0] + [len(a) / SAMPLE_RATE for _, a, _ in english])[:-1]
    truth = [
        (w, s + at, e + at) for (_, _, t), at in zip(english, offsets, strict=True) for w, s, e in t
    ]
    assert len(audio) / SAMPLE_RATE > 30
    text = " ".join(t for t, _, _ in english)
    with load_whisper_aligner("en", model_cache, settings) as aligner:
        errors = start_errors(aligner.align(one_segment(text, audio), audio), truth)
    assert np.median(errors) < 0.05
    assert np.percentile(errors, 90) < 0.3


def test_german_is_aligned_by_whisper(settings, model_cache):
    text = "heute gehen wir mit dem kleinen Hund in den großen Park"
    audio, truth = speak(text.split(), voice="de", rate=150, seed=7)
    with load_aligner("de", cache=model_cache, settings=settings) as aligner:
        assert aligner.name == "whisper:base"
        aligned = aligner.align(one_segment(text, audio, "de"), audio)
    assert aligned["language"] == "de"
    errors = start_errors(aligned, truth)
    assert np.median(errors) < 0.05
    assert np.percentile(errors, 90) < 0.3


@pytest.mark.parametrize("language", ["en", "de"])
def test_garbage_and_numbers_are_kept_and_timed(language, offline, model_cache):
    text = "we counted 42 xqzzt boxes on the 3rd floor"
    words = text.split()
    audio, truth = speak(words, voice="en-us", rate=160, seed=3)
    with load_aligner(language, cache=model_cache, settings=offline) as aligner:
        aligned = aligner.align(one_segment(text, audio, language), audio)
    got = aligned["word_segments"]
    assert [w["word"] for w in got] == words
    assert [w["word"] for w in aligned["segments"][0]["words"]] == words
    starts = [w["start"] for w in got]
    assert starts == sorted(starts) and all(w["end"] >= w["start"] for w in got)
    assert starts[0] >= 0 and got[-1]["end"] <= len(audio) / SAMPLE_RATE
    errors = start_errors(aligned, truth)
    assert np.median(errors) < 0.1


def test_pocketsphinx_falls_back_when_it_cannot_align(offline, model_cache):
    text = "yesterday engineers met kubernetes near the office"
    audio, truth = speak(text.split(), seed=0)
    used = []

    def fallback():
        used.append(True)
        return load_whisper_aligner("en", model_cache, offline)  # entered by the aligner

    aligner = PocketsphinxAligner(fallback)
    # text that does not fit the audio at all makes the forced alignment fail
    assert aligner.time_words(" ".join(["the"] * 300), audio) != []
    assert used
    errors = start_errors(aligner.align(one_segment(text, audio), audio), truth)
    assert np.median(errors) < 0.03


def test_pocketsphinx_times_a_clip_the_same_whatever_it_aligned_before(sample_audio):
    """One decoder serves every task of a worker: its times must not depend on the others."""
    clip, other = sample_audio[140_000:158_000], sample_audio[160_000:272_000]
    text = "I didn't know you were there."
    fresh = PocketsphinxAligner().time_words(text, clip)
    used = PocketsphinxAligner()
    used.time_words("This is Diane in New Jersey and I'm Sheila", other)
    assert used.time_words(text, clip) == fresh != []


def test_several_segments_keep_their_words_and_bounds(english, offline, model_cache):
    text, audio, truth = english[0]
    words = text.split()
    cut = truth[6][1] - 0.05
    transcript: Transcript = {
        "language": "en",
        "segments": [
            {"start": 0.0, "end": cut, "text": " ".join(words[:6])},
            {"start": cut, "end": len(audio) / SAMPLE_RATE, "text": " ".join(words[6:])},
            {"start": 1.0, "end": 1.0, "text": "   "},
        ],
    }
    progress: list[float] = []
    with load_aligner("en", cache=model_cache, settings=offline) as aligner:
        aligned = aligner.align(
            transcript, audio, progress=progress.append, return_char_alignments=True
        )
    assert progress == pytest.approx([100 / 3, 200 / 3, 100])
    first, second, empty = aligned["segments"]
    assert [w["word"] for w in first["words"] + second["words"]] == words
    assert first["end"] <= cut <= second["start"]
    assert empty["text"] == "   " and empty["words"] == []
    assert np.median(start_errors(aligned, truth)) < 0.03
    timed_chars = [c for c in first["chars"] if "start" in c]
    assert "".join(c["char"] for c in first["chars"]) == first["text"]
    assert len(timed_chars) == len(first["text"].replace(" ", ""))


def test_sample_call_matches_reference_utterance_times(
    sample_audio, sample_reference, settings, model_cache
):
    # three stretches of the real two-speaker call, each one segment; the reference times of
    # the utterances inside a stretch are what the aligner must find
    groups = [sample_reference[0:5], sample_reference[5:9], sample_reference[9:13]]
    transcript: Transcript = {
        "language": "en",
        "segments": [
            {"start": g[0][0], "end": g[-1][1], "text": " ".join(r[3] for r in g)} for g in groups
        ],
    }
    with load_aligner("en", cache=model_cache, settings=settings) as aligner:
        aligned = aligner.align(transcript, sample_audio)
    errors = []
    # sentences become segments of their own; the words, in order, are what is checked
    words = iter(w for s in aligned["segments"] for w in s["words"])
    for group in groups:
        for k, (start, end, _, text) in enumerate(group):
            said = [next(words) for _ in text.split()]
            assert " ".join(w["word"] for w in said) == text
            if k > 0:
                errors.append(abs(said[0]["start"] - start))
            if k < len(group) - 1:
                errors.append(abs(said[-1]["end"] - end))
    assert next(words, None) is None
    assert len(aligned["segments"]) > len(groups)
    assert np.median(errors) < 0.15
    assert np.percentile(errors, 90) < 0.3


def test_production_path_runs_a_local_wav2vec2_model(tmp_path, settings, model_cache):
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    vocab = {c: i for i, c in enumerate(["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(tmp_path / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    processor = Wav2Vec2Processor(
        feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=SAMPLE_RATE), tokenizer=tokenizer
    )
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, pad_token_id=0,
    )  # fmt: skip
    folder = tmp_path / "tiny-wav2vec2"
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    processor.save_pretrained(folder)

    settings.aligner = "production"
    with load_aligner("en", cache=model_cache, settings=settings, align_model=str(folder)) as first:
        assert first.name == f"wav2vec2:{folder}"
    settings.aligner = "offline"  # a named local model is used in every mode, and loaded once
    text = "Hello there, 42 xqzzt worlds!"
    audio = np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    transcript: Transcript = {
        "language": "en",
        "segments": [
            {"start": 0.2, "end": 2.5, "text": text},
            {"start": 2.5, "end": 2.9, "text": "again. And again"},
        ],
    }
    with load_aligner(
        "en", cache=model_cache, settings=settings, align_model=str(folder)
    ) as aligner:
        assert aligner is first
        aligned = aligner.align(transcript, audio, return_char_alignments=True)
    expected = [text[a:b] for a, b in word_spans(text, "en")] + ["again.", "And", "again"]
    assert [w["word"] for w in aligned["word_segments"]] == expected
    assert all("start" in w for w in aligned["word_segments"])
    assert aligned["segments"][0]["chars"]
    # the second segment is split into its two sentences
    texts = [s["text"] for s in aligned["segments"]]
    assert texts == [text, "again.", "And again"]
    for segment in aligned["segments"]:
        source = next(s for s in transcript["segments"] if segment["text"] in s["text"])
        assert source["start"] <= segment["start"] <= segment["end"] <= source["end"]


def test_production_without_a_model_fails_fast_with_advice(settings, model_cache):
    settings.aligner = "production"
    with pytest.raises(ModelUnavailable, match="ALIGNER"):
        aligner_name("en", model_cache, settings)
    with pytest.raises(ModelUnavailable):
        aligner_name("en", model_cache, settings, align_model="org/not-here")


def test_auto_mode_picks_the_offline_aligners(settings, model_cache):
    assert aligner_name("EN", model_cache, settings) == "pocketsphinx:en-us"
    assert aligner_name("fr", model_cache, settings) == "whisper:base"
    with pytest.raises(ModelUnavailable):
        aligner_name("xx", model_cache, settings)


def test_words_past_the_end_of_the_audio_are_kept(english, offline, model_cache):
    text, audio, truth = english[1]
    end = len(audio) / SAMPLE_RATE
    transcript: Transcript = {
        "language": "en",
        "segments": [
            {"start": 0.0, "end": end, "text": text},
            {"start": end + 1, "end": end + 2, "text": "nothing here"},
        ],
    }
    for method in ("ignore", "nearest", "linear"):
        with load_aligner("en", cache=model_cache, settings=offline) as aligner:
            aligned = aligner.align(transcript, audio, interpolate_method=method)
        spoken, past = aligned["segments"]
        assert np.median(start_errors({"word_segments": spoken["words"]}, truth)) < 0.03
        assert [w["word"] for w in past["words"]] == ["nothing", "here"]
        assert (past["start"], past["end"]) == (end + 1, end + 2)
        assert aligned["word_segments"][-2:] == past["words"]
        if method == "ignore":
            assert all("start" not in w for w in past["words"])
        else:
            times = [t for w in past["words"] for t in (w["start"], w["end"])]
            assert times == pytest.approx([end + 1, end + 1.5, end + 1.5, end + 2], abs=1e-3)


def measure() -> None:
    """Word-start error of each offline aligner on more synthetic speech than the tests use."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from app.pipeline.models import ModelCache
    from app.settings import Settings

    settings = Settings(_env_file=None, device="cpu", compute_type="int8", hub_allowed=False)
    settings.aligner = "offline"
    cache = ModelCache()
    voices = [*VOICES, ("en-gb-x-rp", 160), ("en-us+f2", 200)]
    english = [speak(ENGLISH[i % 3].split(), *voices[i % 6], seed=i) for i in range(12)]
    german_text = [
        "heute gehen wir mit dem kleinen Hund in den großen Park",
        "der alte Mann liest jeden Morgen die Zeitung am Fenster",
    ]
    german = [speak(german_text[i % 2].split(), "de", 130 + 10 * i, seed=i) for i in range(6)]
    runs = [
        ("pocketsphinx alone", nullcontext(PocketsphinxAligner()), english, "en"),
        ("en offline: pocketsphinx + Whisper fallback",
         load_aligner("en", cache=cache, settings=settings), english, "en"),
        ("Whisper DTW, English", load_whisper_aligner("en", cache, settings), english, "en"),
        ("Whisper DTW, German", load_aligner("de", cache=cache, settings=settings), german, "de"),
    ]  # fmt: skip
    for label, loaded, cases, language in runs:
        errors = []
        with loaded as aligner:
            for audio, truth in cases:
                text = " ".join(t[0] for t in truth)
                aligned = aligner.align(one_segment(text, audio, language), audio)
                errors += list(start_errors(aligned, truth))
        print(
            f"{label} ({aligner.name}): {len(errors)} words, word-start error median "
            f"{np.median(errors) * 1000:.0f} ms, p90 {np.percentile(errors, 90) * 1000:.0f} ms"
        )


if __name__ == "__main__":  # python -m tests.integration.test_align
    measure()
