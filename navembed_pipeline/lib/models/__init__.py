"""Model registry: names → classes, imported lazily so a name costs nothing until used.

Nothing here imports torch: the classes (and ``EmbeddingModel``) load on first use, and what
callers need without a model — the names and the weight repositories to look for — is plain data.

May import: the shared leaves and ``library`` (audio decode); never the store, the engine or duplicates.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from navembed_pipeline.lib.errors import ConfigError
from navembed_pipeline.lib.models.options import DEFAULT_MUSICNN_VARIANT, ModelOptions, model_extras, musicnn_variant
from navembed_pipeline.lib.public import lazy_names

if TYPE_CHECKING:
    from navembed_pipeline.lib.models.base import EmbeddingModel

_CLASSES = {
    "muq": ("navembed_pipeline.lib.models.muq", "MuQModel"),
    "mert": ("navembed_pipeline.lib.models.mert", "MertModel"),
    "latent": ("navembed_pipeline.lib.models.latent", "LatentModel"),
    "dsp": ("navembed_pipeline.lib.models.dsp.model", "DspModel"),
    "musicnn": ("navembed_pipeline.lib.models.musicnn.model", "MusicnnModel"),
}
MODEL_NAMES: tuple[str, ...] = tuple(_CLASSES)
DEEP_MODEL_NAMES: tuple[str, ...] = ("muq", "mert", "latent", "musicnn")
# Each class's ``weights_repos``, readable without importing the class (a test keeps them equal).
WEIGHTS_REPOS: dict[str, tuple[str, ...]] = {
    "muq": ("OpenMuQ/MuQ-MuLan-large", "OpenMuQ/MuQ-large-msd-iter", "FacebookAI/xlm-roberta-base"),
    "mert": ("m-a-p/MERT-v1-330M",),
    "latent": ("SonyCSLParis/music2latent",),
    "dsp": (),
    "musicnn": ("pypi:musicnn==0.1.0",),  # a PyPI wheel converted by musicnn.weights, not a hub repo
}


def _check_name(name: str) -> None:
    if name not in _CLASSES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")


def model_class(name: str) -> "type[EmbeddingModel]":
    """The class of model ``name``; unknown names raise ``ConfigError`` listing the known ones."""
    _check_name(name)
    module, attr = _CLASSES[name]
    return getattr(import_module(module), attr)


def weights_repos(name: str) -> tuple[str, ...]:
    """The weight sets model ``name`` needs: Hugging Face repositories, or ``pypi:`` wheels (empty for
    weight-free models)."""
    _check_name(name)
    return WEIGHTS_REPOS[name]


def create_model(name: str, options: ModelOptions | None = None) -> "EmbeddingModel":
    """A new (not yet loaded) model instance."""
    return model_class(name)(options)


# ``from navembed_pipeline.lib.models import EmbeddingModel`` works too, importing torch then.
__getattr__ = lazy_names(__name__, {"EmbeddingModel": "base", "download": "weights", "weights_present": "weights",
                                    "tag_names": "musicnn.tags",  # tag_names(variant): MusiCNN's 50 tags, in order
                                    "TAGS_FIELD": "musicnn.model"})  # the field holding a model's tag scores

__all__ = ["DEEP_MODEL_NAMES", "DEFAULT_MUSICNN_VARIANT", "MODEL_NAMES", "TAGS_FIELD", "WEIGHTS_REPOS", "EmbeddingModel", "ModelOptions", "create_model",
           "download", "model_class", "model_extras", "musicnn_variant", "tag_names", "weights_present",
           "weights_repos"]
