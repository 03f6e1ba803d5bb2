"""Many processes, as an operator runs them: Redis and PostgreSQL on loopback, the API with
QUEUE=celery and no workers of its own, two `python -m app.worker` processes sharing a media
folder; then the embedded `python -m app` with its worker process killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from tests.conftest import MODEL_DIR, REPO
from tests.postgres import new_database
from tests.redis import redis_server


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Processes started from one environment, their logs kept for failure messages."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.base = f"http://127.0.0.1:{env['PORT']}"
        self.processes: list[subprocess.Popen] = []

    def start(self, module: str, name: str) -> subprocess.Popen:
        with (self.folder / f"{name}.log").open("ab") as out:
            process = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=self.env,
                                       stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text()[-3000:]}" for f in self.folder.glob("*.log")
        )

    def until(self, check, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if value := check():
                    return value
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{what} not within {timeout} s\n{self.logs()}")

    def get(self, path: str, **kwargs) -> dict:
        return httpx.get(f"{self.base}{path}", timeout=kwargs.pop("timeout", 30), **kwargs).json()

    def submit(self, audio: Path, query: str = "") -> str:
        with open(audio, "rb") as f:
            response = httpx.post(f"{self.base}/service/transcribe?language=en{query}",
                                  files={"file": (audio.name, f)}, timeout=60)  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()["identifier"]

    def workers(self) -> list[dict]:
        return self.get("/workers")["workers"]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return os.environ | {
        "MEDIA_DIR": str(tmp_path / "media"), "MODEL_DIR": str(MODEL_DIR), "HUB_ALLOWED": "false",
        "WHISPER_MODEL": "tiny.en", "CPU_THREADS": "1", "PORT": str(_port()),
        "ALLOW_PRIVATE_URLS": "true", "WEBHOOK_BACKOFF_SECONDS": "0.2", "LOG_LEVEL": "INFO",
        **extra,
    }  # fmt: skip


def _ended(cluster: Cluster, identifier: str, timeout: float) -> dict:
    return cluster.until(
        lambda: (t := cluster.get(f"/task/{identifier}"))["status"] in ("completed", "failed") and t,
        timeout, f"task {identifier} ending",
    )  # fmt: skip


def _running(cluster: Cluster, identifier: str) -> dict:
    return cluster.until(
        lambda: (t := cluster.get(f"/task/{identifier}"))["metadata"]["stage"] == "transcribing" and t,
        120, f"task {identifier} transcribing",
    )  # fmt: skip


def test_celery_workers_share_tasks_and_survive_kills_of_workers_redis_and_the_api(
    tmp_path, sample_wav, long_wav, postgres_admin, local_server
):
    with redis_server() as redis:
        env = _environment(tmp_path, QUEUE="celery", BROKER_URL=redis.url, WORKERS="0",
                           DB_URL=new_database(postgres_admin))  # fmt: skip
        cluster = Cluster(env, tmp_path)
        try:
            api = cluster.start("app", "api")
            parents = [cluster.start("app.worker", f"worker{n}") for n in (1, 2)]
            cluster.until(lambda: len(cluster.workers()) == 2, 120, "two workers")
            # ready once both have warmed up (models loaded and run once)
            ready = cluster.until(
                lambda: (r := cluster.get("/health/ready"))["checks"]["workers"] == "ok: 2 alive" and r,
                240, "both workers warm",
            )  # fmt: skip
            assert ready["status"] == "ok" and ready["checks"]["broker"] == "ok"

            # tasks spread over both workers; a long poll answers within a second of the end
            ids = [cluster.submit(sample_wav) for _ in range(2)]
            answer = cluster.get(f"/task/{ids[0]}?wait=120", timeout=130)
            ended_at = datetime.fromisoformat(answer["metadata"]["end_time"]).timestamp()
            assert answer["status"] == "completed" and time.time() - ended_at < 1.0
            tasks = [_ended(cluster, i, 120) for i in ids]
            assert all(t["status"] == "completed" for t in tasks), [t["error"] for t in tasks]
            ran_on = {t["metadata"]["worker"]["name"] for t in tasks}
            names = {w["name"] for w in cluster.workers()}
            assert ran_on == names and len(names) == 2  # both worked, with distinct names
            assert any("chicago" in s["text"].lower() for s in tasks[1]["result"]["segments"])

            # a worker killed mid-task: the other completes it, and its webhook fires once
            hooked = cluster.submit(long_wav, f"&callback_url={local_server.url}/hook")
            running = _running(cluster, hooked)["metadata"]["worker"]
            child = running["pid"]
            assert _nice(child) == min(_nice(0) + 10, 19)  # a Celery child inherits it
            victim = next(p for p in parents if _children(p.pid) and child in _children(p.pid))
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            cluster.until(lambda: not _alive(child), 15, "the killed worker's child exiting")
            done = _ended(cluster, hooked, 240)
            assert done["status"] == "completed", done["error"]
            assert done["metadata"]["worker"]["name"] != running["name"]
            assert time.monotonic() - killed_at < 240
            time.sleep(2)  # a second delivery would come now
            hooks = [json.loads(body) for _, body in local_server.posts]
            assert [h["status"] for h in hooks] == ["completed"], hooks
            assert len(cluster.workers()) == 1

            # a cancel reaches the task on the worker that runs it
            cancelled = cluster.submit(sample_wav)
            _running(cluster, cancelled)
            assert httpx.post(f"{cluster.base}/task/{cancelled}/cancel").status_code == 200
            task = _ended(cluster, cancelled, 30)
            assert task["status"] == "failed" and task["error"].startswith("cancelled")

            # Redis dies (no persistence) while one task runs and one waits in the broker
            running_id, waiting_id = cluster.submit(sample_wav), cluster.submit(sample_wav)
            redis.kill()
            redis.start()
            for identifier in (running_id, waiting_id):
                task = _ended(cluster, identifier, 180)
                assert task["status"] == "completed", task["error"]

            # the API killed and restarted while a worker runs a task
            during = cluster.submit(long_wav)
            _running(cluster, during)
            api.send_signal(signal.SIGKILL)
            api.wait(10)
            cluster.start("app", "api-again")
            task = _ended(cluster, during, 180)
            assert task["status"] == "completed", task["error"]
        finally:
            cluster.stop()


def test_the_embedded_service_restarts_a_killed_worker_and_loses_no_task(tmp_path, long_wav):
    env = _environment(tmp_path, WORKERS="1", DB_URL=f"sqlite:///{tmp_path / 'embedded.db'}")
    cluster = Cluster(env, tmp_path)
    try:
        api = cluster.start("app", "embedded")
        cluster.until(lambda: len(cluster.workers()) == 1, 120, "the worker")
        identifier = cluster.submit(long_wav)
        first = _running(cluster, identifier)["metadata"]["worker"]
        # the worker yields the cores to the API (WORKER_NICE, default 10); the API keeps its own
        assert _nice(first["pid"]) == min(_nice(0) + 10, 19) and _nice(api.pid) == _nice(0)
        os.kill(first["pid"], signal.SIGKILL)
        task = _ended(cluster, identifier, 180)
        assert task["status"] == "completed", task["error"]
        assert task["metadata"]["worker"]["name"] != first["name"]  # its replacement took over
        assert [w["name"] for w in cluster.workers()] == [task["metadata"]["worker"]["name"]]
    finally:
        cluster.stop()


def _nice(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
