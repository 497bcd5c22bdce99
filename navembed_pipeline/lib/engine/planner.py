"""Planning an embedding run: per track, embed it or skip it; vanished tracks deleted; few store round trips.

The first part of the engine (``run.py``): it reads what the store holds for the selected
buckets once, decides what to embed, deletes the vectors of tracks Navidrome no longer lists, and
hands back the queue of tracks to embed in bucket order with a ``BucketState`` per bucket.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from navembed_pipeline.lib.engine.summary import PlanSummary, summarize_plan
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.library.upload_ids import is_upload_id
from navembed_pipeline.lib.store.missing_tracks import DeletionGuard, DeletionVerdict
from navembed_pipeline.lib.models.base import EmbeddingModel
from navembed_pipeline.lib.store import StoredInfo, VectorStore
from navembed_pipeline.lib.store.schema import COLLECTIONS


@dataclass
class BucketState:
    """One bucket while the run works on it (mutable: counts move as its tracks finish)."""

    bucket: str
    pending: int
    skipped: int
    deleted: int
    started: float
    embedded: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (track id, name, error)
    begun: float | None = None  # when its first track started embedding (buckets queue behind each other)

    def has_failed(self, track_id: str) -> bool:
        return any(f[0] == track_id for f in self.failures)


@dataclass(frozen=True)
class RunPlan:
    """What a run is about to do: per-bucket states, the queue of (bucket, track) to embed, a summary."""

    states: dict[str, BucketState]
    queue: list[tuple[str, Track]]
    summary: PlanSummary
    previously_failed: frozenset[str]  # recorded failures before the run (cleared when they embed)
    deletions: DeletionVerdict | None = None  # the deletion guard's verdict (None: no guard, all vanished go)


@dataclass(frozen=True)
class RunPlanner:
    """Plans one model's run over ``tracks_by_bucket`` against the store (``force``/``only_failed``/staging)."""

    model: EmbeddingModel
    store: VectorStore
    force: bool = False
    only_failed: bool = False
    collection: str | None = None
    guard: DeletionGuard | None = None  # keeps missing files' vectors; refuses mass deletions
    forget: Callable[[list[str]], None] | None = None  # drops deleted tracks' fingerprints (same rule)

    def plan(self, tracks_by_bucket: dict[str, list[Track]], clock: Callable[[], float]) -> RunPlan:
        """Per track: embed, or skip because the stored vectors are current; delete vanished tracks."""
        all_tracks = [t for tracks in tracks_by_bucket.values() for t in tracks]
        adopted = self._adopt(all_tracks)
        stored = self.store.stored(self.model.name, [t.id for t in all_tracks], collection=self.collection)
        failed = self.store.failed_tracks(self.model.name)
        vanished, verdict = self._vanished(tracks_by_bucket)
        states: dict[str, BucketState] = {}
        queue: list[tuple[str, Track]] = []
        for bucket, tracks in sorted(tracks_by_bucket.items()):
            todo = [t for t in tracks if self._wanted(t, stored.get(t.id), failed)]
            deleted = self._delete(vanished.get(bucket, []))
            states[bucket] = BucketState(bucket, pending=len(todo), skipped=len(tracks) - len(todo),
                                         deleted=deleted, started=clock())
            queue.extend((bucket, t) for t in todo)
        summary = summarize_plan(model=self.model.name, version=self.model.version, tracks_by_bucket=tracks_by_bucket,
                                 stored=stored, failed=failed, to_embed=len(queue),
                                 vanished=sum(s.deleted for s in states.values()), force=self.force,
                                 only_failed=self.only_failed)
        if verdict is not None and adopted:
            verdict = DeletionVerdict(verdict.due, verdict.kept, verdict.refused, adopted)
        return RunPlan(states, queue, summary, frozenset(failed), verdict)

    def _wanted(self, track: Track, info: StoredInfo | None, failed: dict[str, str]) -> bool:
        if self.only_failed:
            return track.id in failed
        current = (info is not None and info.fingerprint == track_fingerprint(track)
                   and info.model_version == self.model.version)
        return self.force or not current

    def _vanished(self, tracks_by_bucket: dict[str, list[Track]]
                  ) -> tuple[dict[str, list[str]], DeletionVerdict | None]:
        """Stored tracks of the selected buckets that Navidrome no longer lists and the guard lets go,
        and the guard's verdict over the whole collection (a mass deletion is judged library-wide)."""
        if self.only_failed:
            return {}, None
        present = {t.id for tracks in tracks_by_bucket.values() for t in tracks}
        stored = self.store.track_buckets(self.model.name, collection=self.collection)
        verdict = None
        if self.guard is not None:
            verdict = self.guard.judge(self.model.name, stored, record=self.collection is None)
        gone: dict[str, list[str]] = {}
        for track_id, bucket in stored.items():
            if bucket in tracks_by_bucket and track_id not in present and not is_upload_id(track_id) \
                    and (verdict is None or track_id in verdict.deletable):
                gone.setdefault(bucket, []).append(track_id)
        return gone, verdict

    def _adopt(self, tracks: list[Track]) -> int:
        """Tombstoned files back unchanged keep their vectors in every model (re-stamped, not re-embedded)."""
        if self.guard is None or self.only_failed or self.collection is not None:
            return 0
        def restamp(fingerprints: dict[str, str]) -> None:
            for model in COLLECTIONS:
                self.store.restamp(model, fingerprints)
        return self.guard.adopt_returned(tracks, restamp, track_fingerprint)

    def _delete(self, track_ids: list[str]) -> int:
        if track_ids:
            self.store.delete_tracks(self.model.name, sorted(track_ids), collection=self.collection)
            self.store.clear_failures(self.model.name, track_ids)
            if self.forget is not None:
                self.forget(sorted(track_ids))
        return len(track_ids)
