"""API processes never load models; workers report themselves and name the tasks they run."""

from __future__ import annotations

import subprocess
import sys

from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import REPO
from tests.e2e.conftest import wait


def test_the_api_serves_submissions_without_importing_torch_whisperx_or_pyannote(
    tmp_path, sample_wav
):
    """The API validates, stores and queues; /models, /workers and readiness answer from the
    workers' reports. None of it imports a model library."""
    script = f"""
import sys
from fastapi.testclient import TestClient
from app.main import create_app
from app.settings import Settings
settings = Settings(_env_file=None, db_url="sqlite:///{tmp_path}/api.db", media_dir="{tmp_path}/media",
                    model_dir="{REPO}/models", hub_allowed=False, workers=0)
with TestClient(create_app(settings)) as client:
    with open("{sample_wav}", "rb") as f:
        assert client.post("/speech-to-text?num_speakers=2", files={{"file": f}}).status_code == 200
    assert client.get("/task/all").json()["tasks"][0]["status"] == "queued"
    assert client.get("/models").status_code == 200
    assert client.get("/workers").json() == {{"workers": []}}
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["workers"].startswith("none alive")
heavy = [m for m in ("torch", "whisperx", "pyannote", "faster_whisper", "ctranslate2") if m in sys.modules]
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_module_level_app_is_built_from_the_environment_on_first_use():
    script = (
        "import app.main as m, sys; assert 'app' not in vars(m); a = m.app; print(type(a).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "FastAPI", done.stderr[-2000:]


def test_a_worker_reports_itself_and_names_the_tasks_it_runs(client, sample_wav):
    workers = client.get("/workers").json()["workers"]
    assert len(workers) == 1
    worker = workers[0]
    assert worker["state"] == "idle" and worker["task"] is None and worker["device"] == "cpu"
    assert worker["name"].endswith(f"@{worker['host']}") and worker["pid"] > 0
    assert client.get("/health/ready").json()["checks"]["workers"] == "ok: 1 alive"
    with open(sample_wav, "rb") as f:
        identifier = client.post(
            "/service/transcribe?model=tiny.en", files={"file": ("sample.wav", f)}
        ).json()["identifier"]
    task = wait(client, identifier)
    assert task["status"] == "completed"
    assert task["metadata"]["worker"] == {k: worker[k] for k in ("name", "host", "pid")}
    # the worker's next report lists what it loaded, and /models reads it from there
    reported = client.worker.report().models  # type: ignore[attr-defined]
    assert any(m["kind"] == "whisper" and m["name"] == "tiny.en" for m in reported)
    client.app.state.store.beat(client.worker.report())  # type: ignore[attr-defined]
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["tiny.en"]["loaded"]


def test_no_worker_means_tasks_wait_queued(settings, sample_wav):
    with TestClient(create_app(settings)) as client:
        with open(sample_wav, "rb") as f:
            identifier = client.post("/service/transcribe", files={"file": f}).json()["identifier"]
        task = client.get(f"/task/{identifier}?wait=1").json()
        assert task["status"] == "queued" and task["metadata"]["queue_position"] == 1
        assert task["metadata"]["worker"] is None


def test_cpu_threads_bounds_every_thread_pool_of_a_worker(tmp_path):
    """At CPU_THREADS=1 a worker uses one thread for torch and for numpy's BLAS too: two
    workers on a 2-core host must not each start a pool as wide as the host."""
    script = f"""
from threadpoolctl import threadpool_info
import torch
from app.settings import Settings
from app.worker.__main__ import start_runtime
settings = Settings(_env_file=None, db_url="sqlite:///{tmp_path}/w.db", media_dir="{tmp_path}/media",
                    model_dir="{REPO}/models", hub_allowed=False, cpu_threads=1, warm_up=False).for_worker()
runtime = start_runtime(settings)
pools = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
assert torch.get_num_threads() == 1 and pools and all(n == 1 for _, n in pools), pools
runtime.stopping.set()
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
