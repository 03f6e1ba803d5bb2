"""The web page at /ui: static files and what the page asks before it has a key (its task
routes, corrections and audio included, are in tasks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.api.deps import SettingsDep
from app.pipeline.options import LANGUAGES

ASSETS = Path(__file__).resolve().parent.parent / "ui"
"""The page's static files (plain ES modules and CSS, no build step), served at /ui/static."""

router = APIRouter()


@router.get("/ui", include_in_schema=False)
@router.get("/ui/task/{identifier}", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", headers={"cache-control": "no-cache"})


@router.get("/ui/config.json", include_in_schema=False)
def page_config(settings: SettingsDep) -> dict[str, Any]:
    """What the page asks before it has a key: whether it needs one, and the languages."""
    return {"auth": bool((settings.api_keys or "").strip(", ")), "languages": LANGUAGES}
