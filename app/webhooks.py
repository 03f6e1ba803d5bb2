"""Durable webhook deliveries: each ended task with a `callback_url` has a delivery row (made in
the transaction that ended it); every worker's sender claims due rows and POSTs the task, signed
when WEBHOOK_SECRET is set, retrying with exponential backoff. A restart loses no retry."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx

from app.net import BlockedURL, pinned_request
from app.settings import Settings
from app.store.models import Delivery
from app.store.tasks import TaskStore, now
from app.store.views import task_result

log = logging.getLogger("app.tasks")

POLL_SECONDS = 0.5


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC of `<timestamp>.<body>`: receivers recompute it with the shared
    secret and reject stale timestamps, so a captured delivery cannot be replayed later."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def deliver(delivery: Delivery, store: TaskStore, settings: Settings) -> None:
    """One attempt: POST the ended task (the body of GET /task/{identifier}) and record the
    outcome; a failed attempt is due again after WEBHOOK_BACKOFF_SECONDS × 2^(attempt-1). The
    receiver's answer body is never read: it cannot stream us gigabytes."""
    task = store.get(delivery.task)
    if task is None or not task.callback_url:
        return
    attempt = delivery.attempts + 1
    body = json.dumps(task_result(task).model_dump(mode="json")).encode()
    timestamp = str(int(time.time()))
    headers = {"content-type": "application/json", "x-webhook-id": task.identifier,
               "x-webhook-timestamp": timestamp}  # fmt: skip
    if settings.webhook_secret:
        headers["x-webhook-signature"] = sign(settings.webhook_secret, timestamp, body)
    outcome: dict[str, Any] = {"status": "failed", "attempts": attempt, "error": None}
    with httpx.Client(timeout=settings.callback_timeout_seconds) as client:
        try:
            # checked (and pinned) on every attempt: the name may resolve elsewhere now
            request = pinned_request(client, "POST", task.callback_url,
                                     settings.allow_private_urls, content=body, headers=headers)  # fmt: skip
        except BlockedURL as exc:  # parse_url refuses malformed URLs the same way
            store.delivery_attempted(delivery, "refused", outcome | {"status": "refused", "error": str(exc)})  # fmt: skip
            log.warning("task %s webhook refused: %s", task.identifier, exc)
            return
        try:
            response = client.send(request, stream=True)
            response.close()
            outcome["status_code"] = response.status_code
            if response.is_success:
                store.delivery_attempted(delivery, "delivered", outcome | {"status": "delivered"})
                log.info("task %s webhook delivered (attempt %d)", task.identifier, attempt)
                return
            outcome["error"] = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            outcome["error"] = type(exc).__name__
    if attempt >= settings.webhook_attempts:
        store.delivery_attempted(delivery, "failed", outcome)
        log.warning("task %s webhook failed after %d attempts: %s", task.identifier, attempt, outcome["error"])  # fmt: skip
        return
    delay = settings.webhook_backoff_seconds * 2 ** (attempt - 1)
    store.delivery_attempted(delivery, "pending", outcome, now() + timedelta(seconds=delay))


class WebhookSender(threading.Thread):
    """Claims due deliveries and sends each from a small pool, one attempt per job: a dead
    receiver holds a sender thread for one CALLBACK_TIMEOUT_SECONDS, never the others."""

    def __init__(self, store: TaskStore, settings: Settings, name: str, stopping: threading.Event) -> None:  # fmt: skip
        super().__init__(name="webhooks", daemon=True)
        self.store, self.settings, self.holder, self.stopping = store, settings, name, stopping
        self.pool = ThreadPoolExecutor(4, thread_name_prefix="webhook")
        self._busy = threading.Semaphore(4)

    def run(self) -> None:
        lease = self.settings.callback_timeout_seconds + 30
        while not self.stopping.wait(POLL_SECONDS):
            try:
                for delivery in self.store.due_deliveries(self.holder, lease):
                    self._busy.acquire()
                    self.pool.submit(self._send, delivery)
            except Exception:  # a database hiccup must not end the sender
                log.exception("webhook sender failed")
        self.pool.shutdown(cancel_futures=True)  # a delivery under way ends first

    def _send(self, delivery: Delivery) -> None:
        try:
            deliver(delivery, self.store, self.settings)
        except Exception:
            log.exception("webhook delivery of task %s failed", delivery.task)
        finally:
            self._busy.release()
