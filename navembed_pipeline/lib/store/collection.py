"""The vector store's collections: one per model, behind a logical name that rebuilds move in one step.

Rebuilds never leave readers without vectors: ``begin_rebuild`` creates a fresh physical
collection the run writes into, the logical name (an alias) keeps answering from the old one, and
``commit_rebuild`` moves the alias in one step before dropping the old collection.
"""

import logging
from collections.abc import Mapping

from navembed_pipeline.lib.errors import ConfigError, StoreError
from navembed_pipeline.lib.store.client import MilvusConnection
from navembed_pipeline.lib.store.schema import (collection_name, embedding_index, embedding_schema, is_physical_of,
                                                new_physical_name, vector_dims)

LOGGER = logging.getLogger("navembed.store")


class StoreCollections:
    """Create, check and rebuild each model's collection in the Milvus server at ``uri``.

    ``collection=`` arguments name a rebuild's staging collection; ``_target`` resolves them.
    """

    uri: str
    max_dimension: int | None
    _milvus: MilvusConnection

    def ensure_collection(
        self, model: str, vector_fields: Mapping[str, int], *, collection: str | None = None
    ) -> str:
        """Create the model's collection if missing; return the physical collection behind it.

        Raises StoreError if it exists with other vector fields or dimensions: switching needs a
        rebuild. With ``collection`` (a staging collection) it only checks that one.
        """
        self._check_dimensions(model, vector_fields)
        logical = collection_name(model)
        if collection not in (None, logical):
            target = self._target(model, collection)
            self._check_fields(logical, target, vector_fields)
            return target
        current = self._milvus.resolve(logical)
        if current is None:
            physical = self._create_physical(logical, vector_fields)
            try:
                self._milvus.call("create alias", logical, lambda c: c.create_alias(physical, logical))
                return physical
            except StoreError:  # another process created it first: use theirs
                self._milvus.drop(physical)
                current = self._milvus.resolve(logical)
                if current is None:
                    raise
        self._check_fields(logical, current, vector_fields)
        return current

    def needs_rebuild(self, model: str, vector_fields: Mapping[str, int]) -> bool:
        """True when the model's live collection holds other vector fields or dimensions than
        ``vector_fields`` (a model upgrade changed them): only a full rebuild can switch it."""
        current = self._milvus.resolve(collection_name(model))
        return current is not None and self._vector_dims(current) != dict(vector_fields)

    def begin_rebuild(self, model: str, vector_fields: Mapping[str, int]) -> str:
        """Create an empty staging collection for a full re-embed; readers keep the old one."""
        self._check_dimensions(model, vector_fields)
        staging = self._create_physical(collection_name(model), vector_fields)
        LOGGER.info("rebuild of %s writes into %s", collection_name(model), staging)
        return staging

    def commit_rebuild(self, model: str, staging: str) -> None:
        """Point the model's logical name at ``staging`` in one step, then drop the old data."""
        logical = collection_name(model)
        self._check_staging(logical, staging)
        current = self._milvus.resolve(logical)
        if current == staging:
            return
        if current is None:
            self._milvus.call("create alias", logical, lambda c: c.create_alias(staging, logical))
        elif current == logical:
            # A plain collection under the logical name (an older install) cannot be aliased
            # over; it is dropped first, so readers miss this model for a moment, once.
            self._milvus.drop(logical)
            self._milvus.call("create alias", logical, lambda c: c.create_alias(staging, logical))
        else:
            self._milvus.call("alter alias", logical, lambda c: c.alter_alias(staging, logical))
            self._milvus.drop(current)
        LOGGER.info("rebuild of %s committed: now %s", logical, staging)

    def abort_rebuild(self, model: str, staging: str | None = None) -> list[str]:
        """Drop ``staging`` (or every pending one); the collection readers use is never touched."""
        pending = self.pending_rebuilds(model)
        if staging is not None:
            if staging not in pending:
                raise StoreError(f"{staging!r} is not a pending rebuild of {model!r} at {self.uri}.")
            pending = [staging]
        for name in pending:
            self._milvus.drop(name)
        return pending

    def pending_rebuilds(self, model: str) -> list[str]:
        """Physical collections of the model that readers do not use (staging or leftovers)."""
        logical = collection_name(model)
        current = self._milvus.resolve(logical)
        names = self._milvus.collections()
        return sorted(n for n in names if is_physical_of(n, logical) and n != current)

    # ── internals ───────────────────────────────────────────────────────────

    def _check_dimensions(self, model: str, vector_fields: Mapping[str, int]) -> None:
        """Refuse, before anything is created, vectors longer than this server accepts."""
        longest = max(vector_fields.values(), default=0)
        if self.max_dimension is not None and longest > self.max_dimension:
            raise ConfigError(
                f"model {model!r} produces {longest:,}-d vectors but the Milvus server at {self.uri} accepts at "
                f"most {self.max_dimension:,} dimensions (Milvus standalone/distributed). For mert set "
                "NAVEMBED_MERT_LAYERS to 'mean' (3,072-d) or a list of layers, or leave NAVEMBED_MILVUS_URI "
                "empty to use the embedded Milvus Lite store, which has no cap.")

    def _target(self, model: str, collection: str | None) -> str:
        logical = collection_name(model)
        if collection is None or collection == logical:
            return logical
        self._check_staging(logical, collection)
        return collection

    def _vector_dims(self, target: str) -> dict[str, int]:
        description = self._milvus.describe(target)
        if description is None:
            raise StoreError(f"Milvus at {self.uri} has no collection {target!r}; "
                             "the pipeline creates it (ensure_collection) before writing.")
        return vector_dims(description)

    def _create_physical(self, logical: str, vector_fields: Mapping[str, int]) -> str:
        physical = new_physical_name(logical)
        schema = embedding_schema(vector_fields)
        self._milvus.create(physical, schema, lambda c: embedding_index(c, vector_fields))
        return physical

    def _check_fields(self, logical: str, physical: str, wanted: Mapping[str, int]) -> None:
        found = self._vector_dims(physical)
        if found != dict(wanted):
            raise StoreError(
                f"Collection {logical!r} at {self.uri} holds vectors {found}, but the model "
                f"produces {dict(wanted)}: re-embed everything (clear existing) to switch."
            )

    def _check_staging(self, logical: str, staging: str) -> None:
        if not is_physical_of(staging, logical):
            raise StoreError(f"{staging!r} is not a physical collection of {logical!r}.")
        if self._milvus.resolve(staging) != staging:
            raise StoreError(f"Milvus at {self.uri} has no collection {staging!r}.")
