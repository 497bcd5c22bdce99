"""One worker of a fanned-out re-embed: ``python -m navembed_pipeline.cli.fanout_worker SPEC_JSON``.

Runs ``reembed_job`` in this process over the worker's bucket range, as a normal Dagster run with
the run id, tags and config the coordinator (``fanout.py``) chose; the model loads once for the run.
Settings come from the environment the coordinator passes down. Exit 0 when the run succeeded,
3 when it ended failed (a crash leaves no exit code of ours: the coordinator sees the run unfinished).
"""

import json
import sys
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker runs."""

    run_id: str
    models: tuple[str, ...]
    tags: dict[str, str]
    force: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "WorkerSpec":
        data = json.loads(text)
        return cls(run_id=data["run_id"], models=tuple(data["models"]), tags=dict(data["tags"]),
                   force=bool(data["force"]))


def worker_spec(models: list[str], *, job: str, index: int, count: int, first: str, last: str,
                force: bool = False, trigger: str = "cli", resumes: str | None = None) -> WorkerSpec:
    """The run worker ``index`` of ``count`` executes: a fresh run id, the job's tags, its bucket range."""
    from dagster._core.utils import make_new_run_id

    from navembed_pipeline.lib.workers import worker_tags

    return WorkerSpec(run_id=make_new_run_id(), models=tuple(models), force=force,
                      tags=worker_tags(trigger, job=job, index=index, count=count, first=first, last=last,
                                       resumes=resumes))


def plan_workers(models: list[str], *, workers: int, first: str, last: str, job: str, force: bool = False,
                 trigger: str = "cli") -> list[WorkerSpec]:
    """The runs of ``workers`` workers over buckets ``first``..``last`` (disjoint ranges, one job)."""
    from navembed_pipeline.lib.workers import worker_ranges

    return [worker_spec(models, job=job, index=i, count=workers, first=a, last=b, force=force, trigger=trigger)
            for i, (a, b) in enumerate(worker_ranges(workers, first, last))]


def run_config(spec: WorkerSpec) -> dict:
    """The run config of the worker's run (quiet console: the coordinator reports progress)."""
    from navembed_pipeline.lib.runs import embed_run_config

    return {**embed_run_config(list(spec.models), force=spec.force),
            "loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run_worker(spec: WorkerSpec) -> bool:
    """Execute the worker's run to its end; whether it succeeded."""
    import dagster as dg

    from navembed_pipeline.definitions import build_definitions
    from navembed_pipeline.instance import open_instance
    from navembed_pipeline.lib.runs import REEMBED_JOB, asset_name
    from navembed_pipeline.lib.settings import Settings

    settings = Settings()
    instance = open_instance(settings.dagster_home, postgres_url=settings.postgres_url)
    job = build_definitions(settings).resolve_job_def(REEMBED_JOB)
    result = job.execute_in_process(
        run_config=run_config(spec), instance=instance, run_id=spec.run_id, tags=spec.tags,
        asset_selection=[dg.AssetKey(asset_name(m)) for m in spec.models], raise_on_error=False)
    return result.success


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m navembed_pipeline.cli.fanout_worker SPEC_JSON", file=sys.stderr)
        return 2
    return 0 if run_worker(WorkerSpec.from_json(args[0])) else 3


if __name__ == "__main__":
    sys.exit(main())
