"""Pipeline benchmark: seconds per stage, real-time factor and peak memory of a task, against the
old whisperX-FastAPI service's per-task call on the same audio and model in the same run.

    uv run python bench/pipeline.py [--models base tiny.en] [--runs 3] [--copies 6]

The audio is pyannote's sample.wav (30 s real telephone call) `--copies` times over (3.1 min at
6), language given (English). Four processes per model, so each peak memory is its own:

- old service: what whisperX-FastAPI does for every `/service/transcribe` task,
  `whisperx.load_model(...)` (its defaults: pyannote VAD, 4 threads) then `.transcribe(audio,
  batch_size=8, chunk_size=20)`, `--runs` times, each followed by our transcription stage
  (warm) in the same process: their ratio, run by run, is the one a drifting machine moves least;
- ours, direct: the full pipeline (`app.pipeline.run`) warm, `--runs` times, seconds per stage
  (on CPU, diarization of audio up to DIARIZE_BESIDE_SECONDS runs beside transcription and
  alignment, so the stages overlap), each run followed by one with diarization in turn after
  alignment (`in turn`), and whether the results are the same;
- batch sizes: transcription alone at batch 2 and 8, each batch run as one part on every thread
  or as LANES parts at once, interleaved in one warm process (peak memory after each in the
  first round);
- ours, HTTP: a fresh `python -m app` (one worker process) on loopback; once `/health/ready`
  says the worker has warmed up, the first `/service/transcribe` task, then `--runs` more, then
  `--runs` `/speech-to-text` tasks, each timed from upload to the long poll's answer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE = Path(str(resources.files("pyannote.audio") / "sample" / "sample.wav"))


def _settings(model: str, workdir: Path):
    from app.settings import Settings

    return Settings(
        _env_file=None,
        whisper_model=model,
        db_url=f"sqlite:///{workdir / 'bench.db'}",
        media_dir=workdir / "media",
        model_dir=REPO / "models",
        hub_allowed=False,
    )


def _params(model: str):
    from app.pipeline.options import (
        AlignmentOptions,
        AsrOptions,
        DiarizationOptions,
        ModelOptions,
        TaskParams,
        VadOptions,
    )

    return TaskParams(
        model=ModelOptions(model=model, language="en"),
        asr=AsrOptions(),
        vad=VadOptions(),
        alignment=AlignmentOptions(),
        diarization=DiarizationOptions(),
    )


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def old_service(model: str, audio_path: Path, runs: int) -> dict:
    """whisperX-FastAPI's per-task transcription: load the model, transcribe, drop it; each time
    followed by our transcription stage (warm) on the same audio, so that both see the same
    state of a machine whose speed drifts (the ratio is taken run by run)."""
    import whisperx

    from app.pipeline import transcribe as asr
    from app.pipeline.models import ModelCache, resolve_whisper_model
    from app.pipeline.options import AsrOptions, ModelOptions, VadOptions

    path, _ = resolve_whisper_model(model, REPO / "models", False)
    audio = whisperx.load_audio(str(audio_path))
    settings = _settings(model, Path(tempfile.mkdtemp(prefix="bench-"))).for_worker()
    cache, options = ModelCache(), ModelOptions(model=model, language="en")

    def ours() -> float:
        started = time.perf_counter()
        asr.transcribe(audio, options, AsrOptions(), VadOptions(), cache=cache, settings=settings)
        return time.perf_counter() - started

    per_task, loads, peak, mine = [], [], 0.0, []
    for run in range(runs):
        started = time.perf_counter()
        pipeline = whisperx.load_model(path, "cpu", compute_type="int8", language="en")
        loads.append(time.perf_counter() - started)
        pipeline.transcribe(audio, batch_size=8, chunk_size=20)
        per_task.append(time.perf_counter() - started)
        del pipeline
        if not run:
            peak = _peak_mb()  # the old call's alone: ours has not run yet
            ours()  # loads our model: not counted
        mine.append(ours())
    return {
        "task_s": statistics.median(per_task),
        "load_s": statistics.median(loads),
        "peak_mb": peak,
        "ours_s": statistics.median(mine),
        "ratio": statistics.median(m / o for m, o in zip(mine, per_task, strict=True)),
    }


def direct(model: str, audio_path: Path, runs: int) -> dict:
    """The full pipeline called in this process, warm: seconds per stage, diarizing beside
    transcription (the CPU default) and, interleaved, in turn after alignment."""
    import app.pipeline.run as pipeline
    from app.pipeline.models import ModelCache

    settings = _settings(model, Path(tempfile.mkdtemp(prefix="bench-"))).for_worker()
    cache, default = ModelCache(), pipeline.DIARIZE_BESIDE_SECONDS

    def once(beside: bool = True) -> tuple[float, dict, dict]:
        pipeline.DIARIZE_BESIDE_SECONDS = default if beside else 0.0
        stages = pipeline.Stages("full_process", settings, cache, lambda *_, **__: None)
        started = time.perf_counter()
        result, _ = pipeline.run("full_process", _params(model), None, audio_path, stages)
        return time.perf_counter() - started, stages.info, result

    cold, info, _ = once()
    warm, in_turn = [], []
    for _ in range(runs):
        warm.append(once())
        in_turn.append(once(beside=False))
    pipeline.DIARIZE_BESIDE_SECONDS = default
    names = warm[0][1]["stage_seconds"].keys()
    return {
        "cold_s": cold,
        "warm_s": statistics.median(r[0] for r in warm),
        "in_turn_s": statistics.median(r[0] for r in in_turn),
        "same_result": all(w[2] == t[2] for w, t in zip(warm, in_turn, strict=True)),
        "stages": {n: statistics.median(r[1]["stage_seconds"][n] for r in warm) for n in names},
        "peak_mb": _peak_mb(),
        "aligner": info.get("aligner"),
        "diarizer": info.get("diarizer"),
        "batch_size": settings.batch_size,
        "threads": settings.cpu_threads or os.cpu_count(),
    }


BATCHES = [(2, 1), (8, 1), (8, 2)]
"""(batch size, parts of each batch run at once on CPU: LANES), in the order their memory grows."""


def batch_sizes(model: str, audio_path: Path, runs: int) -> dict:
    """Transcription alone at each of BATCHES, interleaved in one warm process; peak memory
    after each in the first round (BATCHES grows, so each peak is its own, but a row with more
    lanes than the last also holds the last's model: about 150 MB for base)."""
    from app.pipeline import transcribe as asr
    from app.pipeline.audio import decode_audio
    from app.pipeline.models import ModelCache
    from app.pipeline.options import AsrOptions, ModelOptions, VadOptions

    settings = _settings(model, Path(tempfile.mkdtemp(prefix="bench-"))).for_worker()
    cache, audio = ModelCache(), decode_audio(audio_path)
    seconds: dict[str, list[float]] = {}
    peaks, words = {}, {}
    for round_ in range(runs + 1):  # the first round warms up: its times are not counted
        for batch, lanes in BATCHES:
            asr.LANES = lanes
            options = ModelOptions(model=model, language="en", batch_size=batch)
            started = time.perf_counter()
            transcript, _ = asr.transcribe(
                audio, options, AsrOptions(), VadOptions(), cache=cache, settings=settings
            )
            name = f"{batch}/{lanes}"
            if round_:
                seconds.setdefault(name, []).append(time.perf_counter() - started)
            else:
                peaks[name] = _peak_mb()
            words[name] = " ".join(s["text"] for s in transcript["segments"])
    return {
        name: {
            "s": statistics.median(seconds[name]),
            "peak_mb": peaks[name],
            "same_words": words[name] == words["2/1"],
        }
        for name in peaks
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_http(model: str, audio_path: Path, runs: int) -> dict:
    """Upload-to-answer seconds through a fresh server process with one worker."""
    import httpx

    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    port = _free_port()
    env = os.environ | {
        "WHISPER_MODEL": model,
        "DB_URL": f"sqlite:///{workdir / 'http.db'}",
        "MEDIA_DIR": str(workdir / "media"),
        "MODEL_DIR": str(REPO / "models"),
        "HUB_ALLOWED": "false",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def task(path: str) -> float:
        started = time.perf_counter()
        with open(audio_path, "rb") as f:
            identifier = httpx.post(
                f"{base}{path}", params={"language": "en"}, files={"file": ("a.wav", f)},
                timeout=60,
            ).json()["identifier"]  # fmt: skip
        while True:  # long poll: the answer comes as soon as the task ends
            body = httpx.get(f"{base}/task/{identifier}?wait=60", timeout=70).json()
            if body["status"] in ("completed", "failed"):
                break
        assert body["status"] == "completed", body["error"]
        return time.perf_counter() - started

    try:
        started = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.perf_counter() - started < 600, "no start"
            time.sleep(0.2)
        ready_s = time.perf_counter() - started
        first = task("/service/transcribe")
        transcribe = [task("/service/transcribe") for _ in range(runs)]
        full = [task("/speech-to-text") for _ in range(runs)]
    finally:
        server.terminate()
        server.wait(30)
    return {
        "ready_s": ready_s,
        "first_s": first,
        "transcribe_s": statistics.median(transcribe),
        "full_s": statistics.median(full),
    }


def _audio(copies: int) -> Path:
    """sample.wav `copies` times over, as a 16 kHz wav file."""
    from app.pipeline.audio import decode_audio

    path = Path(tempfile.mkdtemp(prefix="bench-audio-")) / f"sample-x{copies}.wav"
    sf.write(path, np.tile(decode_audio(SAMPLE), copies), 16000)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=None, help="default: WHISPER_MODEL and tiny.en"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=6, help="sample.wav copies in the audio")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, model, path = args.child
        measure = {
            "old": old_service,
            "direct": direct,
            "http": through_http,
            "batch": batch_sizes,
        }[part]
        print(json.dumps(measure(model, Path(path), args.runs)))
        return
    from app.settings import Settings

    models = args.models or list(dict.fromkeys([Settings().whisper_model, "tiny.en"]))
    audio = _audio(args.copies)
    seconds = sf.info(audio).duration
    rows = []
    for model in models:
        row: dict = {"model": model}
        for part in ("old", "direct", "http", "batch"):
            print(f"{model}: {part}", file=sys.stderr, flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--child", part, model, str(audio),
                 "--runs", str(args.runs)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            row[part] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
    _print(rows, args.runs, seconds)


def _table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def _print(rows: list[dict], runs: int, seconds: float) -> None:
    print(
        f"\nsample.wav repeated to {seconds:.0f} s, language given; {os.cpu_count()} cores, "
        f"CPU, int8; medians of {runs} runs\n"
    )
    print("## Transcription per task: the old service's call against ours\n")
    table = []
    for r in rows:
        old, http = r["old"], r["http"]
        table.append([
            r["model"],
            f"{old['task_s']:.2f} ({old['load_s']:.2f})",
            f"{old['peak_mb']:.0f}",
            f"{http['transcribe_s']:.2f}",
            f"{http['transcribe_s'] / old['task_s']:.2f}×",
            f"{old['ours_s']:.2f}",
            f"{old['ratio']:.2f}×",
            f"{http['ready_s']:.1f}",
            f"{http['first_s']:.2f}",
            f"{http['first_s'] / http['transcribe_s']:.2f}×",
        ])  # fmt: skip
    _table(["model", "old service s (load s)", "old peak MB", "ours /service/transcribe s",
            "ours / old", "ours interleaved s", "ours / old interleaved", "ready after s",
            "first task s", "first / warm"], table)  # fmt: skip
    from app.pipeline.run import DIARIZE_BESIDE_SECONDS

    print(
        "## Full pipeline, ours (on CPU, diarization beside transcription and alignment up to "
        f"{DIARIZE_BESIDE_SECONDS:.0f} s of audio)\n"
    )
    table = []
    for r in rows:
        d, http = r["direct"], r["http"]
        st = d["stages"]
        table.append([
            r["model"],
            *(f"{st.get(n, 0):.2f}" for n in ("decode", "vad", "transcribe", "align", "diarize", "combine")),
            f"{d['warm_s']:.2f}",
            f"{d['warm_s'] / seconds:.3f}",
            f"{d['in_turn_s']:.2f}",
            "yes" if d["same_result"] else "no",
            f"{http['full_s']:.2f}",
            f"{100 * (http['full_s'] - d['warm_s']) / d['warm_s']:+.1f}",
            f"{d['cold_s']:.1f}",
            f"{d['peak_mb']:.0f}",
        ])  # fmt: skip
    _table(["model", "decode s", "VAD s", "transcribe s (VAD incl.)", "align s", "diarize s",
            "combine s", "total s", "RTF", "in turn s", "same result", "HTTP s", "HTTP overhead %", "cold s",
            "peak MB"], table)  # fmt: skip
    print("## Batch size: transcription alone, one warm process, interleaved\n")
    table = []
    for r in rows:
        for name, b in r["batch"].items():
            batch, lanes = name.split("/")
            table.append([
                r["model"], batch, lanes, f"{b['s']:.2f}", f"{b['peak_mb']:.0f}",
                "yes" if b["same_words"] else "no",
            ])  # fmt: skip
    _table(["model", "batch", "lanes", "transcribe s", "peak MB", "same words"], table)
    for r in rows:
        d = r["direct"]
        print(f"{r['model']}: batch {d['batch_size']}, {d['threads']} threads, aligner "
              f"{d['aligner']}, diarizer {d['diarizer']}")  # fmt: skip


if __name__ == "__main__":
    main()
