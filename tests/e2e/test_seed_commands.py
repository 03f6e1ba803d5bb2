"""The seed's start commands serve the whole service: `uvicorn app.main:app` and gunicorn with
the uvicorn worker build the app from the environment and run WORKERS worker processes beside
it, once per host however many API processes gunicorn forks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import MODEL_DIR, REPO

ALIGNED = {"segments": [{"start": 0.0, "end": 1.0, "text": "hello there",
                         "words": [{"word": "hello", "start": 0.0, "end": 0.4}]}], "language": "en"}  # fmt: skip
TURNS = [{"label": "A", "speaker": "SPEAKER_00", "start": 0.0, "end": 1.0}]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["uvicorn", "gunicorn"])
def test_the_seed_commands_start_the_api_and_its_workers(tmp_path, command):
    port = _port()
    env = os.environ | {
        "DB_URL": f"sqlite:///{tmp_path / 'seed.db'}", "MEDIA_DIR": str(tmp_path / "media"),
        "MODEL_DIR": str(MODEL_DIR), "HUB_ALLOWED": "false", "WORKERS": "1",
    }  # fmt: skip
    bin_dir = os.path.dirname(sys.executable)
    argv = {
        "uvicorn": [f"{bin_dir}/uvicorn", "app.main:app", "--log-config", "uvicorn_log_conf.yaml",
                    "--port", str(port)],
        "gunicorn": [f"{bin_dir}/gunicorn", "app.main:app", "-k", "uvicorn_worker.UvicornWorker",
                     "--workers", "2", "--bind", f"127.0.0.1:{port}"],
    }[command]  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-3000:]
            try:
                if len(httpx.get(f"{base}/workers", timeout=2).json()["workers"]) >= 1:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        files = {"aligned_transcript": ("a.json", json.dumps(ALIGNED)),
                 "diarization_result": ("d.json", json.dumps(TURNS))}  # fmt: skip
        identifier = httpx.post(f"{base}/service/combine", files=files).json()["identifier"]
        task = httpx.get(f"{base}/task/{identifier}?wait=60", timeout=70).json()
        assert task["status"] == "completed", task["error"]
        assert task["result"]["segments"][0]["speaker"] == "SPEAKER_00"
        time.sleep(6)  # a second supervisor's worker would have reported by now
        assert len(httpx.get(f"{base}/workers").json()["workers"]) == 1, log.read_text()[-3000:]
    finally:
        server.terminate()
        server.wait(30)
