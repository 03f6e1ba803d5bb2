"""A server killed (SIGKILL) mid-task loses nothing: after a restart every task completes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import MODEL_DIR, REPO


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:  # the child keeps its own copy of the handle
        server = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{env['PORT']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError(f"server did not start: {log.read_text()[-2000:]}")


def test_tasks_survive_a_sigkill_mid_task(tmp_path, sample_wav, db_url, local_server):
    """Killed while one task transcribes and two wait: after the restart the two with their
    input complete, the one whose input vanished fails as `interrupted`, and every one's
    webhook fires."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {
        "DB_URL": db_url,
        "ALLOW_PRIVATE_URLS": "true",
        "WEBHOOK_BACKOFF_SECONDS": "0.2",
        "MEDIA_DIR": str(tmp_path / "media"),
        "MODEL_DIR": str(MODEL_DIR),
        "HUB_ALLOWED": "false",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    long_wav = tmp_path / "long.wav"
    subprocess.run(["sox", *[str(sample_wav)] * 4, str(long_wav)], check=True)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"

    server = _start(env, log)
    try:
        ids = []
        for path in (long_wav, sample_wav, sample_wav):
            with open(path, "rb") as f:
                response = httpx.post(
                    f"{base}/speech-to-text?diarize=false&language=en"
                    f"&callback_url={local_server.url}/hook",
                    files={"file": (path.name, f)},
                    timeout=60,
                )
            ids.append(response.json()["identifier"])
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/task/{ids[0]}").json()["metadata"]["stage"] not in (
            "transcribing",
            "aligning",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(f"{base}/task/{ids[1]}").json()["status"] == "queued"
        lost = httpx.get(f"{base}/task/{ids[2]}").json()
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    assert lost["status"] == "queued"
    media = sorted((tmp_path / "media").iterdir(), key=lambda f: f.stat().st_mtime)
    media[-1].unlink()  # the last upload's file is lost while the service is down

    server = _start(env, log)
    try:
        for identifier in ids[:2]:
            task = httpx.get(f"{base}/task/{identifier}?wait=240", timeout=250).json()
            assert task["status"] == "completed", task["error"]
            assert "chicago" in " ".join(s["text"] for s in task["result"]["segments"]).lower()
        task = httpx.get(f"{base}/task/{ids[2]}").json()
        assert task["status"] == "failed" and task["error"].startswith("interrupted")
        deadline = time.monotonic() + 30
        while len(local_server.posts) < 3:
            assert time.monotonic() < deadline, local_server.posts
            time.sleep(0.1)
        hooks = {h["x-webhook-id"]: json.loads(body)["status"] for h, body in local_server.posts}
        assert hooks == {
            ids[0]: "completed",
            ids[1]: "completed",
            ids[2]: "failed",
        }
        assert not any((tmp_path / "media").iterdir())  # inputs deleted once done
    finally:
        server.terminate()
        server.wait(30)
