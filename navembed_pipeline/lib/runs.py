"""The run contract, Dagster-free: names, tags, run config, run classification and the progress record.

The pipeline (assets, jobs, sensors, schedules), the API (``/batch/*``) and the CLI all speak about
embedding runs; this module is the one place that says how. It imports nothing heavy (no Dagster,
no torch), so the API can use it without loading the orchestrator or a model.

``Progress`` is written by the embedding engine as one structured log line per heartbeat
(``Progress.to_log_line``) and read back by the API and the CLI bar (``Progress.from_log_line``):
one writer, one parser, and a line that lacks a field is refused rather than read as 0.
"""

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from navembed_pipeline.lib.buckets import BUCKETS
from navembed_pipeline.lib.errors import NavembedError

# ── names ─────────────────────────────────────────────────────────────────────────────────────
LIBRARY_ASSET = "library_tracks"
ASSET_SUFFIX = "_embeddings"
EMBEDDINGS_GROUP = "embeddings"
REEMBED_JOB = "reembed_job"
RETRY_FAILED_JOB = "retry_failed_tracks_job"
EMBEDDING_JOBS = (REEMBED_JOB, RETRY_FAILED_JOB)

# ── tags ──────────────────────────────────────────────────────────────────────────────────────
KIND_TAG = "navembed/kind"
EMBEDDING_KIND = "embedding"
EMBEDDING_RUN_TAGS: Mapping[str, str] = {KIND_TAG: EMBEDDING_KIND}
TRIGGER_TAG = "navembed/trigger"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
# Dagster's own tags that tell who launched a run, with the label navembed reports for each.
DAGSTER_TRIGGER_TAGS = (("dagster/sensor_name", "sensor"), ("dagster/schedule_name", "schedule"),
                        ("dagster/backfill", "backfill"))
UI_TRIGGER = "dagster_ui"


# Models embedded by one step: each file is decoded once and fed to all of them (issue 21, 25), while
# Dagster still shows one asset per model (a multi_asset; this is its op, the node that runs them).
SHARED_DECODE_MODELS = ("dsp", "musicnn")
SHARED_DECODE_OP = "shared_decode_embeddings"


def asset_name(model: str) -> str:
    """The embedding asset of ``model`` (``dsp`` → ``dsp_embeddings``)."""
    return f"{model}{ASSET_SUFFIX}"


def op_name(model: str) -> str:
    """The op (step) that embeds ``model``: the shared-decode op for dsp and musicnn, else its asset's name."""
    return SHARED_DECODE_OP if model in SHARED_DECODE_MODELS else asset_name(model)


