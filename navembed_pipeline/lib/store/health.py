"""What the embedding asset's checks verify, Dagster-free: tracks accounted for, vectors sound, versions current.

The checks read the store, not the pipeline's own report: a row deleted, a vector corrupted or left by an
older model version outside the pipeline shows up the next time they run. Rows are read per bucket in a
few batched queries (``VectorStore.rows_in_buckets``); the verdicts here are plain functions of those rows,
the bucket's Navidrome tracks and the failure log.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.library.upload_ids import is_upload_id

SCALAR_FIELDS = ("track_id", "segment", "bucket", "fingerprint", "model_version")
# Stored vectors are L2-normalised float32; anything further from norm 1 was not written by the pipeline.
NORM_TOLERANCE = 1e-3
# Offending tracks listed in a check's metadata (the counts are always complete).
SAMPLE = 20


@dataclass(frozen=True)
class Problem:
    """One offending track: its id, the name an operator recognises, and what is wrong."""

    track_id: str
    name: str
    detail: str


@dataclass(frozen=True)
class BucketAccount:
    """Every Navidrome track of one bucket: embedded (vectors of its current file), failed, or neither."""

    bucket: str
    tracks: int
    embedded: int
    rows: int
    failed: tuple[Problem, ...]
    unaccounted: tuple[Problem, ...]
    unprinted: tuple[Problem, ...] = ()  # embedded or not, their fingerprint could not be stored (and why)

    @property
    def passed(self) -> bool:
        return not self.failed and not self.unaccounted and not self.unprinted


def account_bucket(bucket: str, tracks: Sequence[Track], rows: Sequence[Mapping[str, Any]],
                   failures: Mapping[str, str], print_failures: Mapping[str, str] | None = None) -> BucketAccount:
    """The account of ``bucket`` from its stored ``rows`` (scalar fields suffice) and the failure log:
    ``failures`` of the model, ``print_failures`` of the fingerprints (a track can embed yet lack one)."""
    stored: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        stored[row["track_id"]].add(row["fingerprint"])
    embedded, failed, unaccounted = 0, [], []
    for track in sorted(tracks, key=lambda t: t.display_name):
        if track.id in failures:
            failed.append(Problem(track.id, track.display_name, failures[track.id]))
        elif stored.get(track.id) == {track_fingerprint(track)}:
            embedded += 1
        elif track.id in stored:
            unaccounted.append(Problem(track.id, track.display_name,
                                       "vectors of an older version of the file; not re-embedded"))
        else:
            unaccounted.append(Problem(track.id, track.display_name, "no vectors and no recorded failure"))
    prints = print_failures or {}
    unprinted = tuple(Problem(t.id, t.display_name, prints[t.id])
                      for t in sorted(tracks, key=lambda t: t.display_name) if t.id in prints)
    return BucketAccount(bucket, tracks=len(tracks), embedded=embedded, rows=len(rows),
                         failed=tuple(failed), unaccounted=tuple(unaccounted), unprinted=unprinted)


@dataclass
class VectorAudit:
    """Soundness and model version of stored rows (one audit per check run).

    ``declared`` is what the running model produces; ``schema`` what the collection was created with.
    ``add`` judges a bucket's rows by their scalar fields (segments, buckets, orphans, versions);
    ``check_vectors`` judges the vectors of the rows read with them.
    """

    model_version: str
    declared: dict[str, int]
    schema: dict[str, int]
    buckets: int = 0
    rows: int = 0
    tracks: int = 0
    vectors_checked: int = 0
    versions: Counter = field(default_factory=Counter)
    stale_tracks: int = 0
    problems: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    kept: set[str] = field(default_factory=set)  # not listed, but kept by the deletion guard: not orphans

    def add(self, bucket: str, rows: Sequence[Mapping[str, Any]], present: Mapping[str, Track]) -> None:
        """Audit one bucket's ``rows``; ``present`` maps the bucket's Navidrome track ids to tracks."""
        self.buckets += 1
        self.rows += len(rows)
        by_track: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            by_track[row["track_id"]].append(row)
        self.tracks += len(by_track)
        for track_id, segments in by_track.items():
            track = present.get(track_id)
            name = track.display_name if track is not None else track_id
            # Uploaded files (the socket endpoint) live beside library tracks and are not Navidrome's.
            self._audit_track(bucket, track_id, name, segments, orphan=track is None and not is_upload_id(track_id)
                              and track_id not in self.kept)

    def _audit_track(self, bucket: str, track_id: str, name: str, segments: list[Mapping[str, Any]], *,
                     orphan: bool) -> None:
        versions = {row["model_version"] for row in segments}
        self.versions.update(row["model_version"] for row in segments)
        if versions != {self.model_version}:
            self.stale_tracks += 1
            self._note("stale", track_id, name, f"model version {', '.join(sorted(versions))}")
        if orphan:
            self._note("orphan", track_id, name, "Navidrome no longer lists this track")
        numbers = sorted(int(row["segment"]) for row in segments)
        if numbers != list(range(1, len(numbers) + 1)):
            self._note("segments", track_id, name, f"segments {numbers}: expected 1..{len(numbers)}")
        if bucket_of(track_id) != bucket or any(row["bucket"] != bucket for row in segments):
            self._note("bucket", track_id, name, f"stored under bucket {bucket}, belongs to {bucket_of(track_id)}")

    def check_vectors(self, row: Mapping[str, Any], name: str = "") -> None:
        """Dimension, finiteness and norm of one row's vectors (rows read without vectors are ignored)."""
        fields = [f for f in self.declared if f in row]
        if not fields:
            return
        self.vectors_checked += 1
        track_id = row["track_id"]
        name = name or track_id
        for field_name in fields:
            vector = np.asarray(row[field_name], dtype=np.float32).reshape(-1)
            where = f"segment {row['segment']} {field_name}"
            if vector.size != self.declared[field_name]:
                self._note("dimension", track_id, name, f"{where}: {vector.size}-d, model declares "
                                                        f"{self.declared[field_name]}")
            elif not np.isfinite(vector).all():
                self._note("non_finite", track_id, name, f"{where}: NaN or infinite values")
            elif abs(float(np.linalg.norm(vector)) - 1.0) > NORM_TOLERANCE:
                self._note("not_unit_norm", track_id, name, f"{where}: norm {float(np.linalg.norm(vector)):.4f}")

    def _note(self, kind: str, track_id: str, name: str, detail: str) -> None:
        self.problems[kind].append(Problem(track_id, name, detail))

    # ----- verdicts ---------------------------------------------------------------------------
    @property
    def schema_mismatch(self) -> bool:
        """The collection's vector fields differ from what the model declares (a rebuild is needed)."""
        return bool(self.schema) and self.schema != self.declared

    INVALID_KINDS = ("dimension", "non_finite", "not_unit_norm", "segments", "bucket", "orphan")

    def invalid(self) -> dict[str, list[Problem]]:
        """The violations that make the vectors check fail, by kind (empty lists left out)."""
        return {kind: self.problems[kind] for kind in self.INVALID_KINDS if self.problems.get(kind)}

    @property
    def vectors_valid(self) -> bool:
        return not self.schema_mismatch and not self.invalid()

    def stale(self) -> list[Problem]:
        return list(self.problems.get("stale", []))


def sample(problems: Iterable[Problem], limit: int = SAMPLE) -> list[Problem]:
    """The first ``limit`` problems (metadata tables stay readable; counts are reported separately)."""
    return list(problems)[:limit]
