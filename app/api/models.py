"""GET /models: the Whisper models this service can serve here, and which are loaded."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.api.deps import RuntimeDep, SettingsDep
from app.auth import owner
from app.errors import ERROR_RESPONSES
from app.pipeline.models import WHISPER_MODELS, ModelUnavailable, resolve_whisper_model

router = APIRouter(tags=["Models"], responses=ERROR_RESPONSES, dependencies=[Depends(owner)])


class ModelInfo(BaseModel):
    name: str
    available: bool
    """Whether a task can use it here now."""
    source: Literal["local", "bundled", "hub"] | None
    """Where it would be loaded from: a folder in MODEL_DIR, a registry package, or the hub."""
    loaded: bool
    """In memory now (no load time for the next task)."""
    english_only: bool


class ModelList(BaseModel):
    default: str
    """WHISPER_MODEL: used when a request names no model."""
    models: list[ModelInfo]


@router.get("/models", response_model=ModelList)
def list_models(settings: SettingsDep, runtime: RuntimeDep) -> ModelList:
    """Every model name the API accepts, plus model folders found in MODEL_DIR, with where each
    would come from. Unavailable models need a folder in MODEL_DIR or hub access."""
    local = sorted(
        str(p.parent.relative_to(settings.model_dir))
        for p in settings.model_dir.glob("**/model.bin")
        if "hub" not in p.parts
    )
    keys = [key for key in runtime.cache.loaded() if isinstance(key, tuple)]
    loaded_paths = {str(key[1]) for key in keys if key[0] == "whisper"}
    models = []
    for name in dict.fromkeys([*WHISPER_MODELS, *local]):
        try:
            path, source = resolve_whisper_model(name, settings.model_dir, settings.hub_allowed)
        except ModelUnavailable:
            path, source = None, None
        models.append(
            ModelInfo(
                name=name,
                available=source is not None,
                source=source,  # type: ignore[arg-type]
                loaded=path in loaded_paths,
                english_only=name.endswith(".en"),
            )
        )
    return ModelList(default=settings.whisper_model, models=models)
