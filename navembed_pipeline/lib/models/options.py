"""``ModelOptions``: how a model runs. Plain data (no torch), so settings and the API can build it
without importing a deep-learning framework."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navembed_pipeline.lib.errors import ConfigError

DEFAULT_IDLE_UNLOAD_SECONDS = 360.0
DEVICES = ("auto", "cuda", "cpu")
DTYPE_NAMES = ("float32", "float16", "bfloat16")
MERT_LAYERS_OPTION = "mert_layers"
MERT_LAYERS_PATTERN = r"^(mean|all|\d+(\s*,\s*\d+)*)$"
MUSICNN_VARIANT_OPTION = "musicnn_variant"
MUSICNN_VARIANT_PATTERN = r"^(MSD|MTT)_musicnn$"
DEFAULT_MUSICNN_VARIANT = "MSD_musicnn"


def model_extras(*, mert_layers: str = "mean", musicnn_variant: str = DEFAULT_MUSICNN_VARIANT) -> dict[str, Any]:
    """``ModelOptions.extra`` from the settings: only what differs from the models' defaults."""
    extra: dict[str, Any] = {} if mert_layers == "mean" else {MERT_LAYERS_OPTION: mert_layers}
    if musicnn_variant != DEFAULT_MUSICNN_VARIANT:
        extra[MUSICNN_VARIANT_OPTION] = musicnn_variant
    return extra


def musicnn_variant(options: "ModelOptions") -> str:
    """The MusiCNN checkpoint ``options`` choose (``MSD_musicnn`` unless ``extra`` says otherwise)."""
    return str(options.extra.get(MUSICNN_VARIANT_OPTION, DEFAULT_MUSICNN_VARIANT))


@dataclass(frozen=True)
class ModelOptions:
    """How a model runs. ``models_dir`` holds downloaded weights (``<org>--<name>/`` per repo);
    ``extra`` holds model-specific choices (e.g. ``mert_layers``)."""

    device: str = "auto"
    dtype: str = "float32"
    idle_unload_seconds: float = DEFAULT_IDLE_UNLOAD_SECONDS
    batch_size: int = 4
    models_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(f"dtype must be one of {DTYPE_NAMES}, got {self.dtype!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