def range_tags(first: str = BUCKETS[0], last: str = BUCKETS[-1]) -> dict[str, str]:
    """Run tags that make one run cover buckets ``first``..``last`` (default: all of them)."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}


def run_tags(trigger: str, *, first: str = BUCKETS[0], last: str = BUCKETS[-1]) -> dict[str, str]:
    """The tags of an embedding run launched by ``trigger`` (``api``, ``cli``, a sensor's name…)."""
    return {**range_tags(first, last), TRIGGER_TAG: trigger}


# ── run config ────────────────────────────────────────────────────────────────────────────────
def embed_run_config(models: Sequence[str], *, force: bool = False, clear_existing: bool = False,
                     only_failed: bool = False, confirm_deletions: bool = False) -> dict[str, Any]:
    """Run config for the embedding job restricted to ``models`` (one config per op: models that share
    a decode share their op's)."""
    config = {"force": force, "clear_existing": clear_existing, "only_failed": only_failed}
    if confirm_deletions:  # only when asked: older definitions do not know the field
        config["confirm_deletions"] = True
    return {"ops": {op_name(m): {"config": dict(config)} for m in models}}


# ── classification ────────────────────────────────────────────────────────────────────────────
def embedded_models(asset_names: Iterable[str], known: Sequence[str] | None = None) -> list[str]:
    """The models whose embedding assets are among ``asset_names``, in ``known``'s order (default:
    the pipeline's model order)."""
    if known is None:
        from navembed_pipeline.lib.models import MODEL_NAMES  # light: the registry imports no model

        known = MODEL_NAMES
    selected = {name[: -len(ASSET_SUFFIX)] for name in asset_names if name.endswith(ASSET_SUFFIX)}
    return [m for m in known if m in selected]


def is_embedding_run(job_name: str, asset_names: Iterable[str]) -> bool:
    """Runs of the embedding jobs, and asset runs (Dagster UI, sensors) that embed any model; ``asset_names``
    may be a run's step names instead (the shared-decode step embeds dsp and musicnn)."""
    names = list(asset_names)
    return job_name in EMBEDDING_JOBS or SHARED_DECODE_OP in names or bool(embedded_models(names))


def trigger_of(tags: Mapping[str, str]) -> str:
    """Who started a run: navembed's own tag, else Dagster's sensor/schedule/backfill tags, else the UI."""
    if TRIGGER_TAG in tags:
        return tags[TRIGGER_TAG]
    for key, label in DAGSTER_TRIGGER_TAGS:
        if key in tags:
            return f"{label}:{tags[key]}"
    return UI_TRIGGER


# ── progress ──────────────────────────────────────────────────────────────────────────────────
PROGRESS_PREFIX = "navembed.progress "


class ProgressFormatError(NavembedError):
    """A progress line that does not match the record (missing, unknown or mistyped fields)."""


@dataclass(frozen=True)
class Progress:
    """One model's run so far, in tracks (not segments).

    ``processed`` counts tracks done with: embedded (vectors computed), failed or skipped as
    unchanged — it moves as each track finishes. ``written`` counts the embedded tracks whose
    vectors are already stored (writes are batched, so it trails ``embedded`` by up to one write
    batch; a crash redoes at most that difference). ``eta_seconds`` is None until a few tracks have
    finished and a rate is known.
    """

    model: str
    total: int
    processed: int
    embedded: int
    written: int
    skipped: int
    failed: int
    current_track: str | None
    tracks_per_second: float
    eta_seconds: float | None

    @property
    def percent(self) -> float:
        """Share of the model's tracks processed, 0..100 (100 for an empty library)."""
        return round(100.0 * min(self.processed, self.total) / self.total, 1) if self.total else 100.0

    @property
    def done(self) -> bool:
        return self.processed >= self.total

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Progress":
        """Parse ``to_json``'s output; anything else raises ``ProgressFormatError``."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProgressFormatError(f"progress is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProgressFormatError("progress must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Progress":
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = [k for k in data if k not in names]
        if missing or unknown:
            raise ProgressFormatError(f"progress fields differ from the record: missing {missing}, "
                                      f"unknown {unknown}")
        values = {n: data[n] for n in names}
        _check_types(values)
        return cls(**values)

    def figures(self) -> str:
        """Rate, ETA and counts in words: what the CLI bar shows beside itself and the log line ends with."""
        eta = "ETA --" if self.eta_seconds is None else f"ETA {format_duration(self.eta_seconds)}"
        return (f"{self.tracks_per_second:.2f} tracks/s, {eta}, written {self.written}, failed {self.failed}, "
                f"skipped {self.skipped}")

    def summary(self) -> str:
        """One human line: ``dsp 12/36 (33.3%), 2.10 tracks/s, ETA 0:11, written 8, failed 0, skipped 0``."""
        return f"{self.model} {self.processed}/{self.total} ({self.percent}%), {self.figures()}"

    def to_log_line(self) -> str:
        """``navembed.progress {json} · summary``: the line the engine logs (the JSON for the readers,
        the summary for a person reading the Dagster log)."""
        return f"{PROGRESS_PREFIX}{self.to_json()}{SUMMARY_SEPARATOR}{self.summary()}"

    @classmethod
    def from_log_line(cls, message: str) -> "Progress | None":
        """The progress in a log message; None if it is not a progress line; malformed lines raise."""
        if not message.startswith(PROGRESS_PREFIX):
            return None
        body = message[len(PROGRESS_PREFIX):]
        try:
            data, _ = json.JSONDecoder().raw_decode(body)
        except ValueError as exc:
            raise ProgressFormatError(f"progress is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProgressFormatError("progress must be a JSON object")
        return cls.from_dict(data)


SUMMARY_SEPARATOR = " · "


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_INTS = ("total", "processed", "embedded", "written", "skipped", "failed")


def _check_types(values: Mapping[str, Any]) -> None:
    bad = [n for n in _INTS if not isinstance(values[n], int) or isinstance(values[n], bool) or values[n] < 0]
    if not isinstance(values["model"], str) or not values["model"]:
        bad.append("model")
    if values["current_track"] is not None and not isinstance(values["current_track"], str):
        bad.append("current_track")
    rate = values["tracks_per_second"]
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not math.isfinite(rate) or rate < 0:
        bad.append("tracks_per_second")
    eta = values["eta_seconds"]
    if eta is not None and (not isinstance(eta, (int, float)) or isinstance(eta, bool)
                            or not math.isfinite(eta) or eta < 0):
        bad.append("eta_seconds")
    if bad:
        raise ProgressFormatError(f"progress fields with invalid values: {', '.join(bad)}")
