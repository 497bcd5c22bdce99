"""Asset checks of every ``<model>_embeddings`` asset: what an operator sees under the asset's Checks tab.

- ``tracks_embedded_or_failed`` (per bucket, partitioned like the asset): every Navidrome track of the
  bucket has vectors of its current file or a recorded failure with its reason. WARN when tracks failed
  (they are listed), ERROR when a track has neither.
- ``vectors_valid`` (per run): stored vectors have the model's fields and dimensions, are finite and
  unit-norm; one row per track segment, filed under the track's bucket, none for tracks Navidrome no
  longer has. ERROR when violated.
- ``model_version_current`` (per run): stored vectors come from the running model's version. WARN with
  the count of stale tracks.

They run with every materialization (evaluated bucket by bucket as the run goes; an empty bucket a run
leaves out of its events, ``quiet_buckets.py``, keeps its last result) and on their own
(the asset is subsettable: "Execute" on a check re-reads the store without embedding anything). The
store is read in batches: the scalar fields of the run's buckets once up front, a bucket again only
when the run changed it; a run on its own reads every vector of its buckets.
"""

import warnings
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from navembed_pipeline.lib.engine import FINGERPRINT_FAILURES, BucketReport, group_by_bucket
from navembed_pipeline.lib.library import NavidromeLibrary, Track
from navembed_pipeline.lib.models import EmbeddingModel
from navembed_pipeline.lib.store import (AUDIT_FIELDS as SCALAR_FIELDS, BucketAccount, DeletionGuard, DeletionVerdict,
                                         Problem, VectorAudit, VectorStore, account_bucket, sample)
from navembed_pipeline.partitions import bucket_partitions

# Partitioned checks are "preview" in Dagster 1.13, yet they are how a check shows per bucket in the UI.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")

TRACKS_CHECK = "tracks_embedded_or_failed"
VECTORS_CHECK = "vectors_valid"
VERSION_CHECK = "model_version_current"
DELETIONS_CHECK = "deletions_safe"
# Buckets read per query when the checks run on their own (bounds memory: vectors are read too).
STANDALONE_BUCKETS_PER_READ = 16
# Unchanged buckets get their check results in batches of this many (one target lookup per batch).
EVALUATION_BATCH = 64


