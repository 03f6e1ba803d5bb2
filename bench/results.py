"""Large-result benchmark: fetching the transcript of a long recording, and what it does to the
other requests of the same API process.

    uv run python bench/results.py [--hours 3] [--seconds 5] [--clients 20]

A completed task whose result is `--hours` of speech (a synthetic transcript: a word every
0.3 s, 15 a segment, each with times, score and speaker, as a diarized whisperX result has) is
written to a fresh SQLite database; then the real service (`python -m app`, WORKERS=0) starts on
it. Measured, each for `--seconds`: GET /task/{identifier} (the task as JSON) and
?format=srt|json alone, one client, back to back (median seconds); then GET /health/live from
`--clients` clients, first with nothing else running (the baseline) and then while 4 clients
fetch the large task back to back (p50/p99 ms: a response made on the event loop holds up every
other request of that process).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from load import measure as latency
from load import running_server
from scale import _cpu_model

from app.store.db import make_engine
from app.store.models import TaskType
from app.store.tasks import TaskStore

FETCHERS = 4


def big_task(db_url: str, hours: float) -> tuple[str, int]:
    """A completed diarized transcript of `hours`; returns (identifier, words)."""
    n = int(hours * 3600 / 0.3)
    words = [
        {"word": "word", "start": round(i * 0.3, 3), "end": round(i * 0.3 + 0.2, 3),
         "score": 0.9, "speaker": f"SPEAKER_0{i // 150 % 2}"}
        for i in range(n)
    ]  # fmt: skip
    segments = [
        {"start": words[i]["start"], "end": words[min(i + 14, n - 1)]["end"],
         "text": " ".join(w["word"] for w in words[i : i + 15]), "words": words[i : i + 15],
         "speaker": words[i]["speaker"]}
        for i in range(0, n, 15)
    ]  # fmt: skip
    store = TaskStore(make_engine(db_url))
    store.create_schema()
    task = store.create(TaskType.full_process, {}, file_name="long.wav")
    store.claim(task.identifier, "bench", datetime.now(UTC), 3)
    result = {"segments": segments, "word_segments": words, "language": "en"}
    store.finish(task.identifier, result, {}, "bench")
    store.engine.dispose()
    return task.identifier, n


async def fetch_times(base: str, path: str, seconds: float) -> float:
    times = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop or not times:
            started = time.perf_counter()
            (await client.get(path)).raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def while_fetching(base: str, path: str, clients: int, seconds: float) -> dict:
    stop = asyncio.Event()

    async def fetch() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            while not stop.is_set():
                (await client.get(path)).raise_for_status()

    fetchers = [asyncio.create_task(fetch()) for _ in range(FETCHERS)]
    await asyncio.sleep(1)  # all of them under way
    try:
        return await latency(base, "/health/live", clients, seconds)
    finally:
        stop.set()
        await asyncio.gather(*fetchers)


async def bench(base: str, identifier: str, clients: int, seconds: float) -> list[tuple[str, str]]:
    rows = []
    for query in ("", "?format=json", "?format=srt"):
        median = await fetch_times(base, f"/task/{identifier}{query}", seconds)
        rows.append((f"GET /task/{{id}}{query}, one client", f"{median:.2f} s (median)"))
    idle = await latency(base, "/health/live", clients, seconds)
    busy = await while_fetching(base, f"/task/{identifier}", clients, seconds)
    for name, m in (("idle", idle), (f"while {FETCHERS} clients fetch the task", busy)):
        label = f"GET /health/live, {clients} clients, {name}"
        rows.append((label, f"p50 {m['p50']:.0f} ms, p99 {m['p99']:.0f} ms, {m['errors']} errors"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'bench.db'}"
        identifier, words = big_task(db, args.hours)
        with running_server(db, Path(folder), WORKERS="0") as base:
            rows = asyncio.run(bench(base, identifier, args.clients, args.seconds))
    print(f"\n{_cpu_model()}; {args.hours:g} h transcript, {words} words\n")
    print("| measured | figure |\n|---|---|")
    for name, figure in rows:
        print(f"| {name} | {figure} |")


if __name__ == "__main__":
    main()
