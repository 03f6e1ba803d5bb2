"""GET /models: the Whisper models this service can serve here, and which are loaded."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.api.deps import SettingsDep, StoreDep
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
    """In memory of a live worker now (no load time for the next task there)."""
    english_only: bool


class ModelList(BaseModel):
    default: str
    """WHISPER_MODEL: used when a request names no model."""
    models: list[ModelInfo]


@router.get("/models", response_model=ModelList)
def list_models(settings: SettingsDep, store: StoreDep) -> ModelList:
    """Every model name the API accepts, plus model folders found in MODEL_DIR, with where each
    would come from. Unavailable models need a folder in MODEL_DIR or hub access."""
    local = sorted(
        str(p.parent.relative_to(settings.model_dir))
        for p in settings.model_dir.glob("**/model.bin")
        if "hub" not in p.parts
    )
    loaded = {
        m.get("name") for w in store.workers() for m in w.models if m.get("kind") == "whisper"
    }
    models = []
    for name in dict.fromkeys([*WHISPER_MODELS, *local]):
        try:
            _, source = resolve_whisper_model(name, settings.model_dir, settings.hub_allowed)
        except ModelUnavailable:
            source = None
        models.append(
            ModelInfo(
                name=name,
                available=source is not None,
                source=source,  # type: ignore[arg-type]
                loaded=name in loaded,
                english_only=name.endswith(".en"),
            )
        )
    return ModelList(default=settings.whisper_model, models=models)
