import threading
import time
from pathlib import Path

import pytest

from app.pipeline.models import ModelCache, ModelUnavailable, resolve_whisper_model


def _fake_ct2_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.bin").write_bytes(b"x")
    (path / "config.json").write_text("{}")
    return path


def test_a_local_folder_wins_over_the_hub(tmp_path):
    _fake_ct2_dir(tmp_path / "small")
    assert resolve_whisper_model("small", tmp_path, hub_allowed=True) == (
        str(tmp_path / "small"),
        "local",
    )


def test_a_path_to_a_model_folder_is_accepted(tmp_path):
    folder = _fake_ct2_dir(tmp_path / "anywhere" / "my-model")
    assert resolve_whisper_model(str(folder), tmp_path, hub_allowed=False) == (str(folder), "local")


def test_a_model_that_cannot_be_served_fails_fast_saying_what_to_do(tmp_path):
    started = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        resolve_whisper_model("large-v3", tmp_path, hub_allowed=False)
    assert time.perf_counter() - started < 1
    message = str(err.value)
    assert str(tmp_path / "large-v3") in message and "HF_HUB_OFFLINE" in message
    assert "tiny.en" in message and "base" in message


def test_the_cache_loads_each_key_once_even_under_concurrency():
    cache, calls = ModelCache(), []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("k", load))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert cache.loaded() == ["k"]


def test_idle_models_are_released_and_reloaded_on_demand():
    cache = ModelCache(idle_seconds=0.01)
    first = cache.get("k", object)
    time.sleep(0.03)
    assert cache.release_idle() == ["k"]
    assert cache.loaded() == []
    assert cache.get("k", object) is not first


def test_models_are_kept_when_no_idle_time_is_set():
    cache = ModelCache(idle_seconds=0)
    cache.get("k", object)
    assert cache.release_idle() == []
    assert cache.loaded() == ["k"]
