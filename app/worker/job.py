"""run_task(identifier): the one entry point that turns a queued task into a result."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.net import BlockedURL, pinned_request
from app.pipeline.audio import AudioError, decode_audio
from app.pipeline.models import ModelCache, ModelUnavailable
from app.pipeline.run import Stages, full_process
from app.pipeline.types import SAMPLE_RATE
from app.settings import Settings
from app.store.models import Task, TaskType
from app.store.tasks import TaskStore

log = logging.getLogger(__name__)

NEEDS_AUDIO = {
    TaskType.full_process,
    TaskType.transcription,
    TaskType.transcription_alignment,
    TaskType.diarization,
}


class Finished:
    """Lets requests wait for a task to end instead of polling (`GET /task/{id}?wait=`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def watch(self, identifier: str) -> asyncio.Event:
        """Register before checking the task's status, so an end in between is not missed."""
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(identifier, []).append((asyncio.get_running_loop(), event))
        return event

    def forget(self, identifier: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(identifier, [])
            self._waiters[identifier] = [w for w in waiters if w[1] is not event]
            if not self._waiters[identifier]:
                del self._waiters[identifier]

    def notify(self, identifier: str) -> None:
        with self._lock:
            waiters = self._waiters.pop(identifier, [])
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)


@dataclass
class Runtime:
    """What a worker needs: built once at start-up, shared by every task."""

    settings: Settings
    store: TaskStore
    cache: ModelCache
    finished: Finished = field(default_factory=Finished)
    instance: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    """This process, as recorded on the tasks it claims (host:pid:random)."""
    webhooks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="webhook")
    )

    def task_ended(self, identifier: str) -> None:
        """Wake the requests waiting on the task, delete its input (unless
        MEDIA_RETENTION_SECONDS keeps it for housekeeping) and send its webhook (off this
        thread). Called once wherever a task ends: worker, cancel while queued, recovery."""
        self.finished.notify(identifier)
        task = self.store.get(identifier)
        if task is None:
            return
        if task.input_path and not self.settings.media_retention_seconds:
            Path(task.input_path).unlink(missing_ok=True)
        if task.callback_url:
            self.webhooks.submit(deliver_callback, identifier, self)


class TaskCancelled(Exception):
    """Raised from a progress callback to stop the stages of a cancelled task."""


class _Reporter:
    """Writes progress to the task row, at most twice a second or on a stage change, and stops
    the task (TaskCancelled) when the row says it is no longer processing."""

    def __init__(self, store: TaskStore, identifier: str) -> None:
        self.store, self.identifier = store, identifier
        self._stage, self._last = "", 0.0

    def __call__(self, stage: str, percent: float) -> None:
        now = time.monotonic()
        if stage != self._stage or now - self._last >= 0.5 or percent >= 100:
            self._stage, self._last = stage, now
            if not self.store.progress(self.identifier, stage, percent):
                raise TaskCancelled(self.identifier)


def _run(task: Task, stages: Stages, runtime: Runtime) -> tuple[Any, str | None]:
    """The stages for the task's type; returns (result, language)."""
    params, inputs = task.task_params, task.inputs or {}
    if task.task_type == TaskType.combine:
        combined = stages.combine(inputs["aligned_transcript"], inputs["diarization_result"])
        return combined, combined.get("language")
    stages.report("decoding", 0.0)
    assert task.input_path is not None
    settings = runtime.settings
    audio = decode_audio(
        Path(task.input_path),
        settings.max_audio_seconds,
        settings.decode_timeout_seconds,
        settings.decode_memory_mb,
    )
    runtime.store.progress(
        task.identifier, "decoding", 0.0, audio_duration=round(audio.size / SAMPLE_RATE, 3)
    )
    if task.task_type == TaskType.full_process:
        result = full_process(stages, audio, params)
        return result, result["language"]
    if task.task_type == TaskType.transcription:
        transcript = stages.transcribe(audio, params["model"], params["asr"], params["vad"])
        return transcript, transcript["language"]
    if task.task_type == TaskType.transcription_alignment:
        transcript = inputs["transcript"]
        aligned = stages.align(transcript, audio, params["alignment"], transcript["language"])
        return aligned, transcript["language"]
    return stages.diarize(audio, params["diarization"]), None


