"""Runs that explain themselves: tags saying who started a run and what it does, set by the run itself.

Whoever launched it (the API, the sensor, the schedule, a person in the Dagster UI, a backfill), the first
embedding step of a run tags it with its trigger, its models and its flags, so the Runs page can be
filtered by them, and logs the same in words. Each model's step then logs its plan (``PlanSummary``)
before it decodes anything.
"""

from collections.abc import Mapping

import dagster as dg

from navembed_pipeline.lib.runs import TRIGGER_TAG, embedded_models, trigger_of

MODELS_TAG = "navembed/models"
FLAG_TAGS = {"force": "navembed/force", "clear_existing": "navembed/clear_existing",
             "only_failed": "navembed/only_failed"}


def explanation_tags(run_tags: Mapping[str, str], asset_names: list[str], flags: Mapping[str, bool]) -> dict[str, str]:
    """The tags an embedding run carries: trigger (kept if the launcher set it), models, flags."""
    tags = {TRIGGER_TAG: trigger_of(run_tags), MODELS_TAG: ",".join(embedded_models(asset_names))}
    tags.update({tag: str(bool(flags.get(name, False))).lower() for name, tag in FLAG_TAGS.items()})
    return tags


def explain_run(context: dg.AssetExecutionContext, flags: Mapping[str, bool]) -> None:
    """Tag the run (once: the first embedding step) and log who started it, for which models, with which flags."""
    run = context.dagster_run
    if MODELS_TAG in run.tags:
        return
    # a job run launched without an asset selection embeds every model asset of the job
    names = [key.to_user_string() for key in (run.asset_selection or context.job_def.asset_layer.selected_asset_keys)]
    tags = explanation_tags(run.tags, names, flags)
    context.instance.add_run_tags(run.run_id, tags)
    context.log.info(f"embedding run started by {tags[TRIGGER_TAG]} for {tags[MODELS_TAG] or 'no model'}; "
                     + ", ".join(f"{name} {tags[tag]}" for name, tag in FLAG_TAGS.items()))
