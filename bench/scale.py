"""Scale benchmark: throughput of full-pipeline tasks with one and with two single-threaded
worker processes, and /health/live latency while both workers are busy, from one run.

    uv run python bench/scale.py [--tasks 8] [--seconds 5] [--model base]
    uv run python bench/scale.py --quick        # 4 tasks, 2 s per latency measurement

The API starts alone (`python -m app` with WORKERS=0, SQLite and media in a temp folder) and the
workers as separate `python -m app.worker` processes with CPU_THREADS=1, on the same database
and media folder. First one worker: once GET /workers lists it, warm-up tasks run until it has
run one, so model loading is not measured; then `--tasks` transcriptions of pyannote's
sample.wav (30 s, two speakers; language=en, every stage on: transcribe, align, diarize) are
submitted at once, and the wall time runs from the first submit to the last completion (seen
through long polls, so up to 0.25 s late). Then a second worker joins, warms up the same way,
and the same batch runs on both. Per-task and per-stage seconds are the workers' own
(`metadata.duration`, `metadata.processing.stage_seconds`), medians over the batch.

Then, with both workers warm, GET /health/live is measured for `--seconds` with 50 concurrent
clients (bench/load.py's `measure`: asyncio, one httpx client and connection per client):
idle (no task queued or processing, checked before), then busy (enough tasks queued that both
workers run one throughout; two tasks `processing` right before and right after). Clients, API
and workers share the machine's cores, so busy numbers are those of a single busy host. The CPU %
columns (from /proc: percent of one core during each batch or measurement, for the workers
together, the API and this process's clients) show what other processes on the host took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE = Path(str(resources.files("pyannote.audio") / "sample" / "sample.wav"))

CLIENTS = 50
WORKER_THREADS = 1  # CPU_THREADS of each worker
SUBMIT = "/speech-to-text?language=en"  # every other option at its default: align, diarize on
ENDED = ("completed", "failed")
START_SECONDS = 300  # for a process to answer, or a worker to register (imports torch)
TASK_SECONDS = 1800  # for one task to end, model loading included


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load() -> str:
    return " / ".join(f"{n:.2f}" for n in os.getloadavg())


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


class Service:
    """The API process and its worker processes; `close` stops them all."""

    def __init__(self, workdir: Path, model: str) -> None:
        self.workdir = workdir
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.env = os.environ | {
            "DB_URL": f"sqlite:///{workdir / 'bench.db'}",
            "MEDIA_DIR": str(workdir / "media"),
            "MODEL_DIR": str(REPO / "models"),
            "HUB_ALLOWED": "false",
            "HF_HUB_OFFLINE": "1",
            "WHISPER_MODEL": model,
            "LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": "0",
        }
        self.processes: list[tuple[subprocess.Popen, Path]] = []

    def _start(self, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        with log.open("ab") as out:  # the child keeps its own copy of the handle
            process = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append((process, log))
        return process

    def start_api(self) -> None:
        log = self.workdir / "api.log"
        api = self._start(["-m", "app"], log, self.env)
        deadline = time.monotonic() + START_SECONDS
        while True:
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{_tail(log)}")
            try:
                if httpx.get(f"{self.base}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)

    def start_worker(self) -> None:
        """Start one more worker; return once GET /workers lists all of them."""
        n = len(self.processes)  # the API is the first process
        env = self.env | {"CPU_THREADS": str(WORKER_THREADS)}
        self._start(["-m", "app.worker"], self.workdir / f"worker{n}.log", env)
        deadline = time.monotonic() + START_SECONDS
        while len(self.workers()) < n:
            for process, log in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{log.name}: exited ({process.returncode}):\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET /workers does not list {n} workers")
            time.sleep(0.5)

    def workers(self) -> list[dict]:
        response = httpx.get(f"{self.base}/workers", timeout=10)
        response.raise_for_status()
        return response.json()["workers"]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the API, of the workers together, and of this process."""
        api, *workers = (process.pid for process, _ in self.processes)
        return {
            "api": _cpu_seconds(api),
            "workers": sum(_cpu_seconds(pid) for pid in workers),
            "bench": time.process_time(),
        }

    @contextlib.contextmanager
    def cpu_share(self, into: dict):
        """Store in `into` the percent of one core each of `cpu` took during the block (100 =
        one core all the time): other processes on the host take what is missing."""
        before, started = self.cpu(), time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        into.update({f"{k}_cpu": 100 * (v - before[k]) / elapsed for k, v in self.cpu().items()})

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{_tail(log)}" for _, log in self.processes)

    def close(self) -> None:
        """SIGTERM every process, workers first (a worker hands its task back and exits)."""
        for process, _ in reversed(self.processes):
            process.terminate()
        for process, _ in reversed(self.processes):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def submit(client: httpx.AsyncClient, audio: bytes) -> str:
    response = await client.post(SUBMIT, files={"file": ("sample.wav", audio, "audio/wav")})
    response.raise_for_status()
    return response.json()["identifier"]