def run_task(identifier: str, runtime: Runtime) -> bool:
    """Claim, run and finish (or fail) one task; returns False if it was not claimable."""
    store = runtime.store
    if not store.claim(identifier, runtime.instance):
        return False
    task = store.get(identifier)
    assert task is not None
    stages = Stages(task.task_type, runtime.settings, runtime.cache, _Reporter(store, identifier))
    try:
        result, language = _run(task, stages, runtime)
    except TaskCancelled:
        log.info("task %s cancelled", identifier)
        store.fail_cancelled(identifier, stages.info)
    except (AudioError, ModelUnavailable, ValueError) as exc:
        store.fail(identifier, str(exc), stages.info)
    except Exception as exc:
        log.exception("task %s failed", identifier)
        store.fail(identifier, f"Internal error: {type(exc).__name__}: {exc}", stages.info)
    else:
        store.finish(identifier, result, stages.info, language=language or task.language)
    runtime.task_ended(identifier)
    return True


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC of `<timestamp>.<body>`: receivers recompute it with the shared
    secret and reject stale timestamps, so a captured delivery cannot be replayed later."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def deliver_callback(identifier: str, runtime: Runtime, attempt: int = 1) -> None:
    """POST the ended task (the body of GET /task/{identifier}) to its callback URL, signed
    when WEBHOOK_SECRET is set. One attempt per call: a failed one is tried again later with
    exponential backoff from a timer, so a slow or dead receiver holds a sender thread for one
    CALLBACK_TIMEOUT_SECONDS at a time, never the others' deliveries for its whole backoff.
    The outcome is stored once delivered, refused or out of attempts."""
    from app.api.schemas import task_result

    task = runtime.store.get(identifier)
    if task is None or not task.callback_url:
        return
    settings = runtime.settings
    body = json.dumps(task_result(task).model_dump(mode="json")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "x-webhook-id": identifier,
        "x-webhook-timestamp": timestamp,
    }
    if settings.webhook_secret:
        headers["x-webhook-signature"] = sign(settings.webhook_secret, timestamp, body)
    outcome: dict[str, Any] = {"status": "failed", "attempts": attempt, "error": None}
    with httpx.Client(timeout=settings.callback_timeout_seconds) as client:
        try:
            # checked (and pinned) on every attempt: the name may resolve elsewhere now
            request = pinned_request(
                client,
                "POST",
                task.callback_url,
                settings.allow_private_urls,
                content=body,
                headers=headers,
            )
        except BlockedURL as exc:  # parse_url refuses malformed URLs the same way
            runtime.store.set_webhook(
                identifier, outcome | {"status": "refused", "error": str(exc)}
            )
            return
        try:
            # the answer's body is never read: a receiver cannot stream us gigabytes
            response = client.send(request, stream=True)
            response.close()
            outcome["status_code"] = response.status_code
            if response.is_success:
                runtime.store.set_webhook(identifier, outcome | {"status": "delivered"})
                return
            outcome["error"] = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            outcome["error"] = type(exc).__name__
    if attempt >= settings.webhook_attempts:
        runtime.store.set_webhook(identifier, outcome)
        return
    delay = settings.webhook_backoff_seconds * 2 ** (attempt - 1)
    timer = threading.Timer(delay, _retry, (identifier, runtime, attempt + 1))
    timer.daemon = True
    timer.start()


def _retry(identifier: str, runtime: Runtime, attempt: int) -> None:
    with contextlib.suppress(RuntimeError):  # the service is shutting down
        runtime.webhooks.submit(deliver_callback, identifier, runtime, attempt)
