"""Assets: the Navidrome snapshot and one bucket-partitioned embedding asset per model."""

import os
import warnings
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from navembed_pipeline.lib.buckets import BUCKETS, bucket_of
from navembed_pipeline.lib.engine import (BucketReport, EmbeddingRun, RunOptions, Utilisation, group_by_bucket,
                                          run_ahead_batches)
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.progress import format_progress
from navembed_pipeline.lib.runs import SHARED_DECODE_MODELS, asset_name, op_name
from navembed_pipeline.lib.models import DEEP_MODEL_NAMES, MODEL_NAMES, EmbeddingModel
from navembed_pipeline.lib.library import track_fingerprint
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.catalog import NIGHTLY_FRESHNESS, definition_metadata, model_metadata
from navembed_pipeline.checks import (DELETIONS_CHECK, TRACKS_CHECK, EmbeddingChecks, deletions_result,
                                      embedding_check_specs, run_checks_alone)
from navembed_pipeline.partitions import bucket_partitions
from navembed_pipeline.quiet_buckets import left_out_line, recorded_empty, untouched
from navembed_pipeline.run_explain import explain_run
from navembed_pipeline.tag_metadata import bucket_tag_metadata, library_tag_observation, tag_names_of
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
    "musicnn": "MusiCNN (musicnn 0.1.0, MSD or MTT weights, ported to PyTorch): 16 kHz, 3 s patches, the mean "
               "max_pool layer (753-d) plus the 50 tag scores (mean taggram).",
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


def build_embedding_asset(model_names: Sequence[str]) -> dg.AssetsDefinition:
    """The bucket-partitioned embedding assets of ``model_names``, one asset per model, from one op: the
    models selected in a run are embedded by one step that decodes each file once for all of them."""
    keys = {name: dg.AssetKey(asset_name(name)) for name in model_names}
    # The GPU pool serialises the heavy models' steps; a step that embeds dsp (musicnn's, tiny) does not wait for it.
    deep = all(name in DEEP_MODEL_NAMES for name in model_names) and "dsp" not in model_names
    shared = len(model_names) > 1

    # A multi_asset to be subsettable (each model's asset, and its checks on their own: no embedding).
    @dg.multi_asset(
        name=op_name(model_names[0]), can_subset=True,
        check_specs=[spec for key in keys.values() for spec in embedding_check_specs(key)],
        specs=[dg.AssetSpec(
            key, partitions_def=bucket_partitions, deps=[library_tracks], skippable=True,
            group_name="embeddings", kinds={"pytorch", "milvus"}, owners=OWNERS,
            freshness_policy=NIGHTLY_FRESHNESS, metadata=definition_metadata(name),
            description=f"{MODEL_TITLES.get(name, name)} Vectors of every track in the bucket, upserted into "
                        f"Milvus; unchanged tracks are skipped, unreadable ones recorded as failed."
                        + (f" Embedded in one step with {', '.join(m for m in model_names if m != name)}: "
                           "each file is decoded once for all of them." if shared else ""))
            for name, key in keys.items()],
        backfill_policy=dg.BackfillPolicy.single_run(), pool="gpu" if deep else None,
    )
    def _embeddings(context: dg.AssetExecutionContext, config: EmbedConfig, navidrome: NavidromeResource,
                    vector_store: VectorStoreResource, models: ModelsResource):
        if models.nice:
            os.nice(19)
        embed = [name for name, key in keys.items() if key in context.selected_asset_keys]
        check = [name for name, key in keys.items() if key not in context.selected_asset_keys
                 and any(c.asset_key == key for c in context.selected_asset_check_keys)]
        try:
            if embed:
                yield from _embed(context, config, embed, _buckets(context, keys[embed[0]]), navidrome,
                                  vector_store, models)
            for name in check:
                library = navidrome.library()
                yield from run_checks_alone(context, keys[name], models.get(name), _buckets(context, keys[name]),
                                            library, vector_store.client(), vector_store.deletion_guard(library))
        except NavembedError as exc:
            raise dg.Failure(description=f"{', '.join(embed or check)}: {exc}") from exc

    return _embeddings


