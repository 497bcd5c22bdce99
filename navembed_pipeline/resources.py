"""Thin Dagster resources over lib: the Navidrome reader, the vector store and the models."""

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from navembed_pipeline.lib.duplicates import FingerprintStore
from navembed_pipeline.lib.engine import TrackFingerprinter
from navembed_pipeline.lib.library import NavidromeLibrary, parse_path_map
from navembed_pipeline.lib.models import DEFAULT_MUSICNN_VARIANT, EmbeddingModel, ModelOptions, create_model, model_extras
from navembed_pipeline.lib.store import (DEFAULT_GRACE_HOURS, DEFAULT_MAX_SHARE, STANDALONE_MAX_DIM, DeletionGuard,
                                         DeletionPolicy, FailureLog, MissingLog, VectorStore, ensure_running)


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
    fingerprints_db: str = ""  # SQLite file of acoustic fingerprints; empty = no fingerprinting
    failures_db: str = ""  # SQLite failure log; empty = a private in-memory log (tests and tools only)
    missing_db: str = ""  # tombstones and refused deletions; empty = beside failures_db (in memory without it)
    deletion_grace_hours: float = DEFAULT_GRACE_HOURS
    deletion_max_share: float = DEFAULT_MAX_SHARE

    def deletion_guard(self, library: NavidromeLibrary, *, confirmed: bool = False) -> DeletionGuard:
        """The guard over this store's deletions: missing files keep their vectors, no mass deletions."""
        log = MissingLog(Path(self.missing_db)) if self.missing_db else MissingLog.beside(self.failures_db)
        policy = DeletionPolicy(grace_seconds=self.deletion_grace_hours * 3600, max_share=self.deletion_max_share)
        return DeletionGuard(library, log, policy, confirmed=confirmed)

    def fingerprinter(self) -> TrackFingerprinter | None:
        """Keeps library tracks' Chromaprint fingerprints current (None when no database is configured)."""
        if not self.fingerprints_db:
            return None
        failures = FailureLog(Path(self.failures_db)) if self.failures_db else None
        return TrackFingerprinter(FingerprintStore(Path(self.fingerprints_db)), failures)

    def client(self) -> VectorStore:
        uri = self.uri or ensure_running(Path(self.data_dir))
        failures = FailureLog(Path(self.failures_db)) if self.failures_db else None
        # A configured URI is a Milvus server (standalone/distributed, capped); else the embedded Lite one.
        cap = STANDALONE_MAX_DIM if self.uri else None
        return VectorStore(uri, token=self.token or None, failure_log=failures, max_dimension=cap)


class ModelsResource(dg.ConfigurableResource):
    """The GPU (or CPU) models: created on first use, loaded lazily, unloaded when the run ends."""

    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 4
    idle_unload_seconds: float = 360.0
    models_dir: str = ""
    decode_workers: int = 1  # 0: automatic (engine.run.decode_workers_for)
    decode_processes: bool | None = None  # None: worker processes for runs of 16 tracks or more
    write_batch_tracks: int = 32  # tracks per store write; a crash redoes at most this many
    progress_interval: float = 5.0  # most seconds between progress log lines (each is a Dagster event)
    mert_layers: str = "mean"  # MERT's vector: 'mean' (3,072-d), 'all' (76,800-d) or hidden-state indices
    musicnn_variant: str = DEFAULT_MUSICNN_VARIANT  # MusiCNN's weights: MSD_musicnn or MTT_musicnn
    nice: bool = False

    _models: dict[str, EmbeddingModel] = PrivateAttr(default_factory=dict)

    def options(self) -> ModelOptions:
        """The configured options every model of this resource is built with (also for version checks)."""
        return ModelOptions(device=self.device, dtype=self.dtype, batch_size=self.batch_size,
                            idle_unload_seconds=self.idle_unload_seconds,
                            models_dir=Path(self.models_dir) if self.models_dir else None,
                            extra=model_extras(mert_layers=self.mert_layers,
                                               musicnn_variant=self.musicnn_variant))

    def get(self, name: str) -> EmbeddingModel:
        if name not in self._models:
            self._models[name] = create_model(name, self.options())
        return self._models[name]

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for model in self._models.values():
            model.shutdown()
        self._models.clear()
