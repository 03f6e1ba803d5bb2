"""GET /models: the Whisper models this service can serve here, and which are loaded; GET
/v1/models: the same as OpenAI's API lists them."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.api.deps import SettingsDep, StoreDep
from app.api.openai import OPENAI_NAMES
from app.auth import owner
from app.errors import ERROR_RESPONSES, ServiceError
from app.pipeline.models import WHISPER_MODELS, ModelUnavailable, resolve_whisper_model
from app.settings import Settings
from app.store.tasks import TaskStore

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


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "whisperx"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


@router.get("/models", response_model=ModelList)
def list_models(settings: SettingsDep, store: StoreDep) -> ModelList:
    """Every model name the API accepts, plus model folders found in MODEL_DIR, with where each
    would come from. Unavailable models need a folder in MODEL_DIR or hub access."""
    return _models(settings, store)


@router.get("/v1/models", response_model=OpenAIModelList, tags=["OpenAI compatible"])
def list_openai_models(settings: SettingsDep, store: StoreDep) -> OpenAIModelList:
    """The models as OpenAI's API lists them (clients test a connection with it): OpenAI's
    names, which mean WHISPER_MODEL, then every model available here."""
    return OpenAIModelList(data=[OpenAIModel(id=name) for name in _openai_names(settings, store)])


@router.get("/v1/models/{model:path}", response_model=OpenAIModel, tags=["OpenAI compatible"])
def get_openai_model(model: str, settings: SettingsDep, store: StoreDep) -> OpenAIModel:
    """One of the models GET /v1/models lists; 404 for any other name."""
    if model not in _openai_names(settings, store):
        message = f"The model '{model}' is not available here: GET /v1/models lists those that are."
        raise ServiceError(404, "MODEL_NOT_FOUND", message)
    return OpenAIModel(id=model)


def _openai_names(settings: Settings, store: TaskStore) -> list[str]:
    available = [m.name for m in _models(settings, store).models if m.available]
    return list(dict.fromkeys([*OPENAI_NAMES, *available]))


def _models(settings: Settings, store: TaskStore) -> ModelList:
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
                source=source,
                loaded=name in loaded,
                english_only=name.endswith(".en"),
            )
        )
    return ModelList(default=settings.whisper_model, models=models)
