"""50 concurrent submissions and 200 concurrent pollers against a real server, on SQLite and
PostgreSQL: every request answered without error ("database is locked", pool exhaustion),
every task completed."""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess

import httpx

from app.main import create_app
from tests.e2e.conftest import serve, worker_thread

TURNS = b'[{"speaker": "A", "start": 0, "end": 1}]'
ALIGNED = b'{"segments": [{"start": 0, "end": 1, "text": "hi"}], "language": "en"}'


async def _submit(client: httpx.AsyncClient, n: int, clip: bytes) -> httpx.Response:
    if n % 10 == 0:  # a real transcription in every tenth submission
        return await client.post(
            "/service/transcribe?model=tiny.en&language=en", files={"file": ("c.wav", clip)}
        )
    return await client.post(
        "/service/combine",
        files={"aligned_transcript": ("a.json", ALIGNED), "diarization_result": ("d.json", TURNS)},
    )


async def _poll(client: httpx.AsyncClient, ids: list[str], done: asyncio.Event) -> list[int]:
    codes = []
    while not done.is_set() or len(codes) < 3:
        path = random.choice([f"/task/{random.choice(ids)}", "/task/all?limit=20"])
        codes.append((await client.get(path)).status_code)
    return codes


async def _load(base: str, clip: bytes) -> tuple[list[httpx.Response], list[int], list[dict]]:
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        submitted = await asyncio.gather(*(_submit(client, n, clip) for n in range(50)))
        ids = [r.json()["identifier"] for r in submitted if r.status_code == 200]
        done = asyncio.Event()
        pollers = [asyncio.create_task(_poll(client, ids, done)) for _ in range(200)]

        async def ended() -> list[dict]:
            while True:
                tasks = (await client.get("/task/all")).json()["tasks"]
                if all(t["status"] in ("completed", "failed") for t in tasks):
                    return tasks
                await asyncio.sleep(0.5)

        tasks = await asyncio.wait_for(ended(), 300)
        done.set()
        codes = [c for p in await asyncio.gather(*pollers) for c in p]
    return submitted, codes, tasks


def test_50_submissions_and_200_pollers_at_once(settings, model_cache, db_url, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    settings.db_url = db_url
    clip = tmp_path / "clip.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(clip), "synth", "1", "sine", "300"],
        check=True,
    )
    with worker_thread(settings, model_cache), serve(create_app(settings)) as base:
        submitted, codes, tasks = asyncio.run(_load(base, clip.read_bytes()))
    assert [r.status_code for r in submitted] == [200] * 50, [r.text for r in submitted][:3]
    assert len(codes) >= 600 and set(codes) == {200}
    assert len(tasks) == 50 and {t["status"] for t in tasks} == {"completed"}, tasks
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
