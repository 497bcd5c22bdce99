"""nightly_reconcile_schedule: a full reconcile of every bucket at night (unchanged tracks are skipped)."""

import dagster as dg

from navembed_pipeline.jobs import reembed_job
from navembed_pipeline.lib.runs import asset_name, embed_run_config, run_tags


def build_nightly_reconcile_schedule(models: list[str], *, cron: str = "0 3 * * *") -> dg.ScheduleDefinition:
    """Every night: all 256 buckets, enabled models; removes vectors of deleted tracks too."""

    @dg.schedule(job=reembed_job, cron_schedule=cron, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Full reconcile at 03:00: embeds anything new or changed, drops vectors of "
                             "tracks gone from Navidrome. Unchanged tracks cost a lookup, not an embed.")
    def nightly_reconcile_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(run_config=embed_run_config(models),
                             asset_selection=[dg.AssetKey(asset_name(m)) for m in models],
                             tags=run_tags("nightly_reconcile_schedule"))

    return nightly_reconcile_schedule
