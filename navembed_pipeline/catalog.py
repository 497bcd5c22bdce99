"""What the Dagster catalog shows about an embedding asset without opening a run.

Freshness: Dagster 1.13's ``FreshnessPolicy`` (the asset page's "Freshness policy" section, evaluated by
the daemon; ``freshness: enabled: true`` in dagster.yaml) rather than the older freshness asset checks,
which need a sensor of their own and show only as one more check. The window follows the reconcile
schedule: a run that did not happen within one schedule interval plus ``GRACE`` fails it.

Location: ``dagster/table_name`` (the model's Milvus collection) and ``dagster/uri`` (the Milvus server,
or the embedded server's data directory) in the definition; each materialization repeats them with the
model version, the vector dimensions and the row counts.
"""

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import dagster as dg
from dagster._utils.schedules import get_smallest_cron_interval

from navembed_pipeline.lib.models import EmbeddingModel
from navembed_pipeline.lib.store import VectorStore, collection_name

# A full reconcile of a large library may run a while past its start; 2 h of grace.
GRACE = timedelta(hours=2)
DEFAULT_RECONCILE_CRON = "0 3 * * *"


def freshness_for(cron: str) -> dg.FreshnessPolicy:
    """Fail when the newest materialization is older than the schedule's interval plus ``GRACE`` (26 h nightly)."""
    return dg.FreshnessPolicy.time_window(fail_window=get_smallest_cron_interval(cron) + GRACE)


NIGHTLY_FRESHNESS = freshness_for(DEFAULT_RECONCILE_CRON)


def definition_metadata(model_name: str) -> dict[str, object]:
    """Static metadata of the model's asset: the collection it fills."""
    return {"dagster/table_name": collection_name(model_name)}


def model_metadata(model: EmbeddingModel, store: VectorStore) -> dict[str, object]:
    """What every materialization of the model's asset repeats: model version, dimensions, location."""
    return {"model_version": model.version, "dimensions": dg.MetadataValue.json(model.vector_fields),
            "dagster/table_name": collection_name(model.name), "dagster/uri": store.uri}


def store_location(milvus_uri: str, data_dir: Path) -> str:
    """The store's URI: the configured server, else the embedded server's data directory as a file URI."""
    return milvus_uri or Path(data_dir).resolve().as_uri()


def for_deployment(assets: Sequence[dg.AssetsDefinition], *, uri: str, reconcile_cron: str) -> list[dg.AssetsDefinition]:
    """The embedding assets with this deployment's store URI and a freshness window matching its schedule."""
    policy = freshness_for(reconcile_cron)
    return list(dg.map_asset_specs(
        lambda spec: spec.replace_attributes(freshness_policy=policy).merge_attributes(metadata={"dagster/uri": uri}),
        assets))
