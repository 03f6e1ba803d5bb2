"""GET /models, preloading at start-up and releasing idle models."""

from __future__ import annotations

import time

from app.pipeline.models import ModelCache
from tests.e2e.conftest import service


def _by_name(client) -> dict[str, dict]:
    return {m["name"]: m for m in client.get("/models").json()["models"]}


def test_models_lists_what_can_be_served_here(settings, model_cache, tmp_path):
    custom = tmp_path / "models" / "my-finetune"
    custom.mkdir(parents=True)
    settings.model_dir = tmp_path / "models"
    (custom / "model.bin").write_bytes(b"x")
    (custom / "config.json").write_text("{}")
    with service(settings, model_cache) as client:
        body = client.get("/models").json()
        models = {m["name"]: m for m in body["models"]}
    assert body["default"] == "base"
    assert models["base"] | {"loaded": False} == {
        "name": "base",
        "available": True,
        "source": "bundled",
        "loaded": False,
        "english_only": False,
    }
    assert models["tiny.en"]["source"] == "bundled" and models["tiny.en"]["english_only"]
    assert models["large-v3"] == {
        "name": "large-v3",
        "available": False,
        "source": None,
        "loaded": False,
        "english_only": False,
    }
    assert models["my-finetune"]["source"] == "local" and models["my-finetune"]["available"]


def test_preloaded_model_is_loaded_at_start_and_released_when_idle(settings):
    settings.preload_models = True
    settings.model_idle_seconds = 2
    cache = ModelCache(idle_seconds=2)  # its own cache: the shared one must keep its models
    with service(settings, cache) as client:
        assert _by_name(client)["base"]["loaded"]
        deadline = time.monotonic() + 20
        while _by_name(client)["base"]["loaded"]:
            assert time.monotonic() < deadline, "the idle model was never released"
            time.sleep(0.5)
        assert client.get("/health/ready").json()["models_loaded"] == []
