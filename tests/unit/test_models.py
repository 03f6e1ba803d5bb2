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
    cache, calls, results = ModelCache(), [], []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return object()

    def use():
        with cache.use(("whisper", "k"), load) as model:
            results.append(model)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert cache.loaded() == [("whisper", "k")]


def test_a_model_has_one_user_at_a_time_and_is_never_released_in_use():
    cache, inside, overlaps = ModelCache(idle_seconds=0.01), [], []

    def use():
        with cache.use(("whisper", "k"), object):
            overlaps.append(len(inside))
            inside.append(1)
            time.sleep(0.03)
            assert cache.release_idle() == []
            inside.pop()

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [0, 0, 0, 0]


def test_a_failed_load_is_not_kept_and_is_tried_again():
    cache = ModelCache()

    def fail():
        raise ModelUnavailable("not here")

    with pytest.raises(ModelUnavailable), cache.use(("aligner", "x"), fail):
        pass
    assert cache.loaded() == []
    with cache.use(("aligner", "x"), lambda: "loaded") as model:
        assert model == "loaded"


def test_idle_models_are_released_and_reloaded_on_demand():
    cache = ModelCache(idle_seconds=0.01)
    with cache.use(("whisper", "k"), object) as first:
        pass
    time.sleep(0.03)
    assert cache.release_idle() == [("whisper", "k")]
    assert cache.loaded() == []
    with cache.use(("whisper", "k"), object) as second:
        assert second is not first


def test_models_are_kept_when_no_idle_time_is_set():
    cache = ModelCache(idle_seconds=0)
    with cache.use(("whisper", "k"), object):
        pass
    assert cache.release_idle() == []
    assert cache.loaded() == [("whisper", "k")]


def test_loaded_models_are_described_without_their_key_layout():
    cache = ModelCache()
    for key in [("whisper", "base", "cpu", "int8", 0, 4), ("aligner", "pocketsphinx:en-us"),
                ("aligner", "wav2vec2:X", "cpu", None, "en")]:  # fmt: skip
        with cache.use(key, object):
            pass
    assert cache.describe() == [
        {"kind": "whisper", "name": "base", "device": "cpu", "compute_type": "int8"},
        {"kind": "aligner", "name": "pocketsphinx:en-us"},
        {"kind": "aligner", "name": "wav2vec2:X", "device": "cpu"},
    ]
