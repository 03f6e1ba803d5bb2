"""Task options, one typed model per family: parsed from query (or form) parameters, validated
once, stored on the task as `TaskParams` (JSON) and read back by the worker."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
)

LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian",
    "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian",
    "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala",
    "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese",
    "yue": "cantonese",
}  # fmt: skip
"""Whisper's languages: ISO 639-1 code (plus haw, yue) → English name."""


def language_code(language: str | None) -> str | None:
    """A Whisper language code, or None for `auto`/empty (detect); ValueError otherwise."""
    if language is None or language.strip().lower() in ("", "auto"):
        return None
    code = language.strip().lower()
    if code not in LANGUAGES:
        shown = code if len(code) <= 20 else f"{code[:20]}…"
        raise ValueError(
            f"'{shown}' is not a language Whisper knows; use an ISO 639-1 code such as "
            "'en', 'de', 'fr', or omit it (or 'auto') to detect the language"
        )
    return code


def _split_commas(value: Any) -> Any:
    """Accept repeated keys (`?x=1&x=2`), comma lists (`?x=1,2`) and both mixed."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for item in items:
        out += (
            [p.strip() for p in item.split(",") if p.strip()] if isinstance(item, str) else [item]
        )
    return out


def _listed_language(language: str) -> str:
    code = language_code(language)
    if code is None:
        raise ValueError("list languages such as 'de,en', or leave languages out to detect any")
    return code


Language = Annotated[
    str | None,
    AfterValidator(language_code),
    Field(
        description="ISO 639-1 code of the speech; omit or `auto` to detect it. Default: DEFAULT_LANG."
    ),
]
Speakers = Annotated[int | None, Field(ge=1, le=50)]


class ModelOptions(BaseModel):
    """Which Whisper model runs, where, and on what language. Empty values are filled from the
    settings: the API fills `model` and `language`, the worker the device-dependent rest."""

    language: Language = None
    languages: Annotated[
        list[Annotated[str, AfterValidator(_listed_language)]] | None,
        BeforeValidator(_split_commas),
    ] = Field(
        None,
        description="Languages the speech may be in (`de,en`): detection picks the likeliest of them. Ignored when `language` is given.",
    )
    task: Literal["transcribe", "translate"] = Field(
        "transcribe", description="`translate` gives English text for any language."
    )
    model: str | None = Field(
        None,
        max_length=200,
        description="Whisper model name (see GET /models) or a model folder under MODEL_DIR. Default: WHISPER_MODEL.",
    )
    device: Literal["cuda", "cpu"] | None = Field(
        None, description="Default: DEVICE (CUDA when the worker has it)."
    )
    device_index: int = Field(0, ge=0, le=64, description="GPU index.")
    batch_size: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Chunks decoded at once. Default: BATCH_SIZE (8).",
    )
    chunk_size: int = Field(
        20, ge=1, le=30, description="Longest chunk the VAD merges speech into, in seconds."
    )
    compute_type: Literal["float16", "float32", "int8"] | None = Field(
        None, description="Default: COMPUTE_TYPE (float16 on CUDA, int8 on CPU)."
    )
    threads: int = Field(0, ge=0, le=256, description="CPU threads; 0 = CPU_THREADS setting.")


class AsrOptions(BaseModel):
    """Whisper decoding options (faster-whisper's names)."""

    beam_size: int = Field(5, ge=1, le=20)
    best_of: int = Field(5, ge=1, le=20)
    patience: float = Field(1.0, gt=0, le=10)
    length_penalty: float = Field(1.0, ge=0, le=10)
    temperatures: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]], BeforeValidator(_split_commas)
    ] = Field(
        [0.0],
        min_length=1,
        description="Sampling temperature(s) in [0, 1], tried in order when decoding fails: `0` or `0,0.2,0.4` (or repeated keys).",
    )
    compression_ratio_threshold: float = Field(2.4, gt=0)
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = Field(0.6, ge=0, le=1)
    initial_prompt: str | None = Field(None, max_length=2000)
    suppress_tokens: Annotated[list[int], BeforeValidator(_split_commas)] = Field(
        [-1], description="Token ids to suppress: `-1` (default set), `1,2,3` or repeated keys."
    )
    suppress_numerals: bool = False
    hotwords: str | None = Field(None, max_length=2000)


class VadOptions(BaseModel):
    vad_method: Literal["silero", "pyannote"] = Field(
        "silero",
        description="Voice activity model that cuts the audio into chunks: `silero` (faster-whisper's ONNX model, fast on CPU) or `pyannote` (whisperX's default, a torch model).",
    )
    vad_onset: float = Field(0.5, gt=0, lt=1, description="Speech starts above this score.")
    vad_offset: float = Field(0.363, gt=0, lt=1, description="Speech ends below this score.")


class AlignmentOptions(BaseModel):
    align_model: str | None = Field(
        None,
        description="wav2vec2 CTC model (hub name or local folder); empty: the language's default, or the offline aligner.",
    )
    interpolate_method: Literal["nearest", "linear", "ignore"] = Field(
        "nearest",
        description="How words the aligner cannot time get times; `ignore` leaves them untimed (never dropped).",
    )
    return_char_alignments: bool = False
    align: bool = Field(True, description="Word-level alignment step (full pipeline only).")


class DiarizationOptions(BaseModel):
    max_speakers: Speakers = None
    min_speakers: Speakers = None
    num_speakers: Speakers = Field(None, description="Exact number of speakers, when known.")
    diarize: bool = Field(True, description="Speaker diarization step (full pipeline only).")
    return_speaker_embeddings: bool = Field(
        False,
        description="Also return each speaker's voice embedding (`speaker_embeddings`: label → unit-norm vector); for /service/diarize it is in the task's metadata, the result staying a list of turns.",
    )
    identify_speakers: bool = Field(
        True,
        description="Name diarized speakers whose voice matches one of your speaker profiles (POST /speakers).",
    )

    # field validators (not a model one), so that the error names the parameter
    @field_validator("min_speakers")
    @classmethod
    def _at_most_max(cls, low: int | None, info: ValidationInfo) -> int | None:
        high = info.data.get("max_speakers")
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_speakers ({low}) must not exceed max_speakers ({high})")
        return low

    @field_validator("num_speakers")
    @classmethod
    def _within_bounds(cls, exact: int | None, info: ValidationInfo) -> int | None:
        low, high = info.data.get("min_speakers"), info.data.get("max_speakers")
        if exact is not None and not (low or 1) <= exact <= (high or exact):
            raise ValueError(
                f"num_speakers ({exact}) must lie within min_speakers..max_speakers ({low}..{high})"
            )
        return exact


class TaskParams(BaseModel):
    """The options of one task, stored as `task_params` (only the families its type uses)."""

    model: ModelOptions | None = None
    asr: AsrOptions | None = None
    vad: VadOptions | None = None
    alignment: AlignmentOptions | None = None
    diarization: DiarizationOptions | None = None

    def stored(self) -> dict[str, Any]:
        return {name: getattr(self, name).model_dump() for name in type(self).model_fields
                if getattr(self, name) is not None}  # fmt: skip
