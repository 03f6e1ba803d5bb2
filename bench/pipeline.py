"""Pipeline benchmark: per-stage seconds, real-time factor, peak memory, model-load share of a
second task, and the service overhead (HTTP API vs a direct pipeline call) on sample.wav.

    uv run python bench/pipeline.py [--models base tiny.en] [--runs 3]

Each model runs in its own process (so peak memory is its own): one cold task, then `--runs`
warm direct calls, then the same audio `--runs` times through a real uvicorn server on loopback.
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
        model=ModelOptions(model=model, batch_size=8),
        asr=AsrOptions(),
        vad=VadOptions(),
        alignment=AlignmentOptions(),
        diarization=DiarizationOptions(),
    )


def child(model: str, runs: int) -> dict:
    """Everything measured for one model, in this process."""
    from app.pipeline.audio import decode_audio
    from app.pipeline.models import ModelCache
    from app.pipeline.run import Stages, run

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = _settings(model, workdir).for_worker()
    cache = ModelCache()
    seconds = decode_audio(SAMPLE).size / 16000

    def direct() -> tuple[float, dict]:
        """Decode the file and run the stages, as a script calling the pipeline would."""
        stages = Stages("full_process", settings, cache, lambda *_, **__: None)
        started = time.perf_counter()
        run("full_process", _params(model), None, SAMPLE, stages)
        return time.perf_counter() - started, stages.info

    loads_before = sum(cache.load_seconds.values())
    cold, cold_info = direct()
    cold_load = sum(cache.load_seconds.values()) - loads_before
    warm_runs = []
    for _ in range(runs):
        loads_before = sum(cache.load_seconds.values())
        total, info = direct()
        warm_runs.append((total, info, sum(cache.load_seconds.values()) - loads_before))
    warm = statistics.median(r[0] for r in warm_runs)
    stage_names = warm_runs[0][1]["stage_seconds"].keys()
    stages = {
        s: statistics.median(r[1]["stage_seconds"][s] for r in warm_runs) for s in stage_names
    }
    second_load_share = warm_runs[0][2] / warm_runs[0][0]

    http_runs = _through_http(model, workdir, runs)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": model,
        "audio_s": seconds,
        "cold_s": cold,
        "cold_load_s": cold_load,
        "warm_s": warm,
        "stages": stages,
        "second_task_load_share": second_load_share,
        "http_s": statistics.median(http_runs),
        "peak_mb": peak_mb,
        "aligner": cold_info.get("aligner"),
        "diarizer": cold_info.get("diarizer"),
        "device": settings.device,
        "compute_type": settings.compute_type,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _through_http(model: str, workdir: Path, runs: int) -> list[float]:
    """Submit-to-completed seconds through a real server process, after one warm-up task."""
    import httpx

    port = _free_port()
    env = os.environ | {
        "WHISPER_MODEL": model,
        "DB_URL": f"sqlite:///{workdir / 'http.db'}",
        "MEDIA_DIR": str(workdir / "http-media"),
        "MODEL_DIR": str(REPO / "models"),
        "HUB_ALLOWED": "false",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        timings = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            with open(SAMPLE, "rb") as f:
                identifier = httpx.post(
                    f"{base}/speech-to-text", files={"file": ("sample.wav", f)}, timeout=60
                ).json()["identifier"]
            while True:  # long poll: the answer comes as soon as the task ends
                body = httpx.get(f"{base}/task/{identifier}?wait=60", timeout=70).json()
                if body["status"] in ("completed", "failed"):
                    break
            assert body["status"] == "completed", body["error"]
            timings.append(time.perf_counter() - started)
        return timings[1:]  # the first one loads the models
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=None, help="default: WHISPER_MODEL and tiny.en"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.runs)))
        return
    from app.settings import Settings

    models = args.models or list(dict.fromkeys([Settings().whisper_model, "tiny.en"]))
    rows = []
    for model in models:
        out = subprocess.run(
            [sys.executable, __file__, "--child", model, "--runs", str(args.runs)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    _print(rows, args.runs)


def _print(rows: list[dict], runs: int) -> None:
    cpu = f"{os.cpu_count()} cores"
    print(f"\nsample.wav (30 s, 2 speakers); {cpu}; medians of {runs} warm runs\n")
    head = (
        "model",
        "transcribe s",
        "align s",
        "diarize s",
        "combine s",
        "total s",
        "RTF",
        "cold s (load s)",
        "2nd task load %",
        "HTTP s",
        "overhead %",
        "peak MB",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        st = r["stages"]
        overhead = 100 * (r["http_s"] - r["warm_s"]) / r["warm_s"]
        cells = (
            r["model"],
            f"{st.get('transcribe', 0):.2f}",
            f"{st.get('align', 0):.2f}",
            f"{st.get('diarize', 0):.2f}",
            f"{st.get('combine', 0):.3f}",
            f"{r['warm_s']:.2f}",
            f"{r['warm_s'] / r['audio_s']:.3f}",
            f"{r['cold_s']:.1f} ({r['cold_load_s']:.1f})",
            f"{100 * r['second_task_load_share']:.1f}",
            f"{r['http_s']:.2f}",
            f"{overhead:+.1f}",
            f"{r['peak_mb']:.0f}",
        )
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        print(
            f"\n{r['model']}: device {r['device']} {r['compute_type']}, aligner {r['aligner']}, diarizer {r['diarizer']}"
        )


if __name__ == "__main__":
    main()