def _buckets(context: dg.AssetExecutionContext, key: dg.AssetKey) -> list[str]:
    """The run's buckets; a run of the per-run checks alone is not partitioned: it covers every bucket."""
    partitioned = key in context.selected_asset_keys or dg.AssetCheckKey(key, TRACKS_CHECK) in \
        context.selected_asset_check_keys
    return list(context.partition_keys) if partitioned else list(BUCKETS)


def _staging(context: dg.AssetExecutionContext, config: EmbedConfig, model: EmbeddingModel, store: VectorStore,
             buckets: list[str]) -> str | None:
    """The collection a rebuild of ``model`` writes to (None: the live one).

    A model upgrade that changed the vectors' dimensions (e.g. dsp v1 → v2) cannot be written into
    the old collection: the run over all buckets (the sensor asks for one) rebuilds it instead.
    """
    upgrade = not config.clear_existing and store.needs_rebuild(model.name, model.vector_fields)
    if not (config.clear_existing or upgrade):
        return None
    if sorted(buckets) != list(BUCKETS):
        reason = ("clear_existing rebuilds" if config.clear_existing else
                  f"{model.name}'s vectors changed dimensions ({model.version}), which rebuilds")
        raise dg.Failure(description=f"{reason} the whole collection: run it over all "
                                     f"256 buckets (got {len(buckets)})")
    pending = store.pending_rebuilds(model.name)
    # A rebuild cut short (cancel, crash) is resumed: its finished tracks are skipped.
    staging = pending[-1] if pending else store.begin_rebuild(model.name, model.vector_fields)
    for stale in pending[:-1]:
        store.abort_rebuild(model.name, stale)
    context.log.info(f"{model.name}: {'model upgrade' if upgrade else 'clear_existing'}: writing to {staging} "
                     f"({'resumed' if pending else 'new'}); search keeps using the old vectors until this run completes")
    return staging


def _embed(context: dg.AssetExecutionContext, config: EmbedConfig, model_names: list[str], buckets: list[str],
           navidrome: NavidromeResource, vector_store: VectorStoreResource, models: ModelsResource):
    explain_run(context, config.model_dump())
    store = vector_store.client()
    try:
        yield from _embed_into(store, context, config, model_names, buckets, navidrome, vector_store, models)
    except BaseException:  # failed or cancelled: what it did write is published all the same
        try:
            _publish(context, store)
        except NavembedError as exc:
            context.log.warning(f"could not publish the partial writes to readers: {exc}")
        raise
    _publish(context, store)


def _publish(context: dg.AssetExecutionContext, store: VectorStore) -> None:
    """Advance the store generation of what this step wrote, before the step (so the run) is reported
    over: readers such as the API compare it, so they serve the run's results as soon as it is done."""
    if published := store.publish_writes():
        context.log.info(f"published the new vectors of {', '.join(published)} to readers")


