"""Model registry: names → classes, imported lazily so a name costs nothing until used."""

from importlib import import_module

from navembed_pipeline.lib.errors import ConfigError
from navembed_pipeline.lib.models.base import EmbeddingModel, ModelOptions

_CLASSES = {
    "muq": ("navembed_pipeline.lib.models.muq", "MuQModel"),
    "mert": ("navembed_pipeline.lib.models.mert", "MertModel"),
    "latent": ("navembed_pipeline.lib.models.latent", "LatentModel"),
    "dsp": ("navembed_pipeline.lib.models.dsp", "DspModel"),
}
MODEL_NAMES: tuple[str, ...] = tuple(_CLASSES)
DEEP_MODEL_NAMES: tuple[str, ...] = ("muq", "mert", "latent")


def model_class(name: str) -> type[EmbeddingModel]:
    """The class of model ``name``; unknown names raise ``ConfigError`` listing the known ones."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    module, attr = _CLASSES[name]
    return getattr(import_module(module), attr)


def create_model(name: str, options: ModelOptions | None = None) -> EmbeddingModel:
    """A new (not yet loaded) model instance."""
    return model_class(name)(options)


__all__ = ["DEEP_MODEL_NAMES", "MODEL_NAMES", "EmbeddingModel", "ModelOptions", "create_model", "model_class"]
