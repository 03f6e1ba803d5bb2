"""The worker processes `make run` (or uvicorn, or gunicorn) runs beside the API on one host:
WORKERS of them, each restarted when it dies and each dying with the API."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from app.settings import Settings

log = logging.getLogger("app")


def supervise(count: int, stopping: threading.Event) -> None:
    """Keep `count` worker processes running; each dies with this process."""
    env = os.environ | {"WHISPERX_SUPERVISOR": str(os.getpid())}
    command = [sys.executable, "-m", "app.worker"]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers = [subprocess.Popen(command, env=env) for _ in range(count)]
        while not stopping.wait(1):
            for n, worker in enumerate(workers):
                if worker.poll() is not None:
                    log.warning(
                        "worker process %d exited (%s); starting another",
                        worker.pid,
                        worker.returncode,
                    )
                    time.sleep(1)  # a worker that dies at once must not spin
                    workers[n] = subprocess.Popen(command, env=env)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()


class Supervisor:
    """The worker processes of this host, started by the first API process that takes the host's
    lock (gunicorn's other processes, sharing the database, find it taken) and stopped with it."""

    def __init__(self, settings: Settings) -> None:
        self.count, self.stopping = settings.workers, threading.Event()
        digest = hashlib.sha256(f"{settings.db_url}|{settings.media_dir.resolve()}".encode())
        self.lock_path = Path(tempfile.gettempdir()) / f"whisperx-{digest.hexdigest()[:16]}.lock"
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.count:
            return
        self._lock = open(self.lock_path, "w")  # noqa: SIM115 (held for the process's life)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another API process on this host runs the workers")
            self._lock.close()
            return
        self.thread = threading.Thread(
            target=supervise, args=(self.count, self.stopping), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(30)
            self._lock.close()  # releases the host's lock
