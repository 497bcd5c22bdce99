"""library_change_sensor: diff Navidrome against the store and re-embed only the dirty buckets."""

import dagster as dg

from navembed_pipeline.lib.buckets import BUCKETS, contiguous_ranges
from navembed_pipeline.lib.library_diff import dirty_buckets
from navembed_pipeline.jobs import embed_run_config, is_embedding_run, reembed_job
from navembed_pipeline.partitions import range_tags
from navembed_pipeline.resources import NavidromeResource, VectorStoreResource

# One run per contiguous range of dirty buckets; past this many ranges, one run over all buckets
# (clean buckets cost a lookup each, far less than hundreds of queued runs).
MAX_RUNS = 8
# While an embedding run is queued or running the sensor waits: that run picks up the library as it is,
# and anything it misses is still dirty on the first tick after it ends.
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def build_library_change_sensor(models: list[str], *, interval_seconds: int) -> dg.SensorDefinition:
    """The sensor for the enabled ``models``."""

    @dg.sensor(job=reembed_job, minimum_interval_seconds=interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Diffs Navidrome against the vectors stored (new, changed and deleted tracks, "
                           "stale model versions) and requests runs for the dirty buckets only.")
    def library_change_sensor(context: dg.SensorEvaluationContext, navidrome: NavidromeResource,
                              vector_store: VectorStoreResource) -> dg.SensorResult:
        busy = active_embedding_run(context.instance)
        if busy is not None:
            return dg.SensorResult(skip_reason=f"embedding run {busy.run_id} is {busy.status.value.lower()}; "
                                               "changes are checked again after it")
        dirty = dirty_buckets(navidrome.library(), vector_store.client(), models)
        if not dirty:
            return dg.SensorResult(skip_reason="library and vectors agree")
        ranges = contiguous_ranges(set(dirty))
        if len(ranges) > MAX_RUNS:
            ranges = [(BUCKETS[0], BUCKETS[-1])]
        requests = []
        for first, last in ranges:
            requests.append(dg.RunRequest(
                run_key=None, run_config=embed_run_config(models),
                asset_selection=[dg.AssetKey(f"{m}_embeddings") for m in models],
                tags={**range_tags(first, last), "navembed/trigger": "library_change_sensor"}))
        context.log.info(f"{len(dirty)} dirty bucket(s) → {len(requests)} run(s)")
        return dg.SensorResult(run_requests=requests)

    return library_change_sensor


def active_embedding_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """The newest queued or running embedding run (whoever launched it: API, UI, sensor), if any."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE), limit=50):
        if is_embedding_run(run.job_name, (key.to_user_string() for key in run.asset_selection or ())):
            return run
    return None