async def ended(client: httpx.AsyncClient, identifier: str) -> dict:
    """The task once it has ended (long polls); raises when it failed."""
    deadline = time.monotonic() + TASK_SECONDS
    while time.monotonic() < deadline:
        response = await client.get(f"/task/{identifier}", params={"wait": 60}, timeout=90)
        response.raise_for_status()
        task = response.json()
        if task["status"] in ENDED:
            if task["status"] == "failed":
                raise RuntimeError(f"task {identifier} failed: {task['error']}")
            return task
    raise RuntimeError(f"task {identifier} did not end within {TASK_SECONDS} s")


async def run_batch(client: httpx.AsyncClient, audio: bytes, count: int) -> tuple[float, list]:
    """Submit `count` tasks at once; seconds from the first submit to the last completion."""
    started = time.perf_counter()
    identifiers = await asyncio.gather(*(submit(client, audio) for _ in range(count)))
    tasks = await asyncio.gather(*(ended(client, i) for i in identifiers))
    return time.perf_counter() - started, tasks


def _worker(task: dict) -> str:
    return task["metadata"]["worker"]["name"]


async def warm_up(client: httpx.AsyncClient, audio: bytes, service: Service) -> None:
    """Run batches of one task per worker until every worker has run one (loaded its models)."""
    names = {w["name"] for w in service.workers()}
    warm: set[str] = set()
    for _ in range(5):
        _, tasks = await run_batch(client, audio, len(names))
        warm |= {_worker(t) for t in tasks}
        if names <= warm:
            return
    raise RuntimeError(f"workers {sorted(names - warm)} ran no warm-up task")


def summarise(workers: int, wall: float, tasks: list[dict]) -> dict:
    stage_seconds = [t["metadata"]["processing"].get("stage_seconds", {}) for t in tasks]
    stages = {
        stage: statistics.median(s.get(stage, 0.0) for s in stage_seconds)
        for stage in stage_seconds[0]
    }
    spread = Counter(_worker(t) for t in tasks)
    return {
        "workers": workers,
        "tasks": len(tasks),
        "wall": wall,
        "per_min": 60 * len(tasks) / wall,
        "task_s": statistics.median(t["metadata"]["duration"] for t in tasks),
        "stages": stages,
        "spread": sorted(spread.values(), reverse=True),
        "names": sorted(spread),
    }


async def processing(client: httpx.AsyncClient) -> int:
    response = await client.get("/task/all", params={"status": "processing", "limit": 100})
    response.raise_for_status()
    return len(response.json()["tasks"])


