"""Each model's write generation, kept in the store: how a reader knows a writer's rows are there to read.

A writer that has finished writing a model's rows (an embedding run, each worker of a fanned-out run)
*publishes*: it upserts the model's row of the small ``navembed_generations`` collection with a fresh
random token. A reader (the API's vector cache) notes the token before it scans a model's vectors; a
different token later means "reload now", whatever changed (rows added, deleted, or rewritten in place by
a forced re-embed), and the same token means its copy is current, so an unchanged store is never rescanned.

The record lives in the store, not in a data dir, because the writers of a fanned-out run may be on
other machines that share only the store. A random token rather than a counter: two workers that finish
at once each write their own, with no read-modify-write to race.
"""

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pymilvus import DataType, MilvusClient

from navembed_pipeline.lib.errors import StoreError
from navembed_pipeline.lib.store.client import MilvusConnection
from navembed_pipeline.lib.store.schema import PLACEHOLDER_FIELD, PLACEHOLDER_VECTOR, TAG_MAX_BYTES, quote

GENERATIONS_COLLECTION = "navembed_generations"
TOKEN_MAX_BYTES = 64
LOGGER = logging.getLogger("navembed.store")


def generations_schema() -> Any:
    """One row per model: its latest token and when it was published (Milvus needs a vector field)."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("model", DataType.VARCHAR, is_primary=True, max_length=TAG_MAX_BYTES)
    schema.add_field("token", DataType.VARCHAR, max_length=TOKEN_MAX_BYTES)
    schema.add_field("published_at", DataType.INT64)  # unix milliseconds
    schema.add_field(PLACEHOLDER_FIELD, DataType.FLOAT_VECTOR, dim=len(PLACEHOLDER_VECTOR))
    return schema


def generations_index(client: MilvusClient) -> Any:
    index = client.prepare_index_params()
    index.add_index(PLACEHOLDER_FIELD, index_type="FLAT", metric_type="L2")
    return index


class StoreGenerations:
    """Publish and read the models' generation tokens in the Milvus server behind ``_milvus``."""

    _milvus: MilvusConnection

    def publish(self, models: Iterable[str]) -> dict[str, str]:
        """Give each of ``models`` a new generation (after its writes are complete); the new tokens."""
        tokens = {model: uuid.uuid4().hex for model in dict.fromkeys(models)}
        if not tokens:
            return {}
        self._ensure_generations()
        now = int(time.time() * 1000)
        self._milvus.upsert(GENERATIONS_COLLECTION, [
            {"model": model, "token": token, "published_at": now, PLACEHOLDER_FIELD: PLACEHOLDER_VECTOR}
            for model, token in tokens.items()])
        LOGGER.info("published new store generations for %s", ", ".join(tokens))
        return tokens

    def generations(self, models: Iterable[str] | None = None) -> Mapping[str, str]:
        """The current token of each model (of ``models``) that has ever been published."""
        if not self._milvus.exists(GENERATIONS_COLLECTION):
            return {}
        wanted = None if models is None else sorted(set(models))
        expr = 'model != ""' if wanted is None else f"model in [{', '.join(quote(m) for m in wanted)}]"
        rows = self._milvus.query(GENERATIONS_COLLECTION, expr, ["model", "token"])
        return {row["model"]: row["token"] for row in rows}

    def _ensure_generations(self) -> None:
        if self._milvus.exists(GENERATIONS_COLLECTION):
            return
        try:
            self._milvus.create(GENERATIONS_COLLECTION, generations_schema(), generations_index)
        except StoreError:  # another writer created it first
            if not self._milvus.exists(GENERATIONS_COLLECTION):
                raise
