"""The ``sonic_mixes`` asset: the library's sound and each user's listening history as M3U8 playlists
that Navidrome imports (``lib/recommend/mix_files.py``), and the sensor that rebuilds them after runs.

It sits downstream of every embedding asset. ``sonic_mixes_after_runs`` requests it each time an
embedding run succeeds — the nightly reconcile included, so the mixes follow each day's plays — once
no other embedding run is still queued or running (the last one to finish asks for it).
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library import NavidromeHistory
from navembed_pipeline.lib.models import DEFAULT_MUSICNN_VARIANT, MODEL_NAMES, tag_names
from navembed_pipeline.lib.runs import TRIGGER_TAG, asset_name, is_embedding_run
from navembed_pipeline.resources import NavidromeResource, VectorStoreResource
from navembed_pipeline.sensors import active_embedding_run

if TYPE_CHECKING:
    from navembed_pipeline.lib.recommend import MixOptions

SONIC_MIXES = dg.AssetKey("sonic_mixes")
MIXES_JOB = "sonic_mixes_job"


class MixesResource(dg.ConfigurableResource):
    """Where the playlists go and how they are built."""

    playlists_dir: str
    models: str = "dsp"  # comma-separated: the enabled models, searched together
    size: int = 25
    musicnn_variant: str = DEFAULT_MUSICNN_VARIANT  # whose 50 tag names the stored tags are (cluster names)

    def options(self) -> "MixOptions":
        from navembed_pipeline.lib.recommend import MixOptions

        return MixOptions(size=self.size)

    def model_list(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]


@dg.asset(key=SONIC_MIXES, group_name="mixes", kinds={"sqlite", "milvus"}, owners=["team:navembed"],
          deps=[dg.AssetKey(asset_name(m)) for m in MODEL_NAMES],
          description="Sonic mixes as M3U8 playlists for Navidrome: the library clustered by sound, and per "
                      "user (from Navidrome's listening history) For you, Rediscover and radio from starred "
                      "tracks. Rewrites only its own files in the playlists folder.")
def sonic_mixes(context: dg.AssetExecutionContext, navidrome: NavidromeResource, vector_store: VectorStoreResource,
                mixes: MixesResource) -> dg.MaterializeResult:
    # lib.recommend is imported by the run that builds mixes, not by every run worker loading the definitions
    from navembed_pipeline.lib.recommend import Recommender, VectorCache, build_and_write, preview

    try:
        library = navidrome.library()
        history = NavidromeHistory(Path(navidrome.db_path))
        store = vector_store.client()
        cache = VectorCache(store, background=False)
        try:
            engine = Recommender(cache, library.get, default_models=mixes.model_list(),
                                 tag_names=tag_names(mixes.musicnn_variant))
            run = build_and_write(engine, library, history, Path(mixes.playlists_dir),
                                  now=datetime.now(UTC), options=mixes.options())
        finally:
            cache.close()
            store.close()
    except NavembedError as exc:
        raise dg.Failure(description=f"sonic mixes: {exc}") from exc
    report = run.report
    context.log.info(f"{len(run.mixes)} mixes written to {report.directory} "
                     f"({len(report.removed)} stale removed, {len(report.foreign_kept)} foreign left alone)")
    kinds = {kind: sum(1 for m in run.mixes if m.kind == kind) for kind in ("sound", "for-you", "rediscover", "radio")}
    return dg.MaterializeResult(metadata={
        "mixes": len(run.mixes),
        "tracks": sum(len(m.track_ids) for m in run.mixes),
        "distinct_tracks": len({t for m in run.mixes for t in m.track_ids}),
        "users_with_history": run.users,
        "users": run.users_total,
        **{f"{kind.replace('-', '_')}_mixes": n for kind, n in kinds.items()},
        "named_by": "MusiCNN tags" if run.tagged else "artists",
        "playlists_dir": dg.MetadataValue.path(str(report.directory)),
        "removed": len(report.removed),
        "foreign_left_alone": len(report.foreign_kept),
        "unwritable_tracks": report.unwritable_tracks,
        "preview": dg.MetadataValue.md(preview(run, library)),
    })


sonic_mixes_job = dg.define_asset_job(MIXES_JOB, selection=[SONIC_MIXES], executor_def=dg.in_process_executor,
                                      description="Rebuild the sonic mixes' playlists.")


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, request_job=sonic_mixes_job,
                      default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                      description="Rebuilds the sonic mixes after each successful embedding run (the nightly "
                                  "reconcile included), once no other embedding run is queued or running.")
def sonic_mixes_after_runs(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    # An in-process or ad-hoc asset run may record no asset selection, only its steps (named as the assets).
    names = [k.to_user_string() for k in run.asset_selection or ()] or list(run.step_keys_to_execute or ())
    if not is_embedding_run(run.job_name, names):
        return dg.SkipReason(f"run {run.run_id} is not an embedding run")
    busy = active_embedding_run(context.instance)
    if busy is not None:
        return dg.SkipReason(f"embedding run {busy.run_id} is still {busy.status.value.lower()}; "
                             "the mixes are rebuilt after it")
    return dg.RunRequest(run_key=f"after-{run.run_id}", tags={TRIGGER_TAG: "sonic_mixes_after_runs"})
