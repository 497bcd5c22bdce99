"""Assets: the Navidrome snapshot and one bucket-partitioned embedding asset per model."""

import os
import warnings

import dagster as dg
import pandas as pd

from navembed_pipeline.lib.buckets import BUCKETS, bucket_of
from navembed_pipeline.lib.engine import (BucketReport, EmbeddingRun, RunOptions, Utilisation, group_by_bucket,
                                          run_ahead_batches)
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.progress import format_progress
from navembed_pipeline.lib.runs import asset_name
from navembed_pipeline.lib.models import DEEP_MODEL_NAMES, MODEL_NAMES
from navembed_pipeline.lib.library import track_fingerprint
from navembed_pipeline.catalog import NIGHTLY_FRESHNESS, definition_metadata, model_metadata
from navembed_pipeline.checks import (DELETIONS_CHECK, TRACKS_CHECK, EmbeddingChecks, deletions_result,
                                      embedding_check_specs, run_checks_alone)
from navembed_pipeline.partitions import bucket_partitions
from navembed_pipeline.run_explain import explain_run
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource

# BackfillPolicy is "beta" in Dagster 1.13 yet it is the documented way to get one run per range.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
OWNERS = ["team:navembed"]
MODEL_TITLES = {
    "muq": "MuQ-MuLan (OpenMuQ/MuQ-MuLan-large): 24 kHz, 120 s windows / 15 s hop, enriched 1536-d "
           "plus the 512-d MuLan joint text-audio vector.",
    "mert": "MERT-v1-330M: 24 kHz, 30 s windows / 5 s hop, enriched mean of hidden states (3072-d).",
    "latent": "Music2Latent: 44.1 kHz latents, real/imaginary/magnitude channels, enriched 576-d.",
    "dsp": "Weight-free descriptor v2 (mel shape, chroma, band flatness, onsets, tempo; silence left out), 273-d.",
}


class EmbedConfig(dg.Config):
    """Per-run choices for an embedding asset."""

    force: bool = False
    clear_existing: bool = False
    only_failed: bool = False
    confirm_deletions: bool = False  # delete what the deletion guard refused (a mass deletion), this run only


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


def format_stages(model_name: str, seconds: dict[str, float], *, utilisation: Utilisation | None = None) -> str:
    """Where the run's time went, one log line (decode overlaps the rest on its worker threads),
    and with ``utilisation`` how busy each stage kept its threads and the cores."""
    line = (f"{model_name} stage seconds: plan {seconds['plan']:.1f}, decode {seconds['decode']:.1f} on "
            f"{_decoders(utilisation)} (embedding waited {seconds['decode_wait']:.1f} for audio), "
            f"model {seconds['model']:.1f}, enrich {seconds['enrich']:.1f}, write {seconds['write']:.1f}")
    return line + (f"; {utilisation.line()}" if utilisation else "")


def _decoders(utilisation: Utilisation | None) -> str:
    if utilisation is None:  # nothing was decoded
        return "no worker"
    return f"{utilisation.decode_workers} worker {utilisation.decode_kind}"


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

    key = dg.AssetKey(asset_name(model_name))
    # A multi_asset only to be subsettable: its checks also run on their own (no embedding).
    @dg.multi_asset(
        name=key.path[-1], can_subset=True, check_specs=embedding_check_specs(key),
        specs=[dg.AssetSpec(
            key, partitions_def=bucket_partitions, deps=[library_tracks], skippable=True,
            group_name="embeddings", kinds={"pytorch", "milvus"}, owners=OWNERS,
            freshness_policy=NIGHTLY_FRESHNESS, metadata=definition_metadata(model_name),
            description=f"{MODEL_TITLES[model_name]} Vectors of every track in the bucket, upserted into "
                        f"Milvus; unchanged tracks are skipped, unreadable ones recorded as failed.")],
        backfill_policy=dg.BackfillPolicy.single_run(), pool="gpu" if deep else None,
    )
    def _embeddings(context: dg.AssetExecutionContext, config: EmbedConfig, navidrome: NavidromeResource,
                    vector_store: VectorStoreResource, models: ModelsResource):
        if models.nice:
            os.nice(19)
        # A run of the per-run checks alone is not partitioned: it covers every bucket.
        partitioned = key in context.selected_asset_keys or dg.AssetCheckKey(key, TRACKS_CHECK) in \
            context.selected_asset_check_keys
        buckets = list(context.partition_keys) if partitioned else list(BUCKETS)
        try:
            if key in context.selected_asset_keys:
                yield from _embed(context, config, model_name, buckets, navidrome, vector_store, models)
            else:
                library = navidrome.library()
                yield from run_checks_alone(context, key, models.get(model_name), buckets, library,
                                            vector_store.client(), vector_store.deletion_guard(library))
        except NavembedError as exc:
            raise dg.Failure(description=f"{model_name}: {exc}") from exc

    return _embeddings


