"""An app per test (own SQLite file and media folder) sharing the session's loaded models."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.main import create_app
from app.worker.__main__ import start_runtime, work
from app.worker.job import Runtime


@contextmanager
def worker_thread(settings, cache) -> Iterator[Runtime]:
    """A real worker (claims from the database, janitor, webhook sender) in a thread of the
    test process, so the session's loaded models are reused. It shares `settings` with the
    test's app (resolved for the CPU in place), so a test may change a setting for both."""
    for name, value in settings.for_worker():
        if name in ("device", "compute_type"):
            setattr(settings, name, value)
    runtime = start_runtime(settings, cache=cache)
    thread = threading.Thread(target=work, args=(runtime,), daemon=True)
    thread.start()
    try:
        yield runtime
    finally:
        runtime.stopping.set()
        thread.join(60)
        runtime.close()  # after the last task: its webhook may be under way


@contextmanager
def service(settings, cache) -> Iterator[TestClient]:
    """The API (TestClient) with one worker beside it."""
    with TestClient(create_app(settings)) as client, worker_thread(settings, cache) as worker:
        client.worker = worker  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def client(settings, model_cache) -> Iterator[TestClient]:
    with service(settings, model_cache) as c:
        yield c


def wait(client: TestClient, identifier: str, timeout: float = 300) -> dict:
    """Poll a task until it is completed or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/task/{identifier}").json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {identifier} still {body['status']} after {timeout} s")


class LocalServer:
    """A loopback HTTP server that serves files from a folder and records POSTs."""

    def __init__(self, folder: Path) -> None:
        self.posts: list[tuple[dict, bytes]] = []
        self.fail_first = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                server.posts.append((dict(self.headers), body))
                status = 500 if len(server.posts) <= server.fail_first else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local_server(tmp_path) -> Iterator[LocalServer]:
    folder = tmp_path / "served"
    folder.mkdir()
    server = LocalServer(folder)
    server.folder = folder
    yield server
    server.close()


@contextmanager
def serve(app) -> Iterator[str]:
    """Run `app` on a real uvicorn server (loopback, free port) in a thread; yields its URL."""
    # Keep-alive longer than any pause of a loaded 2-core run: uvicorn's 5 s default closes idle
    # connections that a client may be reusing at that very moment (a ReadError, not our bug).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_keep_alive=300
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
