from app.settings import Settings


def test_cpu_host_defaults_need_no_options(monkeypatch):
    monkeypatch.setattr("app.settings.cuda_available", lambda: False)
    api = Settings(_env_file=None)
    assert api.device is None  # the API never looks for a GPU: workers do
    s = api.for_worker()
    assert (s.device, s.compute_type, s.batch_size) == ("cpu", "int8", 8)
    assert s.whisper_model == "base"  # multilingual and bundled
    assert s.default_lang is None


def test_cuda_host_defaults_to_float16(monkeypatch):
    monkeypatch.setattr("app.settings.cuda_available", lambda: True)
    s = Settings(_env_file=None).for_worker()
    assert (s.device, s.compute_type, s.batch_size) == ("cuda", "float16", 8)


def test_environment_names_follow_the_seed(monkeypatch):
    monkeypatch.setenv("WHISPER_MODEL", "tiny.en")
    monkeypatch.setenv("DEFAULT_LANG", "de")
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("COMPUTE_TYPE", "float32")
    monkeypatch.setenv("DB_URL", "sqlite:///x.db")
    s = Settings(_env_file=None)
    assert (s.whisper_model, s.default_lang, s.device, s.compute_type, s.db_url) == (
        "tiny.en",
        "de",
        "cpu",
        "float32",
        "sqlite:///x.db",
    )


def test_empty_or_auto_values_mean_the_default(monkeypatch):
    monkeypatch.setenv("DEVICE", "")
    monkeypatch.setenv("DEFAULT_LANG", "auto")
    monkeypatch.setattr("app.settings.cuda_available", lambda: False)
    s = Settings(_env_file=None)
    assert s.device is None and s.for_worker().device == "cpu" and s.default_lang is None


def test_every_setting_is_documented():
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring"


def test_every_setting_is_in_the_readme_and_env_example():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme, example = (root / "README.md").read_text(), (root / ".env.example").read_text()
    for name in Settings.model_fields:
        assert name.upper() in readme, name
    assert "make run" in readme and "make test" in readme
    for line in example.splitlines():
        if line and not line.startswith("#"):
            assert line.split("=")[0].lower() in Settings.model_fields, line
