"""Speech to text with whisperX's batched faster-whisper pipeline over chunks cut by a voice
activity model (faster-whisper's Silero ONNX by default, whisperX's pyannote on request)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from app.pipeline.models import ModelCache, resolve_whisper_model
from app.pipeline.options import AsrOptions, ModelOptions, VadOptions
from app.pipeline.types import Progress, Segment, Transcript

if TYPE_CHECKING:
    import whisperx.asr

    from app.settings import Settings

log = logging.getLogger(__name__)

VAD_SHARE = 10.0
"""Percent of the transcription stage the voice activity pass is shown as (whisperX's pyannote
pass is about a fifth of it on CPU, faster-whisper's Silero pass much less)."""
LANES = 2
"""On CPU a batch is cut into this many parts that run at once, each on its share of the threads
(CTranslate2's `inter_threads`; the weights are shared): one thread per part waits less than two
threads on one part, in the encoder and in the beam search. 3 minutes on 2 cores, interleaved in
one process: 11-16 % faster than the whole batch on both threads, the same words, +150 MB (each
part encodes one window at a time); language detection (one window, one lane) +0.3 s.
`bench/pipeline.py` prints the batch table."""


def silent(avg_logprob: float, no_speech_prob: float, options: Any) -> bool:
    """Whisper's silence rule, left out by whisperX's batched decoder ("you" on a hum): a
    window both improbable and likely silence (`options`: ours or faster-whisper's)."""
    return avg_logprob < options.log_prob_threshold and no_speech_prob > options.no_speech_threshold


class _GivenUp(Exception):
    """A part of a batch stops before its next window: the call was given up."""


@contextmanager
def load_whisper(
    cache: ModelCache,
    settings: Settings,
    name: str,
    device: str,
    compute_type: str,
    device_index: int = 0,
    threads: int = 0,
) -> Iterator[tuple[whisperx.asr.FasterWhisperPipeline, str]]:
    """whisperX's batched pipeline over the CTranslate2 Whisper model `name` (`.model`), loaded
    once per device and compute type and held by this caller alone; its `vad_model` is set per
    call by `transcribe`. Yields (pipeline, source) with source `local`, `bundled` or `hub`."""
    path, source = resolve_whisper_model(name, settings.model_dir, settings.hub_allowed)
    threads = threads or settings.cpu_threads or os.cpu_count() or 1
    lanes = min(LANES, threads) if device == "cpu" else 1

    def load() -> Any:
        import ctranslate2
        import whisperx
        from whisperx.asr import WhisperModel

        class Whisper(WhisperModel):  # type: ignore[misc]
            windows: list[tuple[float, float]]
            """(no-speech probability, temperature) of each window decoded, in order (a list
            per call)."""
            between: Callable[[], None] = staticmethod(lambda: None)
            """Called in the caller's thread while a batch runs, twice a second (set per call:
            a cancel is seen there)."""
            heard: Callable[[dict[str, list[Any]]], None] = staticmethod(lambda _: None)
            """Called with each batch's texts once decoded (set per call)."""
            giving_up = threading.Event()

            def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
                """On CPU window by window: the same output, with the attention maps of one."""
                if device != "cpu" or features.ndim < 3:
                    return super().encode(features)
                outputs = []
                for window in features:
                    if self.giving_up.is_set():
                        raise _GivenUp
                    outputs.append(np.asarray(super().encode(window[None])))
                return ctranslate2.StorageView.from_array(np.concatenate(outputs))

            def generate_segment_batched(
                self,
                features: np.ndarray,
                tokenizer: Any,
                options: Any,
                _encoder_output: Any = None,
            ) -> dict[str, list[Any]]:
                """The batch's texts, as Whisper decodes them. The batched decoder only searches
                (temperature 0), so a first temperature above 0 samples each window alone, and
                with two `temperatures` or more a text that fails Whisper's tests
                (`compression_ratio_threshold`: a token looped, `log_prob_threshold`:
                improbable) is decoded again alone at each in turn, the best try kept; not a
                window that is silence (improbable and over `no_speech_threshold`), which
                `transcribe` drops. Each window's no-speech probability and temperature go to
                `windows`."""
                from faster_whisper.transcribe import get_compression_ratio

                n, sampled = len(features), options.temperatures[0] > 0
                out: dict[str, list[Any]] = (
                    {"text": [""] * n, "avg_logprob": [0.0] * n, "no_speech_prob": [0.0] * n}
                    if sampled
                    else self.batch(features, tokenizer, options)
                )
                temperatures = [0.0] * n  # the batched search
                for i, text in enumerate(out["text"]):
                    improbable = out["avg_logprob"][i] < options.log_prob_threshold
                    passes = get_compression_ratio(text) <= options.compression_ratio_threshold
                    if not sampled and (
                        len(options.temperatures) < 2
                        or (passes and not improbable)
                        or silent(out["avg_logprob"][i], out["no_speech_prob"][i], options)
                    ):
                        continue
                    self.between()
                    encoded = self.encode(features[i : i + 1])
                    result, logprob, temperatures[i], _ = self.generate_with_fallback(
                        encoded, self.prompt(tokenizer, options), tokenizer, options
                    )
                    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
                    out["text"][i], out["avg_logprob"][i] = tokenizer.decode(tokens), logprob
                    out["no_speech_prob"][i] = result.no_speech_prob
                self.windows += zip(out["no_speech_prob"], temperatures, strict=True)
                self.heard(out)
                return out

            def prompt(self, tokenizer: Any, options: Any) -> list[int]:
                initial = options.initial_prompt
                return self.get_prompt(
                    tokenizer,
                    tokenizer.encode(" " + initial.strip()) if initial else [],
                    without_timestamps=options.without_timestamps,
                    prefix=options.prefix,
                    hotwords=options.hotwords,
                )

            def decode(
                self, features: np.ndarray, tokenizer: Any, options: Any
            ) -> dict[str, list[Any]]:
                """whisperX's batched search, with each window's no-speech probability."""
                results = self.model.generate(
                    self.encode(features),
                    [self.prompt(tokenizer, options)] * len(features),
                    beam_size=options.beam_size,
                    patience=options.patience,
                    length_penalty=options.length_penalty,
                    max_length=self.max_length,
                    suppress_blank=options.suppress_blank,
                    suppress_tokens=options.suppress_tokens,
                    no_repeat_ngram_size=options.no_repeat_ngram_size,
                    repetition_penalty=options.repetition_penalty,
                    return_scores=True,
                    return_no_speech_prob=True,
                )
                out: dict[str, list[Any]] = {"text": [], "avg_logprob": [], "no_speech_prob": []}
                for result in results:
                    ids = result.sequences_ids[0]
                    out["text"].append(tokenizer.decode([t for t in ids if t < tokenizer.eot]))
                    score = result.scores[0] * len(ids) ** options.length_penalty
                    out["avg_logprob"].append(score / (len(ids) + 1))
                    out["no_speech_prob"].append(result.no_speech_prob)
                return out

            def batch(
                self, features: np.ndarray, tokenizer: Any, options: Any
            ) -> dict[str, list[Any]]:
                """On CPU the batch's parts run at once, one per lane; texts kept in order."""
                if device != "cpu":
                    return self.decode(features, tokenizer, options)
                run = self.decode
                self.between()
                with ThreadPoolExecutor(lanes) as pool:
                    cut = np.array_split(features, min(lanes, len(features)))
                    parts = [pool.submit(run, part, tokenizer, options) for part in cut]
                    try:
                        while wait(parts, timeout=0.5).not_done:
                            self.between()
                    except BaseException:
                        self.giving_up.set()  # each part stops before its next window
                        wait(parts)
                        self.giving_up.clear()
                        raise
                results = [part.result() for part in parts]
                return {key: [v for r in results for v in r[key]] for key in results[0]}

        import torch

        torch_threads = torch.get_num_threads()
        model = Whisper(
            path,
            device=device,
            device_index=device_index,
            compute_type=compute_type,
            cpu_threads=threads // lanes,
            num_workers=lanes,
            local_files_only=source != "hub",
            download_root=str(settings.model_dir / "hub"),
        )
        model.windows = []
        # CTranslate2 sets this thread's OpenMP thread count to its own, which torch shares
        torch.set_num_threads(torch_threads)
        return whisperx.load_model(
            name,
            device,
            device_index=device_index,
            compute_type=compute_type,
            model=model,
            vad_model=_silero(VadOptions(), 30),
            language=None,
        )

    key = ("whisper", name, device, compute_type, device_index, threads, lanes)
    with cache.use(key, load) as pipeline:
        yield pipeline, source


@dataclasses.dataclass
class _Speech:
    start: float
    end: float
    speaker: str = "UNKNOWN"


def _silero(vad: VadOptions, chunk_size: int) -> Any:
    """faster-whisper's bundled Silero ONNX model as a whisperX VAD: speech above `vad_onset`,
    ended below `vad_offset`, runs split at `chunk_size` seconds, padded 400 ms and cut at
    160 ms pauses (faster-whisper's batched defaults). About 0.15 s a minute of audio
    on one CPU thread, against several seconds for the pyannote model."""
    from faster_whisper.vad import VadOptions as SileroOptions
    from faster_whisper.vad import get_speech_timestamps
    from whisperx.vads import Vad

    options = SileroOptions(
        threshold=vad.vad_onset,
        neg_threshold=min(vad.vad_offset, vad.vad_onset),
        max_speech_duration_s=chunk_size,
        min_silence_duration_ms=160,
        speech_pad_ms=400,
    )

    class Silero(Vad):  # type: ignore[misc]
        preprocess_audio = staticmethod(lambda audio: audio)

        def __call__(self, audio: dict[str, Any], **_: Any) -> list[_Speech]:
            runs = get_speech_timestamps(audio["waveform"], options, audio["sample_rate"])
            rate = audio["sample_rate"]
            return [_Speech(r["start"] / rate, r["end"] / rate) for r in runs]

        @staticmethod
        def merge_chunks(
            segments: list[Any], chunk_size: float, **kwargs: Any
        ) -> list[dict[str, Any]]:
            return Vad.merge_chunks(segments, chunk_size, **kwargs) if segments else []

    return Silero(vad.vad_onset)


def _pyannote(cache: ModelCache, device: str, device_index: int) -> Any:
    """whisperX's own pyannote VAD (bundled weights), for `vad_method=pyannote`, reporting its
    progress through `vad.progress` (whisperX's call reports nothing: minutes on long files)."""
    from whisperx.vads import Pyannote

    class Reporting(Pyannote):  # type: ignore[misc]
        progress: Progress | None = None

        def __call__(self, audio: dict[str, Any], **_: Any) -> Any:
            def hook(completed: int = 0, total: int = 1, **_: Any) -> None:
                if self.progress is not None:
                    self.progress(100 * min(completed / max(total, 1), 1.0))

            # what VoiceActivitySegmentation.apply does, with the hook passed on
            return self.vad_pipeline._segmentation(audio, hook=hook)

    def load() -> Any:
        import torch

        where = f"cuda:{device_index}" if device == "cuda" else device
        return Reporting(torch.device(where), token=None, vad_onset=0.5, vad_offset=0.363)

    return cache.use(("vad", "pyannote", device, None, device_index), load)


def detect_language(
    model: Any, audio: np.ndarray, top: int = 3, among: list[str] | None = None
) -> list[tuple[str, float]]:
    """The `top` most likely languages of the first 30 s of speech, most likely first, out of
    `among` where given (any language where the model knows none of them). Speech
    is what Silero finds, read two minutes at a time until there is enough (the audio's start
    when it finds none): a minute of hold music, ringing or silence before the first word
    otherwise decides the language (German then came out as English, or as dashes)."""
    from faster_whisper.vad import VadOptions as SileroOptions
    from faster_whisper.vad import get_speech_timestamps
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    speech: list[np.ndarray] = []
    for start in range(0, len(audio), 4 * N_SAMPLES):
        piece = audio[start : start + 4 * N_SAMPLES]
        speech += [
            piece[r["start"] : r["end"]] for r in get_speech_timestamps(piece, SileroOptions())
        ]
        if sum(map(len, speech)) >= N_SAMPLES:
            break
    window = (np.concatenate(speech) if speech else audio)[:N_SAMPLES]
    n_mels = model.feat_kwargs.get("feature_size") or 80
    mel = log_mel_spectrogram(window, n_mels=n_mels, padding=N_SAMPLES - window.shape[0])
    scores = [
        (token[2:-2], round(float(p), 4))
        for token, p in model.model.detect_language(model.encode(mel))[0]
    ]
    return ([s for s in scores if s[0] in (among or ())] or scores)[:top]


def transcribe(
    audio: np.ndarray, model: ModelOptions, asr: AsrOptions, vad: VadOptions, *,
    cache: ModelCache, settings: Settings, progress: Progress | None = None,
    heard: Callable[[str], None] | None = None,
) -> tuple[Transcript, dict[str, Any]]:  # fmt: skip
    """Transcribe (or translate to English) 16 kHz audio; empty model options are the settings'.
    Returns the whisperX transcript and facts for the task metadata (model source, language
    probability, candidates). `heard` is given the text so far after each batch."""
    name = model.model or settings.whisper_model
    device = model.device or settings.device
    compute_type = model.compute_type or settings.compute_type
    batch_size = model.batch_size or settings.batch_size
    assert device and compute_type and batch_size, "a worker's settings are resolved"
    language = model.language
    with load_whisper(
        cache, settings, name, device, compute_type, model.device_index, model.threads
    ) as (pipeline, source):
        info: dict[str, Any] = {
            "model": name,
            "model_source": source,
            "device": device,
            "compute_type": compute_type,
            "vad": vad.vad_method,
        }
        if not pipeline.model.model.is_multilingual:
            if language not in (None, "en"):
                raise ValueError(
                    f"Model '{name}' is English-only and cannot transcribe language "
                    f"'{language}': choose a multilingual model such as 'base'."
                )
            language = "en"
        elif language is None:
            candidates = detect_language(pipeline.model, audio, among=model.languages)
            language = candidates[0][0]
            info["language_probability"] = candidates[0][1]
            info["language_candidates"] = [{"language": c, "probability": p} for c, p in candidates]
        base = pipeline.options
        pipeline.options = dataclasses.replace(
            base, **asr.model_dump(exclude={"suppress_numerals"})
        )
        pipeline._vad_params = vad.model_dump() | {"chunk_size": model.chunk_size}
        held = contextlib.ExitStack()
        if vad.vad_method == "pyannote":
            vad_model = held.enter_context(_pyannote(cache, device, model.device_index))
            vad_model.progress = lambda p: report(VAD_SHARE * p / 100)
            held.callback(setattr, vad_model, "progress", None)
            pipeline.vad_model = vad_model
        else:
            pipeline.vad_model = _silero(vad, model.chunk_size)
        pipeline.suppress_numerals = asr.suppress_numerals
        pipeline.preset_language = None
        pipeline.tokenizer = None
        done = [0.0]  # never moves back

        def report(percent: float) -> None:
            done[0] = max(done[0], percent)
            if progress is not None:
                progress(done[0])

        def batches(percent: float) -> None:
            report(VAD_SHARE + (100 - VAD_SHARE) * percent / 100)

        def forward(inputs: Any, **kwargs: Any) -> Any:
            # progress is otherwise only reported after a whole batch; calling it before each
            # batch lets the caller stop a cancelled task between batches (the first: VAD done)
            report(VAD_SHARE)
            info.setdefault("vad_seconds", round(time.perf_counter() - vad_started, 3))
            return type(pipeline)._forward(pipeline, inputs, **kwargs)

        texts: list[str] = []

        def hear(out: dict[str, list[Any]]) -> None:  # what the segments below keep, in order
            windows = zip(out["text"], out["avg_logprob"], out["no_speech_prob"], strict=True)
            texts.extend(
                t.strip() for t, lp, ns in windows if t.strip() and not silent(lp, ns, asr)
            )
            if heard is not None:
                heard(" ".join(texts))

        pipeline._forward = forward
        pipeline.model.between = lambda: report(done[0])
        pipeline.model.heard = hear
        windows: list[tuple[float, float]] = []
        pipeline.model.windows = windows
        report(0.0)  # language detection can take seconds: a chance to stop before decoding
        vad_started = time.perf_counter()  # the first batch comes once the VAD has cut the audio
        try:
            result = pipeline.transcribe(
                audio,
                batch_size=batch_size,
                language=language,
                task=model.task,
                chunk_size=model.chunk_size,
                progress_callback=batches,
            )
        finally:
            pipeline.options = base
            pipeline.vad_model = None  # the Silero one is per call; the pyannote one is released
            del pipeline._forward, pipeline.model.between, pipeline.model.heard
            held.close()
    info.setdefault("vad_seconds", round(time.perf_counter() - vad_started, 3))
    segments: list[Segment] = []
    for s, (no_speech, temperature) in zip(result["segments"], windows, strict=True):
        text, logprob = s["text"].strip(), float(s.get("avg_logprob", 0.0))
        if not text:
            continue
        if silent(logprob, no_speech, asr):
            # what was dropped is kept in the task's metadata: nothing vanishes unseen
            info.setdefault("silent_windows", []).append(
                {"start": s["start"], "end": s["end"], "text": text,
                 "no_speech_prob": round(no_speech, 3), "avg_logprob": round(logprob, 3)}
            )  # fmt: skip
        else:
            segments.append({"start": s["start"], "end": s["end"], "text": text,
                             "avg_logprob": logprob, "temperature": temperature,
                             "no_speech_prob": round(no_speech, 3)})  # fmt: skip
    return {"segments": segments, "language": language}, info