def _embed_into(store: VectorStore, context: dg.AssetExecutionContext, config: EmbedConfig, model_names: list[str],
                buckets: list[str], navidrome: NavidromeResource, vector_store: VectorStoreResource,
                models: ModelsResource):
    chosen = [models.get(name) for name in model_names]
    staging = {model.name: _staging(context, config, model, store, buckets) for model in chosen}
    library = navidrome.library()
    grouped = group_by_bucket(list(library.tracks()), buckets)
    guard = vector_store.deletion_guard(library, confirmed=config.confirm_deletions)
    options = RunOptions(force=config.force, only_failed=config.only_failed,
                         collections=tuple((name, c) for name, c in staging.items() if c is not None),
                         decode_workers=models.decode_workers, decode_processes=models.decode_processes,
                         write_batch_tracks=models.write_batch_tracks,
                         progress_interval=models.progress_interval)
    fingerprinter = vector_store.fingerprinter()
    run = EmbeddingRun(models=chosen, store=store, options=options, fingerprinter=fingerprinter, guard=guard)
    checks = {model.name: EmbeddingChecks(context, asset_key=dg.AssetKey(asset_name(model.name)), model_name=model.name,
                                          model_version=model.version, declared=model.vector_fields, store=store,
                                          tracks_by_bucket=grouped, collection=staging[model.name])
              for model in chosen}
    for model_checks in checks.values():
        model_checks.prefetch()
    # Buckets empty before the run whose latest materialization already says so (quiet_buckets.py).
    quiet = {model.name: recorded_empty(context.instance, dg.AssetKey(asset_name(model.name)),
                                        checks[model.name].empty_buckets(), model_version=model.version)
             for model in chosen}
    left_out: dict[str, list[str]] = {model.name: [] for model in chosen}
    by_name = {model.name: model for model in chosen}
    tag_names = {model.name: names for model in chosen if (names := tag_names_of(model))}
    # The engine runs ahead on its own thread: Dagster records a finished bucket (materialization,
    # check evaluation) while the next buckets embed, instead of the model waiting for the event log.
    # The buckets one store write finished arrive together: their check reads are one query.
    bursts = run_ahead_batches(lambda stop: run.run(
        grouped, on_progress=lambda progress: context.log.info(format_progress(progress)),
        on_plan=lambda plan: _log_plan(context, plan, run), stop=stop), name=f"navembed-{'-'.join(model_names)}")
    for reports in bursts:
        for name in dict.fromkeys(r.model for r in reports):
            mine = [r for r in reports if r.model == name]
            counts = checks[name].after_buckets(mine)
            skip = {r.bucket for r in mine if r.bucket in quiet[name] and untouched(r)}
            left_out[name] += skip
            shown = [r for r in mine if r.bucket not in skip]
            tags = bucket_tag_metadata(store, name, tag_names[name], [r.bucket for r in shown],
                                       collection=staging[name]) if name in tag_names and shown else {}
            for report in shown:
                yield dg.AssetMaterialization(asset_key=dg.AssetKey(asset_name(name)), partition=report.bucket,
                                              metadata={**bucket_metadata(report), **counts[report.bucket],
                                                        **tags.get(report.bucket, {}),
                                                        **model_metadata(by_name[name], store)})
            yield from checks[name].evaluate_done(shown)  # after their materializations: the results point at them
    for name, buckets in left_out.items():
        if buckets:
            context.log.info(left_out_line(name, buckets, len(grouped)))
    context.log.info(format_stages("+".join(model_names), run.stage_seconds, utilisation=run.utilisation))
    if fingerprinter is not None and not config.only_failed:  # tracks this run skipped, fingerprinted once
        done = fingerprinter.backfill([t for tracks in grouped.values() for t in tracks])
        if done:
            context.log.info(f"fingerprinted {done} track(s) embedded before fingerprints existed")
    for name, collection in staging.items():
        if collection is not None:
            store.commit_rebuild(name, collection)
            context.log.info(f"{name}: clear_existing: {collection} is now live")
    for name, names in tag_names.items():  # the library's tag distribution, after this run's writes (and switch)
        yield library_tag_observation(dg.AssetKey(asset_name(name)), store, name, names)
    for name, model_checks in checks.items():
        verdict = run.deletions_by_model.get(name)
        model_checks.keep(verdict)
        yield from model_checks.finish()
        key = dg.AssetKey(asset_name(name))
        if dg.AssetCheckKey(key, DELETIONS_CHECK) in context.selected_asset_check_keys:
            yield deletions_result(verdict, asset_key=key)


def _log_plan(context: dg.AssetExecutionContext, plan, run: EmbeddingRun) -> None:
    """The plan's line, then the deletion guard's (a warning when it refused the run's deletions)."""
    context.log.info(plan.line())
    verdict = run.deletions_by_model.get(plan.model)
    if verdict is not None:
        log = context.log.warning if verdict.refused else context.log.info
        log(verdict.line(plan.model))


def embedding_groups(model_names: Sequence[str]) -> list[tuple[str, ...]]:
    """Models embedded by one step each: those that share a decode together, every other one alone."""
    shared = tuple(m for m in model_names if m in SHARED_DECODE_MODELS)
    alone = [(m,) for m in model_names if m not in SHARED_DECODE_MODELS]
    return [*alone, *([shared] if shared else [])]


embedding_assets = [build_embedding_asset(group) for group in embedding_groups(MODEL_NAMES)]