async def until_processing(client: httpx.AsyncClient, count: int, timeout: float) -> bool:
    """True once `count` tasks are processing (within `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await processing(client) >= count:
            return True
        await asyncio.sleep(0.2)
    return False


async def latency(
    client: httpx.AsyncClient, service: Service, audio: bytes, seconds: float, task_s: float
) -> tuple[dict, dict, bool]:
    """/health/live idle, then while 2 workers run tasks; True when both ran throughout."""
    from bench.load import measure, server_idle

    async def health() -> dict:
        cpu: dict = {}
        with service.cpu_share(cpu):
            result = await measure(service.base, "/health/live", CLIENTS, seconds)
        return result | cpu

    if not await server_idle(client):
        raise RuntimeError("a task is queued or processing before the idle measurement")
    idle = await health()

    # Enough work that neither worker runs out during the measurement and the checks around it.
    per_worker = math.ceil((seconds + 10) / task_s) + 1
    identifiers = await asyncio.gather(*(submit(client, audio) for _ in range(2 * per_worker)))
    try:
        before = await until_processing(client, 2, timeout=60)
        busy = await health()
        after = await processing(client) >= 2
    finally:
        for identifier in identifiers:  # a task that already ended answers 409: harmless
            await client.post(f"/task/{identifier}/cancel")
        for identifier in identifiers:
            with contextlib.suppress(RuntimeError):  # cancelled tasks end as failed
                await ended(client, identifier)
    return idle, busy, before and after


async def bench(service: Service, tasks: int, seconds: float) -> dict:
    audio = SAMPLE.read_bytes()
    async with httpx.AsyncClient(base_url=service.base, timeout=120) as client:
        rows = []
        for workers in (1, 2):
            await asyncio.to_thread(service.start_worker)
            await warm_up(client, audio, service)
            cpu: dict = {}
            with service.cpu_share(cpu):
                wall, done = await run_batch(client, audio, tasks)
            rows.append(summarise(workers, wall, done) | cpu)
        task_s = rows[-1]["task_s"]
        idle, busy, throughout = await latency(client, service, audio, seconds, task_s)
    return {"rows": rows, "idle": idle, "busy": busy, "throughout": throughout}


def report(result: dict) -> None:
    rows = result["rows"]
    stages = list(rows[0]["stages"])
    print("## Throughput: full pipeline on sample.wav, CPU_THREADS=1 per worker\n")
    head = ["workers", "tasks", "wall s", "tasks/min", "median task s"]
    head += [f"median {s} s" for s in stages] + ["tasks per worker", "workers CPU %"]
    print("| " + " | ".join(head) + " |")
    print("|--:|--:|--:|--:|--:|" + "--:|" * len(stages) + "---|--:|")
    for r in rows:
        cells = [str(r["workers"]), str(r["tasks"]), f"{r['wall']:.1f}", f"{r['per_min']:.2f}"]
        cells += [f"{r['task_s']:.2f}"] + [f"{r['stages'].get(s, 0):.2f}" for s in stages]
        cells += [" + ".join(str(n) for n in r["spread"]), f"{r['workers_cpu']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    speedup = rows[1]["per_min"] / rows[0]["per_min"]
    print(f"\nSpeed-up, 2 workers over 1: **{speedup:.2f}×** (target ≥ 1.8×).")
    print(f"Workers of the 2-worker batch: {', '.join(rows[1]['names'])}.\n")

    idle, busy = result["idle"], result["busy"]
    print(f"## GET /health/live, {CLIENTS} concurrent clients\n")
    print(
        "| while | req/s | p50 ms | p99 ms | requests | errors"
        " | API CPU % | clients CPU % | workers CPU % |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    mark = "" if result["throughout"] else " ¹"
    for label, m in (
        ("idle (2 workers, no task)", idle),
        (f"busy (2 workers running){mark}", busy),
    ):
        print(
            f"| {label} | {m['rps']:.0f} | {m['p50']:.1f} | {m['p99']:.1f}"
            f" | {m['requests']} | {m['errors']} | {m['api_cpu']:.0f} | {m['bench_cpu']:.0f}"
            f" | {m['workers_cpu']:.0f} |"
        )
    print(f"\nBusy p99 / idle p99: **{busy['p99'] / idle['p99']:.2f}×** (target ≤ 2×).")
    if not result["throughout"]:
        print("\n¹ two tasks were not both seen `processing` right before and after it.")
    print(
        f"\nCPU %: of one core, during the batch or measurement (the host has {os.cpu_count()}"
        " cores; what the bench's processes did not get went to other processes)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", type=int, default=8, help="tasks per batch (even: two workers share them)"
    )
    parser.add_argument("--seconds", type=float, default=5, help="seconds per latency measurement")
    parser.add_argument("--model", default=None, help="whisper model; default: WHISPER_MODEL")
    parser.add_argument("--quick", action="store_true", help="4 tasks, 2 s per measurement")
    args = parser.parse_args()
    tasks = 4 if args.quick else args.tasks
    seconds = 2.0 if args.quick else args.seconds
    if tasks < 2:
        parser.error("--tasks must be at least 2")
    from app.settings import Settings

    model = args.model or Settings(_env_file=None).whisper_model

    print(f"# Scale benchmark: {os.cpu_count()} cores, {_cpu_model()}")
    print(f"Python {platform.python_version()} on {platform.platform()}")
    print(f"Load average at the start (1/5/15 min): {_load()}; other processes share the cores.")
    print(
        f"API: `python -m app` with WORKERS=0 on loopback, SQLite; workers: `python -m app.worker`"
        f" processes, CPU_THREADS={WORKER_THREADS} each; model {model}; audio: sample.wav (30 s,"
        f" 2 speakers), `POST {SUBMIT}` (align and diarize on); {tasks} tasks per batch, after"
        f" one warm-up task per worker; /health/live: {CLIENTS} clients (asyncio + httpx, on the"
        f" same machine), {seconds:g} s per measurement. CPU_THREADS bounds a worker's"
        f" CTranslate2, torch and BLAS threads; workers run at WORKER_NICE="
        f"{Settings(_env_file=None).worker_nice} (the API keeps its own).\n",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    service = Service(workdir, model)
    try:
        service.start_api()
        result = asyncio.run(bench(service, tasks, seconds))
    except BaseException:
        print(f"Logs (kept in {workdir}):\n{service.logs()}", file=sys.stderr)
        raise
    finally:
        service.close()
    shutil.rmtree(workdir, ignore_errors=True)
    report(result)
    print(f"\nLoad average at the end (1/5/15 min): {_load()}.")


if __name__ == "__main__":
    main()
