"""Fan-out of one embedding job over N workers: disjoint bucket ranges, one run each, one job id.

Dagster-free (the API and the CLI import it). A job of N workers is N runs of the embedding job,
each over its own contiguous range of buckets (together: every bucket exactly once), each in its
own *lane*: the instance's dagster.yaml lets one run per lane execute at a time, so N lanes run
side by side while a plain run (lane 0) still waits for another plain run. Every run of the job
carries the job's id (``JOB_TAG``), so progress and cancel can treat the N runs as one.

A worker that dies mid-range is *resumed*: a new run over the buckets its run had not finished
(``unfinished_ranges``), tagged with the run it resumes. Tracks already stored are skipped.
"""

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence

from navembed_pipeline.lib.buckets import BUCKETS, bucket_range, contiguous_ranges
from navembed_pipeline.lib.errors import ConfigError
from navembed_pipeline.lib.runs import Progress, run_tags

JOB_TAG = "navembed/job"  # shared by every run of one fanned-out job
WORKER_TAG = "navembed/worker"  # "i/N": which worker of the job, counting from 1
LANE_TAG = "navembed/lane"  # concurrency lane (dagster.yaml: one run per lane at a time)
RESUMES_TAG = "navembed/resumes"  # the run id a resume run takes over from
MAX_WORKERS = 16
DEFAULT_LANE = "0"
JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,63}")


def worker_ranges(workers: int, first: str = BUCKETS[0], last: str = BUCKETS[-1]) -> list[tuple[str, str]]:
    """Split buckets ``first``..``last`` into ``workers`` contiguous, disjoint ranges of near-equal size.

    Track ids hash uniformly into buckets, so equal bucket counts are equal work on any real library.
    """
    buckets = bucket_range(first, last)
    if not 1 <= workers <= min(MAX_WORKERS, len(buckets)):
        raise ConfigError(f"workers must be between 1 and {min(MAX_WORKERS, len(buckets))}, got {workers}")
    size, extra = divmod(len(buckets), workers)
    ranges, start = [], 0
    for index in range(workers):
        end = start + size + (1 if index < extra else 0)
        ranges.append((buckets[start], buckets[end - 1]))
        start = end
    return ranges


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def check_job_id(job: str) -> str:
    """A job id given by a person (shared by several machines): letters, digits, ``._-``, 1..63 long."""
    if not JOB_ID.fullmatch(job):
        raise ConfigError(f"a job id is 1-63 letters, digits, '.', '_' or '-', got {job!r}")
    return job


def worker_tags(trigger: str, *, job: str, index: int, count: int, first: str, last: str,
                resumes: str | None = None) -> dict[str, str]:
    """Tags of worker ``index`` (0-based) of ``count`` in ``job``, covering ``first``..``last``."""
    tags = {**run_tags(trigger, first=first, last=last), JOB_TAG: job, WORKER_TAG: f"{index + 1}/{count}",
            LANE_TAG: str(index)}
    if resumes:
        tags[RESUMES_TAG] = resumes
    return tags


def unfinished_ranges(first: str, last: str, finished: Iterable[str]) -> list[tuple[str, str]]:
    """The ranges of ``first``..``last`` whose buckets are not in ``finished`` (what a resume must do)."""
    left = set(bucket_range(first, last)) - set(finished)
    return contiguous_ranges(left) if left else []


def job_of(tags: Mapping[str, str]) -> str | None:
    """The fanned-out job a run belongs to (None for a plain run)."""
    return tags.get(JOB_TAG) or None


def combined_progress(model: str, parts: Sequence[tuple[Progress, bool, bool]]) -> Progress:
    """One model's progress over a job's runs, from each run's latest line.

    ``parts`` holds ``(line, active, died)`` per run: a run whose worker died counts what it did
    (its total is what it processed; its resume run has the rest), rates and ETAs come from the
    runs still going.
    """
    lines = [line for line, _, _ in parts]
    total = sum(line.processed if died else line.total for line, _, died in parts)
    going = [line for line, active, _ in parts if active]
    etas = [line.eta_seconds for line in going]
    current = next((line.current_track for line in reversed(going) if line.current_track), None)
    return Progress(model=model, total=total, processed=min(sum(x.processed for x in lines), total),
                    embedded=sum(x.embedded for x in lines), written=sum(x.written for x in lines),
                    skipped=sum(x.skipped for x in lines), failed=sum(x.failed for x in lines),
                    current_track=current, tracks_per_second=round(sum(x.tracks_per_second for x in going), 3),
                    eta_seconds=None if any(e is None for e in etas) else max(etas, default=0.0))
