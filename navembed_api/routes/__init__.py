"""HTTP routers, one per concern."""

from typing import Literal

# The registry's names (navembed_pipeline.lib.models.MODEL_NAMES), spelled out so OpenAPI lists them.
ModelName = Literal["muq", "mert", "latent", "dsp", "musicnn"]
