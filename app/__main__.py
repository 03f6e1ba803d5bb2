"""`python -m app`: serve the API with uvicorn on HOST:PORT (what `make run` starts)."""

import uvicorn

from app.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        reload=settings.dev,
        log_config="uvicorn_log_conf.yaml",
        timeout_graceful_shutdown=10,
    )
