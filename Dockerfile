# CUDA image: the full production models on a GPU. Build:
#   docker build -t whisperx-service --build-arg MODELS="large-v3" --secret id=hf_token,env=HF_TOKEN .
# Models (Whisper, the wav2vec2 aligners, pyannote's gated pipeline when a token is given) are
# downloaded at build time; the container then runs with the hub switched off, so it never
# stalls on the network.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PROJECT_ENVIRONMENT=/opt/venv

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libportaudio2 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv

WORKDIR /srv
COPY pyproject.toml uv.lock ./
RUN uv python install 3.11 && uv sync --frozen --no-dev --no-install-project

RUN useradd --create-home --uid 1000 whisperx \
    && mkdir -p /data/media /models \
    && chown -R whisperx:whisperx /data /models
COPY --chown=whisperx:whisperx app ./app
COPY --chown=whisperx:whisperx uvicorn_log_conf.yaml gunicorn_logging.conf ./
USER whisperx

ENV PATH=/opt/venv/bin:$PATH \
    DB_URL=sqlite:////data/records.db \
    MEDIA_DIR=/data/media \
    MODEL_DIR=/models \
    HF_HOME=/models/huggingface \
    TORCH_HOME=/models/torch \
    NLTK_DATA=/models/nltk_data \
    HOST=0.0.0.0 \
    PORT=8000

ARG MODELS="large-v3"
ARG ALIGN_LANGUAGES="en fr de es it"
RUN --mount=type=secret,id=hf_token,uid=1000 \
    HF_TOKEN="$(cat /run/secrets/hf_token 2>/dev/null || true)" \
    python -m app.pipeline.prepare --download ${MODELS} --align ${ALIGN_LANGUAGES}

ENV HF_HUB_OFFLINE=1 \
    PYANNOTE_METRICS_ENABLED=false \
    WHISPER_MODEL=large-v3

EXPOSE 8000
VOLUME ["/data", "/models"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"

# One image, two roles. Default: the API (it never loads a model, so any number of gunicorn
# workers and containers may serve it) plus WORKERS local worker processes (default 1: one
# container runs everything); with WORKERS=0 the API alone, and `python -m app.worker` runs a
# worker (docker-compose.yaml).
CMD ["gunicorn", "app.main:app", "--worker-class", "uvicorn_worker.UvicornWorker", \
     "--workers", "2", "--bind", "0.0.0.0:8000", "--timeout", "0", "--graceful-timeout", "30", \
     "--log-config", "gunicorn_logging.conf"]