def embedding_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The three checks of one embedding asset (the first partitioned by bucket, like the asset)."""
    return [
        dg.AssetCheckSpec(TRACKS_CHECK, asset=asset_key, partitions_def=bucket_partitions,
                          description="Every Navidrome track of the bucket has vectors of its current file or "
                                      "a recorded failure with its reason. WARN: tracks failed (listed); "
                                      "ERROR: tracks with neither."),
        dg.AssetCheckSpec(VECTORS_CHECK, asset=asset_key,
                          description="Stored vectors have the model's fields and dimensions, are finite and "
                                      "unit-norm; one row per track segment, in the track's bucket, none for "
                                      "tracks Navidrome no longer has."),
        dg.AssetCheckSpec(VERSION_CHECK, asset=asset_key,
                          description="Stored vectors come from the running model's version (WARN: stale "
                                      "vectors, with their count)."),
        dg.AssetCheckSpec(DELETIONS_CHECK, asset=asset_key,
                          description="The deletion guard let the run delete what it had to: fails (ERROR) when "
                                      "it refused a mass deletion or found a whole library folder missing "
                                      "(nothing was deleted); lists the missing files whose vectors are kept."),
    ]


class EmbeddingChecks:
    """The checks of one model's asset over the buckets of one run, and the row counts its materializations carry.

    ``tracks_by_bucket`` holds every bucket in scope (empty lists included). Call ``prefetch`` before the
    engine writes, ``after_buckets`` for the bucket reports at hand before their materializations are
    yielded, ``evaluate_done`` after them, ``finish`` at the end; or ``run_alone`` for a check-only run.
    """

    def __init__(self, context: dg.AssetExecutionContext, *, asset_key: dg.AssetKey, model_name: str,
                 model_version: str, declared: Mapping[str, int], store: VectorStore,
                 tracks_by_bucket: Mapping[str, Sequence[Track]], collection: str | None = None) -> None:
        self._context = context
        self._key = asset_key
        self._model = model_name
        self._store = store
        self._collection = collection
        self._tracks = tracks_by_bucket
        self._names = {t.id: t.display_name for tracks in tracks_by_bucket.values() for t in tracks}
        self._selected = {key.name for key in context.selected_asset_check_keys if key.asset_key == asset_key}
        self._audit = VectorAudit(model_version=model_version, declared=dict(declared),
                                  schema=store.stored_vector_fields(model_name, collection=collection))
        self._rows: dict[str, list[dict]] = {}
        self._failures: dict[str, str] = {}
        self._print_failures: dict[str, str] = {}  # tracks whose fingerprint could not be stored
        self._total_rows = 0
        self._done: list[str] = []

    # ----- with a materialization -----------------------------------------------------------
    def prefetch(self) -> None:
        """Scalar fields of every bucket in scope, the failure log and the collection's size: a few reads."""
        self._rows = self._read(list(self._tracks), SCALAR_FIELDS)
        self._failures = self._store.failed_tracks(self._model)
        self._total_rows = self._store.count(self._model, collection=self._collection)

    def after_buckets(self, reports: Sequence[BucketReport]) -> dict[str, dict[str, object]]:
        """Re-read the buckets the run changed (one query for all of them); the track and row counts for
        each report's materialization metadata, by bucket."""
        changed = [r.bucket for r in reports if r.embedded or r.deleted]
        if changed:
            before = sum(len(self._rows.get(bucket, ())) for bucket in changed)
            fresh = self._read(changed, (*SCALAR_FIELDS, *self._audit.declared))
            self._total_rows += sum(len(rows) for rows in fresh.values()) - before
            self._rows.update(fresh)
        if any(r.failed for r in reports):
            self._failures = self._store.failed_tracks(self._model)
        return {r.bucket: {"tracks": len(self._tracks.get(r.bucket, ())),
                           "dagster/row_count": len(self._rows.get(r.bucket, ())), "collection_rows": self._total_rows}
                for r in reports}

    def empty_buckets(self) -> list[str]:
        """Buckets in scope with no Navidrome track and no stored row (as last read)."""
        return [bucket for bucket, tracks in self._tracks.items() if not tracks and not self._rows.get(bucket)]

    def evaluate_done(self, reports: Sequence[BucketReport]) -> Iterator[dg.AssetCheckEvaluation]:
        """Check results for materialized buckets: at once (all together) when the run worked on one of
        them, else in batches of ``EVALUATION_BATCH`` (the unchanged buckets a run reports back to back)."""
        self._done.extend(r.bucket for r in reports)
        if any(r.embedded or r.failed or r.deleted for r in reports) or len(self._done) >= EVALUATION_BATCH:
            yield from self.bucket_evaluations(self._done)
            self._done = []

    def bucket_evaluations(self, buckets: Sequence[str]) -> Iterator[dg.AssetCheckEvaluation]:
        """``tracks_embedded_or_failed`` for buckets whose materializations are already stored."""
        if TRACKS_CHECK not in self._selected or not buckets:
            return
        # Read as the results are made: the run stores fingerprints as it goes (a few ms, one small query).
        self._print_failures = self._store.failed_tracks(FINGERPRINT_FAILURES)
        targets = self._targets(buckets)
        for bucket in buckets:
            account = account_bucket(bucket, self._tracks.get(bucket, ()), self._rows.get(bucket, ()), self._failures,
                                     self._print_failures)
            yield tracks_evaluation(self._key, account, targets.get(bucket))

    def keep(self, verdict: DeletionVerdict | None) -> None:
        """Stored tracks the deletion guard kept (missing files within their grace period, refused
        deletions) are not orphans for ``vectors_valid``: ``deletions_safe`` reports them."""
        if verdict is not None:
            self._audit.kept.update(verdict.kept)
            self._audit.kept.update(verdict.due - verdict.deletable)

    def finish(self) -> Iterator[dg.AssetCheckEvaluation | dg.AssetCheckResult]:
        """The buckets still waiting for results, then ``vectors_valid`` and ``model_version_current``."""
        yield from self.bucket_evaluations(self._done)
        self._done = []
        for bucket, tracks in self._tracks.items():
            self._audit.add(bucket, self._rows.get(bucket, []), {t.id: t for t in tracks})
        if VECTORS_CHECK in self._selected:
            yield vectors_result(self._key, self._audit)
        if VERSION_CHECK in self._selected:
            yield version_result(self._key, self._audit)

    # ----- on their own ---------------------------------------------------------------------
    def run_alone(self) -> Iterator[dg.AssetCheckEvaluation | dg.AssetCheckResult]:
        """Every selected check from the store alone (every vector of the buckets in scope is read)."""
        self._failures = self._store.failed_tracks(self._model)
        buckets = list(self._tracks)
        for start in range(0, len(buckets), STANDALONE_BUCKETS_PER_READ):
            chunk = buckets[start:start + STANDALONE_BUCKETS_PER_READ]
            self._rows.update(self._read(chunk, (*SCALAR_FIELDS, *self._audit.declared)))
            yield from self.bucket_evaluations(chunk)
        yield from self.finish()

    # ----- internals ------------------------------------------------------------------------
    def _read(self, buckets: Sequence[str], fields: Sequence[str]) -> dict[str, list[dict]]:
        """Rows by bucket; vectors (when read) are audited here and dropped, so memory holds scalars only."""
        by_bucket: dict[str, list[dict]] = {b: [] for b in buckets}
        vector_fields = [f for f in fields if f in self._audit.declared]
        for row in self._store.rows_in_buckets(self._model, buckets, fields, collection=self._collection):
            if vector_fields:
                self._audit.check_vectors(row, self._names.get(row["track_id"], ""))
            by_bucket.setdefault(row["bucket"], []).append({f: row[f] for f in SCALAR_FIELDS})
        return by_bucket

    def _targets(self, buckets: Sequence[str]) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
        """The latest materialization of each bucket (what its check result is about): two local queries."""
        instance = self._context.instance
        ids = instance.event_log_storage.get_latest_storage_id_by_partition(
            self._key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(buckets))
        if not ids:
            return {}
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=self._key, storage_ids=list(ids.values())), limit=len(ids)).records
        by_id = {r.storage_id: r for r in records}
        return {bucket: AssetCheckEvaluationTargetMaterializationData(
                    storage_id=sid, run_id=by_id[sid].run_id, timestamp=by_id[sid].timestamp)
                for bucket, sid in ids.items() if sid in by_id}


