"""Streaming benchmark: how soon `stream=true` on POST /v1/audio/transcriptions sends the first
text of a long recording, against when the whole text is done (until partial text, the first
text came with `done`: that is the baseline column).

    uv run python bench/stream.py [--minutes 1.5,5] [--batch 8,2] [--repeats 3] [--model base]

For each batch size the real service (`python -m app`, one local worker, SQLite and media in a
temp folder, BATCH_SIZE set) starts on loopback; one streamed task warms the model; then each
length (pyannote's sample.wav, 30 s of a two-speaker call, repeated with sox) is streamed
`--repeats` times, one at a time, with the `openai` client's form (`model=whisper-1`,
`language=en`, json), and the arrival of every event is timed from the start of the upload.
Medians per row; the client, API and worker share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from load import SAMPLE, running_server  # bench/ is on the path of a script run from it
from scale import _cpu_model


def stream(base: str, audio: Path) -> dict:
    """Times (s) of the first delta and of `done`, and how many deltas came."""
    started, first, deltas = time.monotonic(), None, 0
    form = {"model": "whisper-1", "language": "en", "stream": "true"}
    with (
        audio.open("rb") as f,
        httpx.stream(
            "POST", f"{base}/v1/audio/transcriptions", data=form, files={"file": f}, timeout=3600
        ) as answer,
    ):
        answer.raise_for_status()
        for line in answer.iter_lines():
            if not line.startswith("data: "):
                continue
            event, at = json.loads(line[6:]), time.monotonic() - started
            if event.get("type") == "transcript.text.delta":
                deltas += 1
                first = at if first is None else first
            elif event.get("type") == "transcript.text.done":
                return {"first": first if first is not None else at, "done": at, "deltas": deltas}
            else:
                raise RuntimeError(f"the stream failed: {event}")
    raise RuntimeError("the stream ended without a done event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1.5,5", help="lengths, comma-separated")
    parser.add_argument("--batch", default="8,2", help="BATCH_SIZE values, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="base")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        lengths = [float(m) for m in args.minutes.split(",")]
        audio = {}
        for minutes in lengths:
            audio[minutes] = work / f"{minutes}min.wav"
            copies = max(1, round(minutes * 2))  # sample.wav is 30 s
            subprocess.run(["sox", *[str(SAMPLE)] * copies, str(audio[minutes])], check=True)
        for batch in args.batch.split(","):
            run = work / f"batch{batch}"
            run.mkdir()
            db = f"sqlite:///{run / 'bench.db'}"
            with running_server(db, run, BATCH_SIZE=batch, WHISPER_MODEL=args.model) as base:
                while not httpx.get(f"{base}/workers").json()["workers"]:
                    time.sleep(0.5)  # the worker process imports torch first
                stream(base, SAMPLE)  # loads the model
                for minutes in lengths:
                    times = [stream(base, audio[minutes]) for _ in range(args.repeats)]
                    first = statistics.median(t["first"] for t in times)
                    done = statistics.median(t["done"] for t in times)
                    deltas = statistics.median(t["deltas"] for t in times)
                    rows.append((minutes, batch, first, done, deltas))
                    print(f"  {minutes} min, batch {batch}: first {first:.1f} s, done {done:.1f} s")
    print(f"\n{_cpu_model()}; model {args.model}; medians of {args.repeats}\n")
    print(
        "| audio | BATCH_SIZE | first text (s) | done (s), the baseline | first / done | deltas |"
    )
    print("|---|---|---|---|---|---|")
    for minutes, batch, first, done, deltas in rows:
        print(f"| {minutes:g} min | {batch} | {first:.1f} | {done:.1f} | {first / done:.0%} | {deltas:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
