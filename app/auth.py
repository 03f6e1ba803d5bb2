"""API keys and rate limits, checked before a request body is read.

With `API_KEYS` set, every request but /health, the docs and the web page needs
`Authorization: Bearer <key>`, or is a signed audio link. A task belongs to the key that
submitted it, recorded as the key's fingerprint (never the key).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import threading
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import ServiceError, envelope
from app.settings import Settings
from app.store.models import Task

PUBLIC = ("/health", "/docs", "/redoc", "/openapi.json", "/ui")
AUDIO_LINK_SECONDS = 600
"""How long a signed audio link (GET /task/{identifier}/audio-link) stays valid."""
_AUDIO_PATH = re.compile(r"/task/([^/]+)/audio")


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _link_key(settings: Settings) -> bytes:
    """The HMAC key of audio links, derived from API_KEYS: every API process agrees on it, and
    changing the keys revokes the links."""
    keys = sorted(k.strip() for k in (settings.api_keys or "").split(",") if k.strip())
    return hashlib.sha256("\0".join(["whisperx audio link", *keys]).encode()).digest()


def _signature(key: bytes, identifier: str, expires: int) -> str:
    return hmac.new(key, f"{identifier}:{expires}".encode(), "sha256").hexdigest()


def audio_link(settings: Settings, identifier: str) -> str:
    """A URL of the task's audio that works without the API key until it expires (an `<audio>`
    element cannot send a header)."""
    expires = int(time.time()) + AUDIO_LINK_SECONDS
    signature = _signature(_link_key(settings), identifier, expires)
    return f"/task/{identifier}/audio?expires={expires}&signature={signature}"


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

    def __init__(self, app: Any, settings: Settings, refused: Any = None) -> None:
        self.app, self.refused = app, refused  # refused: a prometheus Counter by reason
        keys = [k.strip() for k in (settings.api_keys or "").split(",") if k.strip()]
        self.owners = {fingerprint(k) for k in keys}
        limit = settings.rate_limit_per_minute
        self.limiter = RateLimiter(limit) if limit else None
        self.link_key = _link_key(settings)

    def _signed_audio(self, scope: Any) -> bool:
        """A GET of /task/{identifier}/audio with a valid, unexpired signature."""
        match = _AUDIO_PATH.fullmatch(scope["path"])
        if match is None or scope["method"] not in ("GET", "HEAD"):
            return False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        expires, signature = query.get("expires", [""])[0], query.get("signature", [""])[0]
        if not (expires.isdigit() and len(expires) < 12 and int(expires) >= time.time()):
            return False
        expected = _signature(self.link_key, match[1], int(expires))
        return hmac.compare_digest(signature.encode(), expected.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC):
            await self.app(scope, receive, send)
            return
        owner = None
        if self.owners and not self._signed_audio(scope):
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
                if self.refused is not None:
                    self.refused.labels("unauthorized").inc()
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
                if self.refused is not None:
                    self.refused.labels("rate_limited").inc()
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