def tracks_evaluation(key: dg.AssetKey, account: BucketAccount,
                      target: AssetCheckEvaluationTargetMaterializationData | None) -> dg.AssetCheckEvaluation:
    """One bucket's ``tracks_embedded_or_failed`` result: the failed and unaccounted tracks by name."""
    metadata: dict[str, object] = {"tracks": account.tracks, "embedded": account.embedded,
                                   "failed": len(account.failed), "unaccounted": len(account.unaccounted),
                                   "dagster/row_count": account.rows}
    if account.failed:
        metadata["failed_tracks"] = problems_table(account.failed, "error")
    if account.unaccounted:
        metadata["unaccounted_tracks"] = problems_table(account.unaccounted, "why")
    if account.unprinted:
        metadata["fingerprint_failures"] = len(account.unprinted)
        metadata["fingerprint_failed_tracks"] = problems_table(account.unprinted, "error")
    parts = []
    if account.failed:
        parts.append(f"{len(account.failed)} failed: " + "; ".join(f"{p.name} ({p.detail[:120]})"
                                                                  for p in account.failed[:3]))
    if account.unaccounted:
        parts.append(f"{len(account.unaccounted)} with neither vectors nor a recorded failure: "
                     + "; ".join(p.name for p in account.unaccounted[:3]))
    if account.unprinted:
        parts.append(f"{len(account.unprinted)} without a stored fingerprint (duplicates cannot be found): "
                     + "; ".join(f"{p.name} ({p.detail[:120]})" for p in account.unprinted[:3]))
    description = (f"{account.embedded} of {account.tracks} tracks embedded" if account.passed
                   else f"bucket {account.bucket}: " + " | ".join(parts))
    return dg.AssetCheckEvaluation(
        asset_key=key, check_name=TRACKS_CHECK, passed=account.passed, partition=account.bucket,
        severity=dg.AssetCheckSeverity.ERROR if account.unaccounted else dg.AssetCheckSeverity.WARN,
        metadata=metadata, description=description, target_materialization_data=target)


