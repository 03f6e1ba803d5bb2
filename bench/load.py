"""Load benchmark: p50/p99 latency, throughput and errors of the cheap read endpoints on an idle
server (the baseline) and while a real transcription runs in it, on SQLite and on PostgreSQL.

    uv run python bench/load.py [--clients 1,10,50] [--seconds 5] [--db sqlite,postgresql]
    uv run python bench/load.py --quick        # 10 clients, 2 s per measurement

For each database the real service (`python -m app`) starts as a subprocess on loopback with a
fresh database (a temp SQLite file, or a new database on a throwaway PostgreSQL cluster from
tests/postgres.py). ~200 cheap /service/combine tasks are created first, so /task/all has rows.
Measured, each for `--seconds` with N concurrent clients (asyncio; one httpx client and keep-alive
connection per client), every request timed:

    GET /health/live
    GET /task/{identifier}       (a completed combine task)
    GET /task/all?limit=50

Each endpoint and client count is measured twice, in the same server process on the same
database: first idle, the baseline (before each of these measurements, GET /task/all?status=queued
and ?status=processing must list no task), then busy: pyannote's sample.wav is submitted to
/speech-to-text again and again, so that a task is `processing` during every busy measurement
(checked right before and after each one). One table shows both side by side; its errors column
adds the idle and busy errors.

Clients, server and pipeline share the machine's cores, so the busy numbers are those of a busy
single-host deployment, not of the API alone. Non-2xx answers and exceptions count as errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE = Path(str(resources.files("pyannote.audio") / "sample" / "sample.wav"))

COMBINE_TASKS = 200
SPEECH_BACKLOG = 2  # unfinished transcriptions kept in the queue, so one is always processing
ALIGNED = {
    "segments": [
        {"start": 0, "end": 1, "text": "hi", "words": [{"word": "hi", "start": 0, "end": 1}]}
    ],
    "language": "en",
}
TURNS = [{"speaker": "SPEAKER_00", "start": 0, "end": 1, "label": "A"}]
ENDPOINTS = (
    ("GET /health/live", "/health/live"),
    ("GET /task/{id}", "/task/{id}"),
    ("GET /task/all?limit=50", "/task/all?limit=50"),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(db_url: str, workdir: Path, **settings: str):
    """Start `python -m app` on a free port (`settings`: more environment, e.g. BATCH_SIZE);
    yields its base URL; terminates it after."""
    port = _free_port()
    env = os.environ | {
        "DB_URL": db_url,
        "MEDIA_DIR": str(workdir / "media"),
        "MODEL_DIR": str(REPO / "models"),
        "PORT": str(port),
        "HUB_ALLOWED": "false",
        "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    log = workdir / "server.log"
    with log.open("ab") as out:  # the child keeps its own copy of the handle
        server = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class Pipeline:
    """Keeps SPEECH_BACKLOG transcriptions of sample.wav queued or processing."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.audio = SAMPLE.read_bytes()
        self.pending: list[str] = []
        self.completed = 0
        self.lock = asyncio.Lock()  # the feeder and `processing` both refill

    async def _submit(self) -> None:
        response = await self.client.post(
            "/speech-to-text?diarize=false&language=en",
            files={"file": ("sample.wav", self.audio, "audio/wav")},
        )
        response.raise_for_status()
        self.pending.append(response.json()["identifier"])

    async def _statuses(self) -> list[str]:
        return [(await self.client.get(f"/task/{i}")).json()["status"] for i in list(self.pending)]

    async def refill(self) -> list[str]:
        """Forget finished tasks, submit new ones; returns the statuses of the pending ones."""
        async with self.lock:
            return await self._refill()

    async def _refill(self) -> list[str]:
        statuses = await self._statuses()
        for identifier, status in zip(list(self.pending), statuses, strict=True):
            if status == "failed":
                task = (await self.client.get(f"/task/{identifier}")).json()
                raise RuntimeError(f"transcription {identifier} failed: {task['error']}")
            if status == "completed":
                self.completed += 1
                self.pending.remove(identifier)
        while len(self.pending) < SPEECH_BACKLOG:
            await self._submit()
        return await self._statuses()

    async def keep_busy(self) -> None:
        while True:
            await self.refill()
            await asyncio.sleep(1)

    async def processing(self, timeout: float) -> bool:
        """True once one of the pending tasks is `processing` (within `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "processing" in await self.refill():
                return True
            await asyncio.sleep(0.2)
        return False


async def measure(base: str, path: str, clients: int, seconds: float) -> dict:
    """`clients` coroutines, each with its own connection (its own httpx client: one shared
    pool serialises dozens of connections on the client side), send `GET path` back to back
    for `seconds`."""
    latencies: list[float] = []
    errors = 0
    pool = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(clients)]

    async def one_client(client: httpx.AsyncClient, stop: float) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                response = await client.get(path)
                if not response.is_success:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(client.get(path) for client in pool))  # open the connections
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client, started + seconds) for client in pool))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else []
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": 1000 * (cuts[49] if cuts else latencies[0]),
        "p99": 1000 * (cuts[98] if cuts else latencies[0]),
        "errors": errors,
    }


async def server_idle(client: httpx.AsyncClient) -> bool:
    """True when no task is queued or processing."""
    for status in ("queued", "processing"):
        response = await client.get("/task/all", params={"status": status, "limit": 1})
        response.raise_for_status()
        if response.json()["tasks"]:
            return False
    return True


async def bench_db(
    base: str, db: str, clients: list[int], seconds: float, notes: list[str]
) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        files = {
            "aligned_transcript": ("aligned.json", json.dumps(ALIGNED), "application/json"),
            "diarization_result": ("turns.json", json.dumps(TURNS), "application/json"),
        }
        ids = []
        for _ in range(COMBINE_TASKS):
            response = await client.post("/service/combine", files=files)
            response.raise_for_status()
            ids.append(response.json()["identifier"])
        for identifier in (ids[0], ids[-1]):  # they run in order: the last one ends last
            task = (await client.get(f"/task/{identifier}?wait=120")).json()
            if task["status"] != "completed":
                raise RuntimeError(f"combine task {identifier} ended {task['status']}")

        rows = [
            {"db": db, "endpoint": label, "clients": n, "path": path.format(id=ids[0])}
            for label, path in ENDPOINTS
            for n in clients
        ]
        for row in rows:  # baseline: nothing queued or processing
            if not await server_idle(client):
                raise RuntimeError("a task is queued or processing before an idle measurement")
            row["idle"] = await measure(base, row["path"], row["clients"], seconds)

        pipeline = Pipeline(client)
        if not await pipeline.processing(timeout=120):
            raise RuntimeError("no transcription started processing")
        feeder = asyncio.create_task(pipeline.keep_busy())
        try:
            for row in rows:
                busy_before = await pipeline.processing(timeout=60)
                row["busy"] = await measure(base, row["path"], row["clients"], seconds)
                busy_after = await pipeline.processing(timeout=5)
                row["processing"] = busy_before and busy_after
            done = pipeline.completed
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        notes.append(f"{db}: {done} transcriptions of sample.wav completed while measuring.")
        return rows


def run_db(db: str, clients: list[int], seconds: float, notes: list[str]) -> list[dict]:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-")))
        if db == "sqlite":
            db_url = f"sqlite:///{workdir / 'bench.db'}"
        else:
            from tests.postgres import new_database, postgres_server

            db_url = new_database(stack.enter_context(postgres_server()))
        base = stack.enter_context(running_server(db_url, workdir))
        return asyncio.run(bench_db(base, db, clients, seconds, notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,10,50", help="concurrent clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=5, help="seconds per measurement")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite and/or postgresql")
    parser.add_argument("--quick", action="store_true", help="10 clients, 2 s per measurement")
    args = parser.parse_args()
    clients = [10] if args.quick else [int(n) for n in args.clients.split(",")]
    seconds = 2.0 if args.quick else args.seconds
    dbs = [d.strip() for d in args.db.split(",")]

    print(f"# Load benchmark: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"Python {platform.python_version()} on {platform.platform()}")
    print(
        f"One uvicorn server (`python -m app`) on loopback; {COMBINE_TASKS} combine tasks in the"
        f" database; idle: no task queued or processing; busy: a transcription of sample.wav"
        f" (whisper default model, CPU) processing; all idle measurements of a database run"
        f" right before its busy ones, in the same server process; {seconds:g} s per"
        f" measurement; clients (asyncio + httpx) on the same machine.\n"
    )
    rows: list[dict] = []
    notes: list[str] = []
    for db in dbs:
        rows += run_db(db, clients, seconds, notes)

    print(
        "| db | endpoint | clients | idle req/s | idle p50 ms | idle p99 ms"
        " | busy req/s | busy p50 ms | busy p99 ms | errors |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        idle, busy = r["idle"], r["busy"]
        mark = "" if r["processing"] else " ¹"
        print(
            f"| {r['db']} | `{r['endpoint']}`{mark} | {r['clients']}"
            f" | {idle['rps']:.0f} | {idle['p50']:.1f} | {idle['p99']:.1f}"
            f" | {busy['rps']:.0f} | {busy['p50']:.1f} | {busy['p99']:.1f}"
            f" | {idle['errors'] + busy['errors']} |"
        )
    print()
    if not all(r["processing"] for r in rows):
        print("¹ no transcription was seen `processing` right before and after the busy one.")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
