"""API keys and rate limits, checked before a request body is read.

With `API_KEYS` set, every request but /health and the docs needs `Authorization: Bearer <key>`.
A task belongs to the key that submitted it, recorded as the key's fingerprint (never the key).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import ServiceError, envelope
from app.settings import Settings
from app.store.models import Task

PUBLIC = ("/health", "/docs", "/redoc", "/openapi.json")


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class RateLimiter:
    """Token bucket per client: `per_minute` requests, refilled evenly over the minute."""

    def __init__(self, per_minute: int) -> None:
        self.rate, self.capacity = per_minute / 60.0, float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget idle clients rather than grow forever
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            return (1 - tokens) / self.rate


class Guard:
    """ASGI middleware: 401 without a valid key, 429 over the rate limit, both in the error
    envelope and before the body is read (an unauthenticated upload is never stored)."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        keys = [k.strip() for k in (settings.api_keys or "").split(",") if k.strip()]
        self.owners = {fingerprint(k) for k in keys}
        limit = settings.rate_limit_per_minute
        self.limiter = RateLimiter(limit) if limit else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC):
            await self.app(scope, receive, send)
            return
        owner = None
        if self.owners:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, token = header.partition(" ")
            given = fingerprint(token.strip())
            owner = given if scheme.lower() == "bearer" and given in self.owners else None
            if owner is None:
                message = (
                    "Invalid API key: check the bearer token."
                    if header
                    else "An API key is required: send `Authorization: Bearer <key>`."
                )
                response = envelope(
                    401, "UNAUTHORIZED", message, {"www-authenticate": 'Bearer realm="whisperx"'}
                )
                await response(scope, receive, send)
                return
        if self.limiter is not None:
            client = owner or (scope.get("client") or ("unknown",))[0]
            wait = self.limiter.take(client)
            if wait:
                retry = max(1, math.ceil(wait))
                response = envelope(
                    429,
                    "TOO_MANY_REQUESTS",
                    f"Rate limit of {self.limiter.capacity:.0f} requests per minute reached "
                    f"(RATE_LIMIT_PER_MINUTE); retry in {retry} s.",
                    {"retry-after": str(retry)},
                )
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)


_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from API_KEYS; needed only when the service sets API_KEYS.",
)


def owner(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str | None:
    return getattr(request.state, "owner", None)


Owner = Annotated[str | None, Depends(owner)]
"""Fingerprint of the caller's API key (None without auth); the bearer scheme is declared for
the OpenAPI docs, the check itself is Guard's."""


def check_owner(task: Task, owner: str | None) -> None:
    if owner is not None and task.owner != owner:
        raise ServiceError(403, "FORBIDDEN", f"Task {task.identifier} belongs to another API key.")
