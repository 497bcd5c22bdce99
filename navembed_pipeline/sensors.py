"""library_change_sensor: diff Navidrome against the store and re-embed only the dirty buckets."""

import dagster as dg

from navembed_pipeline.jobs import reembed_job
from navembed_pipeline.lib.buckets import BUCKETS, contiguous_ranges
from navembed_pipeline.lib.engine import dirty_buckets, model_versions
from navembed_pipeline.lib.models import ModelOptions
from navembed_pipeline.lib.runs import asset_name, embed_run_config, is_embedding_run, run_tags
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource

# One run per contiguous range of dirty buckets; past this many ranges, one run over all buckets
# (clean buckets cost a lookup each, far less than hundreds of queued runs).
MAX_RUNS = 8
# While an embedding run is queued or running the sensor waits: that run picks up the library as it is,
# and anything it misses is still dirty on the first tick after it ends.
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def build_library_change_sensor(models: list[str], *, interval_seconds: int) -> dg.SensorDefinition:
    """The sensor for the enabled ``models``."""
    enabled = list(models)  # the sensor's ``models`` parameter is the models resource

    @dg.sensor(job=reembed_job, minimum_interval_seconds=interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Diffs Navidrome against the vectors stored (new, changed and deleted tracks, "
                           "stale model versions) and requests runs for the dirty buckets only.")
    def library_change_sensor(context: dg.SensorEvaluationContext, navidrome: NavidromeResource,
                              vector_store: VectorStoreResource, models: ModelsResource) -> dg.SensorResult:
        busy = active_embedding_run(context.instance)
        if busy is not None:
            return dg.SensorResult(skip_reason=f"embedding run {busy.run_id} is {busy.status.value.lower()}; "
                                               "changes are checked again after it")
        # Versions from the same model options the runs use (weights dir, layers), or they never agree.
        versions = model_versions(enabled, models.options())
        library = navidrome.library()
        guard = vector_store.deletion_guard(library)
        dirty = dirty_buckets(library, vector_store.client(), versions, guard)
        if not dirty:
            refused = "; ".join(f"{r.model}: {r.reason}" for r in guard.log.refusals())
            return dg.SensorResult(skip_reason="library and vectors agree" + (
                f" (except deletions the guard refused — {refused})" if refused else ""))
        ranges = contiguous_ranges(set(dirty))
        if len(ranges) > MAX_RUNS or rebuild_needed(vector_store.client(), enabled, models.options()):
            ranges = [(BUCKETS[0], BUCKETS[-1])]
        requests = []
        for first, last in ranges:
            requests.append(dg.RunRequest(
                run_key=None, run_config=embed_run_config(enabled),
                asset_selection=[dg.AssetKey(asset_name(m)) for m in enabled],
                tags=run_tags("library_change_sensor", first=first, last=last)))
        context.log.info(f"{len(dirty)} dirty bucket(s) → {len(requests)} run(s)")
        return dg.SensorResult(run_requests=requests)

    return library_change_sensor


def rebuild_needed(store, models: list[str], options: ModelOptions | None = None) -> bool:
    """Whether a model upgrade changed some model's vector dimensions: then only one run over all
    buckets can rebuild its collection (a run over a few buckets would fail and be asked again)."""
    from navembed_pipeline.lib.models import create_model

    for name in models:
        model = create_model(name, options)
        try:
            if store.needs_rebuild(name, model.vector_fields):
                return True
        finally:
            model.shutdown()
    return False


def active_embedding_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """The newest queued or running embedding run (whoever launched it: API, UI, sensor), if any."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE), limit=50):
        if is_embedding_run(run.job_name, (key.to_user_string() for key in run.asset_selection or ())):
            return run
    return None
