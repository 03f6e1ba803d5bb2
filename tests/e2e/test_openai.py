"""The OpenAI-compatible endpoints through the official `openai` client, on the real pipeline."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import srt
import uvicorn
import webvtt
from openai import OpenAI
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent

from app.main import create_app
from app.pipeline.formats import MAX_LINE
from tests.e2e.conftest import worker_thread
from tests.speech import normalise, say


class Server:
    """The app served by uvicorn on a free loopback port, in a thread (the OpenAI client brings
    its own HTTP stack, so it needs a real server)."""

    def __init__(self, app) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(
            app, loop="asyncio", http="h11", ws="none", lifespan="on", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.socket])), daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            self.thread.join(0.05)
        raise RuntimeError("the test server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


@pytest.fixture
def serve(settings, model_cache) -> Iterator[Callable[..., OpenAI]]:
    """Start the app (settings may be overridden) and give an OpenAI client pointed at it."""
    servers: list[Server] = []
    workers: list = []
    clients: list[OpenAI] = []

    def start(**overrides) -> OpenAI:
        changed = settings.model_copy(update=overrides)
        worker = worker_thread(changed, model_cache)
        worker.__enter__()
        server = Server(create_app(changed)).__enter__()
        servers.append(server)
        workers.append(worker)
        client = OpenAI(api_key="unused", base_url=f"{server.url}/v1", max_retries=0, timeout=300)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.__exit__()
    for worker in workers:
        worker.__exit__(None, None, None)


@pytest.fixture
def client(serve) -> OpenAI:
    return serve()


def test_verbose_json_gives_text_segments_and_word_times(client, sample_wav):
    with open(sample_wav, "rb") as f:
        verbose = client.audio.transcriptions.create(
            file=f,
            model="tiny.en",
            language="en",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert "chicago" in verbose.text.lower()
    assert verbose.language == "english" and verbose.duration == 30.0
    assert verbose.usage is not None and verbose.usage.seconds == 30

    segments = verbose.segments
    assert segments and [s.id for s in segments] == list(range(len(segments)))
    assert " ".join(s.text for s in segments) == verbose.text
    for s in segments:
        assert 0 <= s.start <= s.end <= 30.1
        assert s.tokens == [] and s.avg_logprob < 0 and s.compression_ratio > 0
        assert s.temperature == 0.0 and 0 <= s.no_speech_prob < 0.6  # speech, searched
    assert any(s.no_speech_prob > 0 for s in segments)  # Whisper's figure, not a constant
    assert [s.start for s in segments] == sorted(s.start for s in segments)

    words = verbose.words
    assert words and normalise(" ".join(w.word for w in words)) == normalise(verbose.text)
    assert all(0 <= w.start <= w.end <= 30.1 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    hello = next(w for w in words if w.word.lower().startswith("hello"))
    assert 6.0 < hello.start < 7.5  # the reference has the first "hello" at 6.73 s


@pytest.fixture(scope="module")
def chicago_clip(sample_wav, tmp_path_factory) -> Path:
    """14.3-21.6 s of the sample: two sentences that both mention Chicago."""
    clip = tmp_path_factory.mktemp("clip") / "chicago.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(sample_wav),
            "-ss",
            "14.3",
            "-to",
            "21.6",
            str(clip),
        ],
        check=True,
    )
    return clip


def test_json_text_srt_and_vtt_of_one_recording(client, chicago_clip):
    answers = {}
    for fmt in ("json", "text", "srt", "vtt"):
        with open(chicago_clip, "rb") as f:
            raw = client.audio.transcriptions.with_raw_response.create(
                file=f, model="tiny.en", response_format=fmt
            )
        answers[fmt], identifier = raw.parse(), raw.headers["x-task-identifier"]
    text = answers["json"].text
    assert normalise(text).count("chicago") == 2
    assert answers["text"] == text + "\n"

    cues = list(srt.parse(answers["srt"]))
    assert cues and normalise(" ".join(c.content for c in cues)) == normalise(text)
    assert all(len(line) <= MAX_LINE for c in cues for line in c.content.splitlines())
    starts = [c.start for c in cues]
    assert starts == sorted(starts) and all(c.start < c.end for c in cues)

    # the same cues, with WebVTT's dot before the milliseconds
    captions = list(webvtt.from_string(answers["vtt"]))
    assert [c.text for c in captions] == [c.content for c in cues]
    assert [(c.start, c.end) for c in captions] == [
        (_vtt_time(c.start), _vtt_time(c.end)) for c in cues
    ]

    # each answer was an ordinary task of the service, without alignment or diarization
    service = str(client.base_url).removesuffix("/v1/")
    task = httpx.get(f"{service}/task/{identifier}").json()
    assert task["status"] == "completed" and task["metadata"]["task_type"] == "full_process"
    params = task["metadata"]["task_params"]
    assert params["model"]["model"] == "tiny.en"
    assert params["alignment"]["align"] is False and params["diarization"]["diarize"] is False
    # OpenAI's temperature 0 raises the temperature on a segment that fails, as Whisper does
    assert params["asr"]["temperatures"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_models_are_listed_as_openai_lists_them(serve):
    client = serve(whisper_model="tiny.en")
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "whisper-1" and "gpt-4o-transcribe" in ids
    assert "tiny.en" in ids and "base" in ids  # bundled here
    assert "large-v3" not in ids  # no hub, no folder: not available
    assert client.models.retrieve("tiny.en").object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("large-v3")
    assert "GET /v1/models lists" in caught.value.body["message"]


def test_stream_sends_openai_events_with_comments_until_the_text_is_ready(serve, chicago_clip):
    client = serve(whisper_model="tiny.en")
    service = str(client.base_url).removesuffix("/v1/")
    with open(chicago_clip, "rb") as f:
        form = {"model": "gpt-4o-transcribe", "stream": "true", "keywords[]": ["Chicago", "Texas"]}
        with httpx.stream(
            "POST", f"{service}/v1/audio/transcriptions", data=form, files={"file": f}, timeout=300
        ) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in answer.iter_lines() if line]
            identifier = answer.headers["x-task-identifier"]
    # a comment (stage and progress) while the task runs, then the events, which parse as the
    # client's own types
    assert lines[0].startswith(": ") and lines[0].endswith("%")
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data:")]
    deltas, done = events[:-1], TranscriptionTextDoneEvent(**events[-1])
    assert deltas and all(TranscriptionTextDeltaEvent(**e).delta for e in deltas)
    assert "".join(e["delta"] for e in deltas) == done.text
    assert normalise(done.text).count("chicago") == 2

    # OpenAI's model names are the service's WHISPER_MODEL; `keywords` are Whisper's hotwords
    params = httpx.get(f"{service}/task/{identifier}").json()["metadata"]["task_params"]
    assert params["model"]["model"] == "tiny.en"
    assert params["asr"]["hotwords"] == "Chicago, Texas"

    with open(chicago_clip, "rb") as f, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            file=f, model="gpt-transcribe", stream=True, response_format="srt"
        )
    assert "use response_format json, text or diarized_json" in caught.value.body["message"]


def test_a_stream_sends_the_text_as_it_is_transcribed(serve, long_wav):
    # a window a batch: the text grows window by window; the first piece comes while the task
    # runs, so that it is cancelled then and the stream ends with the client's error
    client = serve(whisper_model="tiny.en", batch_size=1)
    service = str(client.base_url).removesuffix("/v1/")
    with (
        open(long_wav, "rb") as f,
        client.audio.transcriptions.create(file=f, model="whisper-1", stream=True) as stream,
    ):
        first = next(iter(stream))
        identifier = stream.response.headers["x-task-identifier"]
        assert httpx.post(f"{service}/task/{identifier}/cancel").status_code == 200
        with pytest.raises(openai.APIError) as caught:
            list(stream)
    assert first.type == "transcript.text.delta" and "hello" in first.delta.lower()
    assert "cancelled" in caught.value.message.lower()
    task = httpx.get(f"{service}/task/{identifier}").json()
    assert task["metadata"]["stage"] == "cancelled" and task["metadata"]["partial_text"] is None


def test_a_diarized_stream_gives_each_segment_with_its_speaker(serve, sample_wav):
    client = serve(whisper_model="tiny.en")
    with open(sample_wav, "rb") as f:
        stream = client.audio.transcriptions.create(
            file=f,
            model="gpt-4o-transcribe-diarize",
            response_format="diarized_json",
            stream=True,
            extra_body={"min_speakers": "2", "max_speakers": "2"},
        )
        events = list(stream)
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done"
    assert types[:-1] == ["transcript.text.delta", "transcript.text.segment"] * (len(types) // 2)
    deltas, segments = events[:-1:2], events[1:-1:2]
    assert [d.segment_id for d in deltas] == [s.id for s in segments]
    assert {s.speaker for s in segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert "".join(d.delta for d in deltas) == events[-1].text


def _clip(source: Path, start: float, end: float, out: Path, *encoding: str) -> Path:
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(source), "-ss", str(start), "-to", str(end)]  # fmt: skip
    subprocess.run([*command, *encoding, str(out)], check=True)
    return out


def test_known_speakers_are_named_from_their_references(serve, sample_wav, sample_turns, tmp_path):
    client = serve(whisper_model="tiny.en")
    people = {"Sheila": ("speaker90", 10.6, 14.45), "Diane": ("speaker91", 21.8, 27.8)}
    # stretches where only that person speaks (sample.rttm); Diane's as a browser records
    # (48 kHz stereo float: a 3 MB data URL)
    browser = ("-ar", "48000", "-ac", "2", "-c:a", "pcm_f32le")
    references = [
        "data:audio/wav;base64,"
        + base64.b64encode(
            _clip(sample_wav, start, end, tmp_path / f"{name}.wav", *(browser if name == "Diane" else ())).read_bytes()
        ).decode()
        for name, (_, start, end) in people.items()
    ]  # fmt: skip
    assert len(references[1]) > 3_000_000
    with open(sample_wav, "rb") as f:
        result = client.audio.transcriptions.create(
            file=f,
            model="gpt-4o-transcribe-diarize",
            response_format="diarized_json",
            known_speaker_names=list(people),
            known_speaker_references=references,
        )
    assert {s.speaker for s in result.segments} == set(people)
    # by time, the names agree with who the annotation has speaking (measured 87 %: the rest is
    # sentences that run across a change of speaker, and the diarizer's turn edges)
    agree = total = 0.0
    for s in result.segments:
        for start, end, who in sample_turns:
            overlap = max(0.0, min(s.end, end) - max(s.start, start))
            total += overlap
            agree += overlap * (people[s.speaker][0] == who)
    assert agree / total >= 0.75, [(s.start, s.end, s.speaker) for s in result.segments]

    short = _clip(sample_wav, 10.6, 11.4, tmp_path / "short.wav")
    cases = [
        (["Sheila", "Diane"], references[:1], "2 known_speaker_names[] and 1"),
        (["Sheila"], ["https://example.com/sheila.wav"], "must be a base64 data URL"),
        (["Sheila"], ["data:audio/wav;base64," + base64.b64encode(short.read_bytes()).decode()],
         "known_speaker_references[0] (Sheila): "),
        (["Sheila"], ["data:audio/wav;base64," + "A" * 9_000_000], "other than `file` is over 8 MB"),
    ]  # fmt: skip
    for names, urls, message in cases:
        with open(sample_wav, "rb") as f, pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(
                file=f, model="gpt-4o-transcribe-diarize", known_speaker_names=names,
                known_speaker_references=urls,
            )  # fmt: skip
        assert message in caught.value.body["message"], caught.value.body


def _vtt_time(value) -> str:
    return srt.timedelta_to_srt_timestamp(value).replace(",", ".")


def test_diarize_labels_speakers_in_subtitles(client, sample_wav):
    with open(sample_wav, "rb") as f:
        body = client.audio.transcriptions.create(
            file=f,
            model="whisper-1",
            response_format="srt",
            extra_body={"diarize": "true", "min_speakers": "2", "max_speakers": "2"},
        )
    cues = list(srt.parse(body))
    labels = {c.content.split("]", 1)[0] + "]" for c in cues}
    assert labels == {"[SPEAKER_00]", "[SPEAKER_01]"}
    assert all(len(line) <= MAX_LINE for c in cues for line in c.content.splitlines())
    assert "chicago" in body.lower()


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the client's translations
def test_translation_of_german_speech_is_english(client, tmp_path):
    german = say(
        "Guten Morgen. Heute ist das Wetter sehr schön. Wir gehen mit dem Hund in den Park.",
        tmp_path / "german.wav",
        voice="de",
        speed=140,
    )
    with open(german, "rb") as f:
        verbose = client.audio.translations.create(
            file=f, model="whisper-1", response_format="verbose_json"
        )
    words = set(normalise(verbose.text).split())
    assert words & {"morning", "weather", "today", "park", "dog"}, verbose.text
    assert not words & {"heute", "wetter", "hund", "gehen"}, verbose.text
    assert verbose.language == "english" and verbose.segments


def test_invalid_requests_are_400_with_a_message(client, sample_wav):
    cases = [
        ({"model": "no-such-model"}, "unknown model"),
        ({"model": "tiny.en", "language": "de"}, "English-only"),
        ({"model": "tiny.en", "response_format": "docx"}, "response_format"),
        ({"model": "tiny.en", "temperature": 3}, "temperature"),
        (
            {"model": "base", "languages": ["de", "xx"]},
            "languages: Value error, 'xx' is not",
        ),
        (
            {"model": "tiny.en", "extra_body": {"min_speakers": 3, "max_speakers": 2}},
            "min_speakers",
        ),
    ]
    for kwargs, message in cases:
        with open(sample_wav, "rb") as f, pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(file=f, **kwargs)
        assert message in caught.value.body["message"], caught.value.body

    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(file=("notes.txt", b"not audio at all"), model="base")
    assert caught.value.status_code == 415


def test_a_failed_task_answers_with_the_error_envelope(serve, sample_wav):
    client = serve(decode_timeout_seconds=0.001)  # the task fails while decoding
    with open(sample_wav, "rb") as f, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(file=f, model="tiny.en")
    assert caught.value.body["code"] == "TASK_FAILED"
    assert "took longer than" in caught.value.body["message"]
    assert caught.value.response.headers["x-should-retry"] == "false"

    # streamed, the failure is an error event, which the client raises
    with open(sample_wav, "rb") as f, pytest.raises(openai.APIError) as caught:
        list(client.audio.transcriptions.create(file=f, model="tiny.en", stream=True))
    assert "took longer than" in caught.value.message


def test_audio_over_the_length_limit_is_refused_before_queueing(serve, sample_wav):
    client = serve(max_audio_seconds=5)
    with open(sample_wav, "rb") as f, pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(file=f, model="tiny.en")
    assert caught.value.status_code == 413
    assert "limit is 5 s" in str(caught.value.body)
