"""Thin Dagster resources over lib: the Navidrome reader, the vector store and the models."""

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from navembed_pipeline.lib.milvus_server import ensure_running
from navembed_pipeline.lib.models import create_model
from navembed_pipeline.lib.models.base import EmbeddingModel, ModelOptions
from navembed_pipeline.lib.navidrome import NavidromeLibrary, parse_path_map
from navembed_pipeline.lib.store import VectorStore


class NavidromeResource(dg.ConfigurableResource):
    """Navidrome's database, opened read-only."""

    db_path: str
    path_map: str = ""

    def library(self) -> NavidromeLibrary:
        return NavidromeLibrary(Path(self.db_path), path_map=parse_path_map(self.path_map) or None)


class VectorStoreResource(dg.ConfigurableResource):
    """Milvus by URI; with no URI, the embedded Milvus Lite server under ``data_dir`` (started on demand)."""

    uri: str = ""
    token: str = ""
    data_dir: str = "var/milvus"

    def client(self) -> VectorStore:
        uri = self.uri or ensure_running(Path(self.data_dir))
        return VectorStore(uri, token=self.token or None)


class ModelsResource(dg.ConfigurableResource):
    """The GPU (or CPU) models: created on first use, loaded lazily, unloaded when the run ends."""

    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 4
    idle_unload_seconds: float = 360.0
    models_dir: str = ""
    decode_workers: int = 1
    nice: bool = False

    _models: dict[str, EmbeddingModel] = PrivateAttr(default_factory=dict)

    def get(self, name: str) -> EmbeddingModel:
        if name not in self._models:
            options = ModelOptions(device=self.device, dtype=self.dtype, batch_size=self.batch_size,
                                   idle_unload_seconds=self.idle_unload_seconds,
                                   models_dir=Path(self.models_dir) if self.models_dir else None)
            self._models[name] = create_model(name, options)
        return self._models[name]

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for model in self._models.values():
            model.shutdown()
        self._models.clear()
