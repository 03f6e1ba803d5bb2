"""`python -m app` (`make run`): the API on HOST:PORT plus WORKERS local worker processes, each
restarted when it dies; WORKERS=0 serves the API alone."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import uvicorn

from app.settings import Settings

log = logging.getLogger("app")


def supervise(count: int, stopping: threading.Event) -> None:
    """Keep `count` worker processes running; each dies with this process."""
    env = os.environ | {"WHISPERX_SUPERVISOR": str(os.getpid())}
    command = [sys.executable, "-m", "app.worker"]
    workers: list[subprocess.Popen] = []
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


if __name__ == "__main__":
    settings = Settings()
    stopping = threading.Event()
    supervisor = threading.Thread(target=supervise, args=(settings.workers, stopping), daemon=True)
    if settings.workers:
        supervisor.start()
    try:
        uvicorn.run(
            "app.main:app",
            host=settings.host,
            port=settings.port,
            reload=settings.dev,
            log_config="uvicorn_log_conf.yaml",
            timeout_graceful_shutdown=10,
        )
    finally:
        stopping.set()
        if settings.workers:
            supervisor.join(30)
