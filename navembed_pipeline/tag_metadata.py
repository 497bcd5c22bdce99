"""The musicnn asset's tags in the Dagster UI: which tags the embedded tracks carry.

Each bucket's materialization says how many of its tracks have each MusiCNN tag among their three
strongest; at the end of a run one observation of the asset says the same of the whole collection
(the library's tag distribution). Models without a ``tags`` field get nothing.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg
import numpy as np

from navembed_pipeline.lib.buckets import BUCKETS
from navembed_pipeline.lib.models import TAGS_FIELD, EmbeddingModel, musicnn_variant, tag_names
from navembed_pipeline.lib.store import VectorStore

# _LAZY: ``lib.recommend`` (~0.09 s of imports) is imported where it is used, not when every run worker
# loads the definitions (tests/api/test_import_cost.py).
LIBRARY_TOP = 10  # tags named in the observation's one-line summary


def tag_names_of(model: EmbeddingModel) -> tuple[str, ...]:
    """The tags ``model`` stores (its variant's), or () for a model without a ``tags`` field."""
    return tag_names(musicnn_variant(model.options)) if TAGS_FIELD in model.vector_fields else ()


def bucket_tag_metadata(store: VectorStore, model: str, names: Sequence[str], buckets: Iterable[str], *,
                        collection: str | None = None) -> dict[str, dict[str, object]]:
    """Per bucket: ``tag_distribution`` (markdown table) and ``top_tag``, over its stored tracks."""
    from navembed_pipeline.lib.recommend import distribution_markdown, tag_distribution  # see _LAZY
    buckets = list(buckets)
    rows = store.rows_in_buckets(model, buckets, ["track_id", "bucket", TAGS_FIELD], collection=collection)
    by_bucket: dict[str, list[Mapping[str, object]]] = defaultdict(list)
    for row in rows:
        by_bucket[str(row["bucket"])].append(row)
    out: dict[str, dict[str, object]] = {}
    for bucket in buckets:
        per_track = _tracks(by_bucket.get(bucket, ()))
        counts = tag_distribution(per_track.values(), names)
        out[bucket] = {"tag_distribution": dg.MetadataValue.md(distribution_markdown(counts, len(per_track))),
                       "top_tag": next(iter(counts), "")} if per_track else {}
    return out


def library_tag_observation(asset_key: dg.AssetKey, store: VectorStore, model: str,
                            names: Sequence[str]) -> dg.AssetObservation:
    """The whole collection's tag distribution (one pass over its ``tags``), as an observation of the asset."""
    from navembed_pipeline.lib.recommend import distribution_markdown, tag_distribution  # see _LAZY
    per_track = _tracks(store.rows_in_buckets(model, BUCKETS, ["track_id", TAGS_FIELD]))
    counts = tag_distribution(per_track.values(), names)
    summary = ", ".join(f"{tag} {n}" for tag, n in list(counts.items())[:LIBRARY_TOP])
    return dg.AssetObservation(asset_key=asset_key, metadata={
        "library_tag_distribution": dg.MetadataValue.md(distribution_markdown(counts, len(per_track))),
        "library_top_tags": summary, "tagged_tracks": len(per_track),
        "tag_counts": dg.MetadataValue.json(counts)})


def _tracks(rows: Iterable[Mapping[str, object]]) -> dict[str, np.ndarray]:
    grouped: dict[str, list[np.ndarray]] = defaultdict(list)
    for row in rows:
        grouped[str(row["track_id"])].append(np.asarray(row[TAGS_FIELD], dtype=np.float32))
    return {track: np.stack(v) for track, v in grouped.items()}

