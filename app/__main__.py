"""`python -m app` (`make run`): the API on HOST:PORT. The API, however it is started (this,
`uvicorn app.main:app`, gunicorn), runs WORKERS local worker processes beside it
(app/worker/supervisor.py); WORKERS=0 serves the API alone."""

import uvicorn

from app.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        reload=settings.dev,
        log_config="uvicorn_log_conf.yaml",
        timeout_graceful_shutdown=10,
    )
