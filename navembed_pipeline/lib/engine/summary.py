"""What a run is about to do, in one line an operator reads before any work starts.

The engine classifies every track of the run's buckets while planning (it has read what is stored and
what failed before); ``PlanSummary.line`` says it in words as the first thing a model's step logs.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.store import StoredInfo


@dataclass(frozen=True)
class PlanSummary:
    """Tracks of one model's run by what is stored for them, and how many will be embedded."""

    model: str
    buckets: int
    new: int  # nothing stored, never failed
    changed: int  # stored for another file version or model version
    failed: int  # recorded as failed before: tried again (only these with only_failed)
    unchanged: int  # stored and current
    to_embed: int
    vanished: int  # stored, gone from Navidrome: their vectors are deleted
    force: bool = False
    only_failed: bool = False

    @property
    def tracks(self) -> int:
        return self.new + self.changed + self.failed + self.unchanged

    def line(self) -> str:
        """``dsp: 14 tracks in 256 buckets — 12 new, 0 changed, 1 failed before, 1 unchanged → 13 to embed…``"""
        mode = " (force: unchanged too)" if self.force else " (only failed tracks)" if self.only_failed else ""
        return (f"{self.model}: {self.tracks} tracks in {self.buckets} bucket(s) — {self.new} new, {self.changed} "
                f"changed, {self.failed} failed before, {self.unchanged} unchanged → {self.to_embed} to embed"
                f"{mode}; {self.vanished} gone from Navidrome (vectors deleted)")


def summarize_plan(*, model: str, version: str, tracks_by_bucket: Mapping[str, Sequence[Track]],
                   stored: Mapping[str, StoredInfo], failed: Mapping[str, str], to_embed: int, vanished: int,
                   force: bool = False, only_failed: bool = False) -> PlanSummary:
    """Classify every track of the run from what the planner read (no store access here)."""
    counts = {"new": 0, "changed": 0, "failed": 0, "unchanged": 0}
    for tracks in tracks_by_bucket.values():
        for track in tracks:
            info = stored.get(track.id)
            if track.id in failed:
                counts["failed"] += 1
            elif info is None:
                counts["new"] += 1
            elif info.fingerprint != track_fingerprint(track) or info.model_version != version:
                counts["changed"] += 1
            else:
                counts["unchanged"] += 1
    return PlanSummary(model=model, buckets=len(tracks_by_bucket), to_embed=to_embed, vanished=vanished,
                       force=force, only_failed=only_failed, **counts)