def _embed(context: dg.AssetExecutionContext, config: EmbedConfig, model_name: str, buckets: list[str],
           navidrome: NavidromeResource, vector_store: VectorStoreResource, models: ModelsResource):
    explain_run(context, config.model_dump())
    store = vector_store.client()
    model = models.get(model_name)
    staging = None
    # A model upgrade that changed the vectors' dimensions (e.g. dsp v1 → v2) cannot be written into
    # the old collection: the run over all buckets (the sensor asks for one) rebuilds it instead.
    upgrade = not config.clear_existing and store.needs_rebuild(model_name, model.vector_fields)
    if config.clear_existing or upgrade:
        if sorted(buckets) != list(BUCKETS):
            reason = ("clear_existing rebuilds" if config.clear_existing else
                      f"{model_name}'s vectors changed dimensions ({model.version}), which rebuilds")
            raise dg.Failure(description=f"{reason} the whole collection: run it over all "
                                         f"256 buckets (got {len(buckets)})")
        pending = store.pending_rebuilds(model_name)
        # A rebuild cut short (cancel, crash) is resumed: its finished tracks are skipped.
        staging = pending[-1] if pending else store.begin_rebuild(model_name, model.vector_fields)
        for stale in pending[:-1]:
            store.abort_rebuild(model_name, stale)
        context.log.info(f"{'model upgrade' if upgrade else 'clear_existing'}: writing to {staging} "
                         f"({'resumed' if pending else 'new'}); "
                         "search keeps using the old vectors until this run completes")
    library = navidrome.library()
    grouped = group_by_bucket(list(library.tracks()), buckets)
    guard = vector_store.deletion_guard(library, confirmed=config.confirm_deletions)
    options = RunOptions(force=config.force, only_failed=config.only_failed, collection=staging,
                         decode_workers=models.decode_workers, decode_processes=models.decode_processes,
                         write_batch_tracks=models.write_batch_tracks,
                         progress_interval=models.progress_interval)
    fingerprinter = vector_store.fingerprinter()
    run = EmbeddingRun(model=model, store=store, options=options, fingerprinter=fingerprinter, guard=guard)
    checks = EmbeddingChecks(context, asset_key=context.asset_key, model_name=model_name, model_version=model.version,
                             declared=model.vector_fields, store=store, tracks_by_bucket=grouped, collection=staging)
    checks.prefetch()
    # The engine runs ahead on its own thread: Dagster records a finished bucket (materialization,
    # check evaluation) while the next buckets embed, instead of the model waiting for the event log.
    # The buckets one store write finished arrive together: their check reads are one query.
    bursts = run_ahead_batches(lambda stop: run.run(
        grouped, on_progress=lambda progress: context.log.info(format_progress(progress)),
        on_plan=lambda plan: _log_plan(context, plan, run), stop=stop), name=f"navembed-{model_name}")
    for reports in bursts:
        counts = checks.after_buckets(reports)
        for report in reports:
            yield dg.AssetMaterialization(asset_key=context.asset_key, partition=report.bucket,
                                          metadata={**bucket_metadata(report), **counts[report.bucket],
                                                    **model_metadata(model, store)})
        yield from checks.evaluate_done(reports)  # after their materializations: the results point at them
    context.log.info(format_stages(model_name, run.stage_seconds, utilisation=run.utilisation))
    if fingerprinter is not None and not config.only_failed:  # tracks this run skipped, fingerprinted once
        done = fingerprinter.backfill([t for tracks in grouped.values() for t in tracks])
        if done:
            context.log.info(f"fingerprinted {done} track(s) embedded before fingerprints existed")
    if staging is not None:
        store.commit_rebuild(model_name, staging)
        context.log.info(f"clear_existing: {staging} is now live")
    checks.keep(run.deletions)
    yield from checks.finish()
    if dg.AssetCheckKey(context.asset_key, DELETIONS_CHECK) in context.selected_asset_check_keys:
        yield deletions_result(run.deletions)


def _log_plan(context: dg.AssetExecutionContext, plan, run: EmbeddingRun) -> None:
    """The plan's line, then the deletion guard's (a warning when it refused the run's deletions)."""
    context.log.info(plan.line())
    if run.deletions is not None:
        log = context.log.warning if run.deletions.refused else context.log.info
        log(run.deletions.line(run.model.name))


embedding_assets = [build_embedding_asset(name) for name in MODEL_NAMES]
