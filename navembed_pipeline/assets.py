"""Assets: the Navidrome snapshot and one bucket-partitioned embedding asset per model."""

import os
import warnings

import dagster as dg
import pandas as pd

from navembed_pipeline.lib.buckets import BUCKETS, bucket_of
from navembed_pipeline.lib.embedding_run import BucketReport, EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.progress import format_progress
from navembed_pipeline.lib.models import DEEP_MODEL_NAMES, MODEL_NAMES
from navembed_pipeline.lib.segments import track_fingerprint
from navembed_pipeline.partitions import bucket_partitions
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource

# BackfillPolicy is "beta" in Dagster 1.13 yet it is the documented way to get one run per range.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
OWNERS = ["team:navembed"]
MODEL_TITLES = {
    "muq": "MuQ-MuLan (OpenMuQ/MuQ-MuLan-large): 24 kHz, 120 s windows / 15 s hop, enriched 1536-d "
           "plus the 512-d MuLan joint text-audio vector.",
    "mert": "MERT-v1-330M: 24 kHz, 30 s windows / 5 s hop, enriched mean of hidden states (3072-d).",
    "latent": "Music2Latent: 44.1 kHz latents, real/imaginary/magnitude channels, enriched 576-d.",
    "dsp": "Weight-free spectral descriptor (log-mel, MFCC, chroma, contrast, rhythm), enriched 327-d.",
}


class EmbedConfig(dg.Config):
    """Per-run choices for an embedding asset."""

    force: bool = False
    clear_existing: bool = False
    only_failed: bool = False


@dg.asset(group_name="library", kinds={"sqlite", "pandas"}, owners=OWNERS)
def library_tracks(context: dg.AssetExecutionContext, navidrome: NavidromeResource,
                   vector_store: VectorStoreResource) -> pd.DataFrame:
    """Snapshot of the Navidrome library (present tracks only), with each track's bucket and fingerprint.

    Metadata compares it with the dsp vectors stored: how many tracks are new or changed since.
    """
    library = navidrome.library()
    rows = [{"id": t.id, "bucket": bucket_of(t.id), "path": str(t.path), "artist": t.artist, "title": t.title,
             "album": t.album, "duration_seconds": t.duration_seconds, "size": t.size,
             "updated_at": t.updated_at, "library": t.library_name, "fingerprint": track_fingerprint(t)}
            for t in library.tracks()]
    frame = pd.DataFrame(rows)
    stored = vector_store.client().fingerprints("dsp")
    new = sum(1 for r in rows if r["id"] not in stored)
    changed = sum(1 for r in rows if r["id"] in stored and stored[r["id"]] != r["fingerprint"])
    context.add_output_metadata({
        "track_count": len(rows), "new_tracks": new, "changed_tracks": changed,
        "missing_in_navidrome": library.count_missing(),
        "vanished_since_embedding": len(set(stored) - {r["id"] for r in rows}),
        "libraries": ", ".join(sorted({r["library"] for r in rows})),
    })
    return frame


def format_stages(model_name: str, seconds: dict[str, float], *, decode_workers: int) -> str:
    """Where the run's time went, one log line (decode overlaps the rest on its worker threads)."""
    return (f"{model_name} stage seconds: plan {seconds['plan']:.1f}, decode {seconds['decode']:.1f} on "
            f"{decode_workers} worker thread(s) (embedding waited {seconds['decode_wait']:.1f} for audio), "
            f"model {seconds['model']:.1f}, enrich {seconds['enrich']:.1f}, write {seconds['write']:.1f}")


def bucket_metadata(report: BucketReport) -> dict[str, object]:
    metadata: dict[str, object] = {
        "embedded": report.embedded, "skipped": report.skipped, "failed": report.failed,
        "deleted": report.deleted, "seconds": report.seconds,
        "tracks_per_second": round(report.tracks_per_second, 2),
    }
    if report.failures:
        lines = ["| track | track id | error |", "|---|---|---|"]
        lines += [f"| {name} | `{tid}` | {err.replace('|', '/')[:200]} |" for tid, name, err in report.failures]
        metadata["failures"] = dg.MetadataValue.md("\n".join(lines))
    return metadata


def build_embedding_asset(model_name: str) -> dg.AssetsDefinition:
    """The bucket-partitioned embedding asset of one model."""
    deep = model_name in DEEP_MODEL_NAMES

    @dg.asset(
        name=f"{model_name}_embeddings", partitions_def=bucket_partitions, deps=[library_tracks],
        backfill_policy=dg.BackfillPolicy.single_run(), pool="gpu" if deep else None,
        group_name="embeddings", kinds={"pytorch", "milvus"}, owners=OWNERS, output_required=False,
        description=f"{MODEL_TITLES[model_name]} Vectors of every track in the bucket, upserted into "
                    f"Milvus; unchanged tracks are skipped, unreadable ones recorded as failed.",
    )
    def _embeddings(context: dg.AssetExecutionContext, config: EmbedConfig, navidrome: NavidromeResource,
                    vector_store: VectorStoreResource, models: ModelsResource):
        if models.nice:
            os.nice(19)
        buckets = list(context.partition_keys)
        try:
            yield from _embed(context, config, model_name, buckets, navidrome, vector_store, models)
        except NavembedError as exc:
            raise dg.Failure(description=f"{model_name}: {exc}") from exc

    return _embeddings


def _embed(context: dg.AssetExecutionContext, config: EmbedConfig, model_name: str, buckets: list[str],
           navidrome: NavidromeResource, vector_store: VectorStoreResource, models: ModelsResource):
    store = vector_store.client()
    model = models.get(model_name)
    staging = None
    if config.clear_existing:
        if sorted(buckets) != list(BUCKETS):
            raise dg.Failure(description="clear_existing rebuilds the whole collection: run it over all "
                                         f"256 buckets (got {len(buckets)})")
        pending = store.pending_rebuilds(model_name)
        # A rebuild cut short (cancel, crash) is resumed: its finished tracks are skipped.
        staging = pending[-1] if pending else store.begin_rebuild(model_name, model.vector_fields)
        for stale in pending[:-1]:
            store.abort_rebuild(model_name, stale)
        context.log.info(f"clear_existing: writing to {staging} ({'resumed' if pending else 'new'}); "
                         "search keeps using the old vectors until this run completes")
    grouped = group_by_bucket(list(navidrome.library().tracks()), buckets)
    options = RunOptions(force=config.force, only_failed=config.only_failed, collection=staging,
                         decode_workers=models.decode_workers)
    run = EmbeddingRun(model=model, store=store, options=options)
    for report in run.run(grouped, on_progress=lambda progress: context.log.info(format_progress(progress))):
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=report.bucket,
                                      metadata=bucket_metadata(report))
    context.log.info(format_stages(model_name, run.stage_seconds, decode_workers=options.decode_workers))
    if staging is not None:
        store.commit_rebuild(model_name, staging)
        context.log.info(f"clear_existing: {staging} is now live")


embedding_assets = [build_embedding_asset(name) for name in MODEL_NAMES]
