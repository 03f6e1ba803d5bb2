"""Transcription with the real bundled models on real and synthetic speech."""

import numpy as np
import pytest

from app.pipeline.audio import decode_audio
from app.pipeline.options import AsrOptions, ModelOptions, VadOptions
from app.pipeline.transcribe import ENCODE_PIECE, VAD_SHARE, load_whisper, transcribe
from tests.speech import say, wer


def run(audio, settings, cache, progress=None, vad=None, **options):
    model = ModelOptions(**{"model": "base"} | options)  # device and the rest: the settings'
    settings = settings.for_worker()
    return transcribe(
        audio,
        model,
        AsrOptions(),
        vad or VadOptions(),
        cache=cache,
        settings=settings,
        progress=progress,
    )


def test_base_transcribes_the_two_speaker_call_and_detects_english(
    sample_audio, sample_reference, settings, model_cache
):
    progress = []
    transcript, info = run(sample_audio, settings, model_cache, progress=progress.append)
    text = " ".join(s["text"] for s in transcript["segments"])
    reference = " ".join(r[3] for r in sample_reference)
    assert wer(reference, text) < 0.35
    assert "chicago" in text.lower() and "new jersey" in text.lower()
    assert transcript["language"] == "en" and info["language_probability"] > 0.9
    assert info["language_candidates"][0]["language"] == "en"
    assert (info["model"], info["model_source"], info["device"]) == ("base", "bundled", "cpu")
    assert progress and progress[-1] == 100
    for seg in transcript["segments"]:
        assert 0 <= seg["start"] < seg["end"] <= 30.1


def test_whisperx_pyannote_voice_activity_gives_the_same_words_as_silero(
    sample_audio, sample_reference, settings, model_cache
):
    reference = " ".join(r[3] for r in sample_reference)
    texts = {}
    for method in ("silero", "pyannote"):
        vad, progress = VadOptions(vad_method=method), []
        transcript, info = run(sample_audio, settings, model_cache, progress.append, vad, language="en")  # fmt: skip
        assert info["vad"] == method
        assert progress == sorted(progress) and progress[-1] == 100
        if method == "pyannote":  # its pass reports as it goes, up to VAD_SHARE
            assert any(0 < p < VAD_SHARE for p in progress), progress
        vads = [m for m in model_cache.describe() if m["kind"] == "vad"]
        assert vads == ([{"kind": "vad", "name": "pyannote", "device": "cpu"}] if method == "pyannote" else [])  # fmt: skip
        texts[method] = " ".join(s["text"] for s in transcript["segments"])
        assert wer(reference, texts[method]) < 0.35, (method, texts[method])
    assert wer(texts["silero"], texts["pyannote"]) < 0.2, texts


def test_the_cpu_encoder_in_pieces_gives_the_whole_batch_output(
    sample_audio, settings, model_cache
):
    import ctranslate2
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    windows = [sample_audio[start * 16000 :] for start in range(ENCODE_PIECE * 2 + 1)]
    mels = np.stack(
        [log_mel_spectrogram(w, 80, padding=N_SAMPLES - len(w)).numpy() for w in windows]
    )
    calls = []  # a cancel is seen before each piece
    with load_whisper(model_cache, settings.for_worker(), "base", "cpu", "int8") as (pipeline, _):
        pipeline.model.between = lambda: calls.append(1)
        try:
            pieces = np.asarray(pipeline.model.encode(mels))
        finally:
            del pipeline.model.between
        whole = np.asarray(pipeline.model.model.encode(ctranslate2.StorageView.from_array(mels)))
    assert len(calls) == -(-len(windows) // ENCODE_PIECE)  # once per piece
    assert pieces.shape == whole.shape == (len(windows), 1500, 512)
    np.testing.assert_allclose(pieces, whole, atol=0.05 * float(np.abs(whole).max()))
    assert not np.allclose(pieces[0], pieces[1])  # each window keeps its own output, in order


def test_tiny_en_is_served_from_its_package(sample_audio, sample_reference, settings, model_cache):
    transcript, info = run(sample_audio, settings, model_cache, model="tiny.en")
    text = " ".join(s["text"] for s in transcript["segments"])
    assert wer(" ".join(r[3] for r in sample_reference), text) < 0.4
    assert transcript["language"] == "en" and info["model_source"] == "bundled"


def test_an_english_only_model_refuses_another_language(sample_audio, settings, model_cache):
    with pytest.raises(ValueError, match="English-only"):
        run(sample_audio, settings, model_cache, model="tiny.en", language="de")


def test_german_speech_is_detected_and_transcribed(tmp_path, settings, model_cache):
    text = "Guten Morgen. Heute ist das Wetter schön und wir gehen in den Park."
    audio = decode_audio(say(text, tmp_path / "de.wav", voice="de"))
    transcript, info = run(audio, settings, model_cache)
    assert transcript["language"] == "de"
    heard = " ".join(s["text"] for s in transcript["segments"]).lower()
    assert "morgen" in heard and "park" in heard


def test_translate_gives_english_text(tmp_path, settings, model_cache):
    audio = decode_audio(
        say("Guten Morgen. Heute ist das Wetter schön.", tmp_path / "de.wav", voice="de")
    )
    transcript, _ = run(audio, settings, model_cache, language="de", task="translate")
    heard = " ".join(s["text"] for s in transcript["segments"]).lower()
    assert "morning" in heard or "weather" in heard
    assert transcript["language"] == "de"  # the language of the speech


def test_silence_gives_no_segments_and_no_error(settings, model_cache):
    import numpy as np

    transcript, _ = run(np.zeros(16000 * 3, dtype=np.float32), settings, model_cache, language="en")
    assert transcript["segments"] == []