def vectors_result(key: dg.AssetKey, audit: VectorAudit) -> dg.AssetCheckResult:
    invalid = audit.invalid()
    metadata: dict[str, object] = {
        "buckets": audit.buckets, "rows": audit.rows, "tracks": audit.tracks,
        "vectors_checked": audit.vectors_checked,
        "declared_fields": dg.MetadataValue.json(audit.declared),
        "collection_fields": dg.MetadataValue.json(audit.schema),
        **{f"{kind}_violations": len(problems) for kind, problems in invalid.items()},
    }
    if invalid:
        metadata["violations"] = problems_table([p for ps in invalid.values() for p in ps], "violation")
    if audit.schema_mismatch:
        description = (f"collection holds {audit.schema}, the model produces {audit.declared}: "
                       "re-embed with clear_existing")
    elif invalid:
        description = "; ".join(f"{len(ps)} {kind.replace('_', ' ')}" for kind, ps in invalid.items())
    else:
        description = (f"{audit.rows} rows of {audit.tracks} tracks sound; {audit.vectors_checked} rows' vectors "
                       "examined (those written by this run, or every row when the check runs on its own)")
    return dg.AssetCheckResult(asset_key=key, check_name=VECTORS_CHECK, passed=audit.vectors_valid,
                               severity=dg.AssetCheckSeverity.ERROR, metadata=metadata, description=description)


def version_result(key: dg.AssetKey, audit: VectorAudit) -> dg.AssetCheckResult:
    stale = audit.stale()
    metadata: dict[str, object] = {"stale_tracks": len(stale), "model_version": audit.model_version,
                                   "rows_by_version": dg.MetadataValue.json(dict(audit.versions))}
    if stale:
        metadata["stale"] = problems_table(stale, "stored")
    description = (f"{len(stale)} track(s) hold vectors of another model version than {audit.model_version}; "
                   "the next reconcile re-embeds them" if stale else f"all vectors from {audit.model_version}")
    return dg.AssetCheckResult(asset_key=key, check_name=VERSION_CHECK, passed=not stale, severity=dg.AssetCheckSeverity.WARN,
                               metadata=metadata, description=description)


def deletions_result(verdict: DeletionVerdict | None, *, asset_key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    """``deletions_safe``: failed (ERROR) when the guard refused this run's deletions, with its reason."""
    if verdict is None:
        return dg.AssetCheckResult(check_name=DELETIONS_CHECK, asset_key=asset_key, passed=True,
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   description="no deletions were judged (a failed-tracks-only run)")
    metadata: dict[str, object] = {"due": len(verdict.due), "deleted": len(verdict.deletable),
                                   "kept_missing": len(verdict.kept), "adopted": verdict.adopted,
                                   "refused": verdict.refused or ""}
    if verdict.kept:
        oldest = min(verdict.kept.values())
        metadata["oldest_missing_since"] = dg.MetadataValue.timestamp(oldest)
    description = (f"deletions refused, nothing deleted: {verdict.refused}" if verdict.refused else
                   f"{len(verdict.deletable)} track(s) deleted; {len(verdict.kept)} missing file(s) kept within "
                   "their grace period")
    return dg.AssetCheckResult(check_name=DELETIONS_CHECK, asset_key=asset_key, passed=verdict.refused is None,
                               severity=dg.AssetCheckSeverity.ERROR, metadata=metadata, description=description)


def problems_table(problems: Sequence[Problem], column: str) -> dg.MetadataValue:
    """A markdown table of the first problems (names, ids, what is wrong)."""
    lines = [f"| track | track id | {column} |", "|---|---|---|"]
    lines += [f"| {p.name.replace('|', '/')} | `{p.track_id}` | {p.detail.replace('|', '/')[:200]} |"
              for p in sample(problems)]
    if len(problems) > len(sample(problems)):
        lines.append(f"| … and {len(problems) - len(sample(problems))} more | | |")
    return dg.MetadataValue.md("\n".join(lines))


def run_checks_alone(context: dg.AssetExecutionContext, key: dg.AssetKey, model: EmbeddingModel,
                     buckets: Sequence[str], library: NavidromeLibrary, store: VectorStore,
                     guard: DeletionGuard | None = None) -> Iterator[dg.AssetCheckEvaluation | dg.AssetCheckResult]:
    """The selected checks over ``buckets`` without embedding (a check-only run of the subsettable asset)."""
    grouped = group_by_bucket(list(library.tracks()), buckets)
    context.log.info(f"checking {model.name}'s stored vectors in {len(buckets)} bucket(s); nothing is embedded")
    checks = EmbeddingChecks(context, asset_key=key, model_name=model.name, model_version=model.version,
                             declared=model.vector_fields, store=store, tracks_by_bucket=grouped)
    verdict = guard.judge(model.name, store.track_buckets(model.name), record=False) if guard else None
    checks.keep(verdict)
    yield from checks.run_alone()
    if guard is not None and dg.AssetCheckKey(key, DELETIONS_CHECK) in context.selected_asset_check_keys:
        yield deletions_result(verdict, asset_key=key)
