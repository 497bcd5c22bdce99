"""The API's models: one instance per name, created on first use, loaded lazily, unloaded when idle."""

import threading
from typing import TYPE_CHECKING, Any

from navembed_pipeline.lib.errors import WeightsUnreadableError
from navembed_pipeline.lib.models import MODEL_NAMES, ModelOptions, create_model, weights_present, weights_repos

if TYPE_CHECKING:
    from navembed_pipeline.lib.models import EmbeddingModel


class ModelPool:
    """Shared by the upload socket and ``/embed_text``; ``close()`` releases every model."""

    def __init__(self, options: ModelOptions) -> None:
        self.options = options
        self._models: dict[str, "EmbeddingModel"] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> "EmbeddingModel":
        """The model ``name`` (unknown names raise ``ConfigError`` listing the known ones)."""
        with self._lock:
            if name not in self._models:
                self._models[name] = create_model(name, self.options)
            return self._models[name]

    def weights_present(self, name: str) -> bool:
        return weights_present(weights_repos(name), self.options.models_dir)

    def _weights(self, name: str) -> dict[str, Any]:
        """``weights_present``, and ``weights_error`` when they are there but cannot be read."""
        try:
            return {"weights_present": self.weights_present(name)}
        except WeightsUnreadableError as exc:
            return {"weights_present": True, "weights_error": str(exc)}

    def describe(self, name: str) -> dict[str, Any]:
        """What ``GET /models`` says about one model (creating it loads nothing)."""
        model = self.get(name)
        cls = type(model)
        return {
            "name": name,
            "dimension": model.dimension,
            "vector_fields": model.vector_fields,
            "sample_rate": cls.sample_rate,
            "window_seconds": cls.window_seconds,
            "hop_seconds": cls.hop_seconds,
            "supports_text": model.supports_text,
            "loaded": model.is_loaded,
            "device": str(model.device),
            **self._weights(name),
            "weights_repos": list(cls.weights_repos),
            "licence": cls.licence,
        }

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in MODEL_NAMES]

    def loaded(self) -> dict[str, bool]:
        with self._lock:
            return {name: model.is_loaded for name, model in self._models.items()}

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.shutdown()

