"""The events of a streamed OpenAI transcription, from the task as a worker updates it."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from app.api.openai import _events
from app.store.models import TaskStatus

SEGMENTS = [{"text": " Hello.", "start": 0.0, "end": 1.0, "speaker": "SPEAKER_00"},
            {"text": " Oh, hi.", "start": 1.0, "end": 2.0, "speaker": "SPEAKER_01"},
            {"text": " Bye.", "start": 2.0, "end": 3.0, "speaker": "SPEAKER_00"}]  # fmt: skip


def _task(status: TaskStatus, partial: str | None = None, result: dict | None = None):
    return SimpleNamespace(
        status=status, stage="transcribing", progress=40.0, partial_text=partial, result=result,
        error=None, identifier="t1",
    )  # fmt: skip


def _stream(tasks: list, response_format: str = "json") -> list:
    async def updates():
        for task in tasks[1:]:
            yield task

    async def collect() -> list:
        job = SimpleNamespace(response_format=response_format)
        return [e async for e in _events(tasks[0], updates(), job)]  # type: ignore[arg-type]

    lines = asyncio.run(collect())
    return [json.loads(e[6:]) if e.startswith("data: ") else e for e in lines]


def test_text_is_sent_as_it_grows_and_the_rest_when_the_task_ends():
    events = _stream([
        _task(TaskStatus.processing),
        _task(TaskStatus.processing, "Hello."),
        _task(TaskStatus.processing, "Hello."),  # nothing new: nothing sent
        _task(TaskStatus.processing, "Hello. Oh, hi."),
        _task(TaskStatus.completed, result={"segments": SEGMENTS}),
    ])  # fmt: skip
    assert events[0] == ": transcribing 40%\n\n"  # at once, then after 10 s of nothing sent
    assert [e["delta"] for e in events[1:-1]] == ["Hello.", " Oh, hi.", " Bye."]
    assert events[-1] == {"type": "transcript.text.done", "text": "Hello. Oh, hi. Bye."}


def test_a_retry_that_starts_again_sends_only_text_beyond_what_was_sent():
    events = _stream([
        _task(TaskStatus.processing, "Hello. Oh, hi."),
        _task(TaskStatus.processing, "Hello."),  # the task's new attempt, from the start
        _task(TaskStatus.processing, "Hello. Oh, hi. Bye."),
        _task(TaskStatus.completed, result={"segments": SEGMENTS}),
    ])  # fmt: skip
    assert [e["delta"] for e in events[:-1]] == ["Hello. Oh, hi.", " Bye."]


def test_diarized_segments_wait_for_their_speakers_and_a_failure_is_an_error_event():
    events = _stream([
        _task(TaskStatus.processing, "Hello."),
        _task(TaskStatus.completed, result={"segments": SEGMENTS}),
    ], "diarized_json")  # fmt: skip
    assert [e["type"] for e in events[1:]] == ["transcript.text.delta", "transcript.text.segment"] * 3 + ["transcript.text.done"]  # fmt: skip
    assert [e["speaker"] for e in events[2::2][:3]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]

    failed = _task(TaskStatus.failed, "Hello.")
    failed.stage, failed.error = "failed", "The audio could not be decoded."
    events = _stream([_task(TaskStatus.processing, "Hello."), failed])
    assert events[0]["delta"] == "Hello."
    assert events[-1]["error"] == {
        "code": "TASK_FAILED",
        "message": "The audio could not be decoded.",
    }


def test_a_comment_with_the_stage_comes_whenever_nothing_was_sent_for_a_while(monkeypatch):
    tasks = [_task(TaskStatus.queued), *[_task(TaskStatus.processing)] * 3,
             _task(TaskStatus.completed, result={"segments": SEGMENTS})]  # fmt: skip
    tasks[0].stage = None
    assert [e for e in _stream(tasks) if isinstance(e, str)] == [": queued 40%\n\n"]
    monkeypatch.setattr("app.api.openai.KEEPALIVE_SECONDS", 0)  # each update is "a while"
    comments = [e for e in _stream(tasks) if isinstance(e, str)]
    assert comments == [": queued 40%\n\n"] + [": transcribing 40%\n\n"] * 3
