"""The one error envelope every error we raise uses, and the handlers that produce it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: str
    """Stable machine-readable name, e.g. `TASK_NOT_FOUND`, `UNSUPPORTED_MEDIA`."""
    message: str
    """What went wrong and what to do about it."""


class ErrorResponse(BaseModel):
    """Every error the service raises (FastAPI's own 422 list is kept for request validation)."""

    error: ErrorBody
    detail: str
    """The message again, for clients that read FastAPI's usual `detail` string."""


class ServiceError(Exception):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.code, self.message = status_code, code, message


def task_not_found(identifier: str) -> ServiceError:
    return ServiceError(404, "TASK_NOT_FOUND", f"Task {identifier} was not found.")


def envelope(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message), detail=message)
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


HTTP_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA",
    429: "TOO_MANY_REQUESTS", 503: "UNAVAILABLE", 507: "INSUFFICIENT_STORAGE",
}  # fmt: skip

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": name.replace("_", " ").capitalize()}
    for code, name in HTTP_CODES.items()
    if code in (400, 401, 403, 404, 409, 413, 415, 429, 503, 507)
}
"""OpenAPI documentation of the envelope, attached to every router."""


ECHO_CHARS = 200
"""Longest input a 422 repeats back; a longer one is cut (a 50 kB value stays out of the
answer)."""


def shown(value: Any) -> Any:
    """`value` as an error may repeat it: strings past ECHO_CHARS cut, with their length."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]}… ({len(value)} characters)"
    return value


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 list, with long inputs cut."""
        errors = [{**e, "input": shown(e["input"])} if "input" in e else e for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return envelope(exc.status_code, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        code = HTTP_CODES.get(exc.status_code, "ERROR")
        return envelope(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope(500, "INTERNAL_ERROR", "Internal server error; the log has the details.")


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in, once it passes the limit (also for chunked bodies
    that declare no length); FastAPI passes HTTP exceptions from body parsing through."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            f"The request body is larger than the limit of {max_bytes >> 20} MiB (MAX_UPLOAD_MB).",
        )


class BodyLimit:
    """Answer 413 for a body over the upload limit (plus 1 MiB for multipart headers and form
    fields): at once when its declared length says so, else as soon as that many bytes came."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.limit = max_bytes + (1 << 20)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            exc = BodyTooLarge(self.max_bytes)
            await envelope(413, "PAYLOAD_TOO_LARGE", exc.detail)(scope, receive, send)
            return
        received, started = 0, False

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge as exc:  # raised outside FastAPI's handlers (e.g. a plain route)
            if not started:
                await envelope(413, "PAYLOAD_TOO_LARGE", exc.detail)(scope, receive, send)
