"""Is an uploaded file already in the library, or already uploaded? Fingerprint first, embeddings as fallback.

For each uploaded file:

1. Its Chromaprint fingerprint is looked up in the fingerprint store (library tracks and earlier
   uploads): candidates from the inverted index, each verified by the alignment search
   (``fingerprints.match``). A verified match is a duplicate, reported with ``method:
   "fingerprint"``, its score (1 - bit error rate) and its offset: where the upload starts within
   the stored copy, in seconds (+10 = the upload lacks the stored copy's first 10 s).
2. The embedding search (top candidates in the library's and the uploads' collections of the
   dedup model) adds candidates the index may have missed. A candidate that has a fingerprint is
   judged by the fingerprint (never by the cosine: between different real songs dsp cosines reach
   0.95-0.99). Only a candidate without a fingerprint that can decide (a library not fingerprinted
   yet, Chromaprint missing, clips shorter than ``MIN_OVERLAP_SECONDS``) is judged by its vectors,
   with ``method: "embedding"``, by the same rule as playlists and the plugin
   (``RecordingIdentity.by_vectors``): its cosine on the library's calibrated scale
   (``identity.closeness``) reaches the model's measured ``COPY_SIMILARITY`` (and its cosine the
   lowest a real copy scored). A model without a
   measured threshold (or a library too small to calibrate) claims nothing by embedding. The request's
   ``dedupThreshold`` can only make this stricter: the raw cosine must reach it too.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from navembed_pipeline.lib.duplicates import FingerprintStore, Match, decidable, is_duplicate, match, upload_collection
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library import is_upload_id
from navembed_pipeline.lib.recommend import RecordingIdentity, VectorCache, closeness
from navembed_pipeline.lib.store import Hit, VectorStore

LOGGER = logging.getLogger("navembed.api.duplicates")
EMBEDDING_CANDIDATES = 5


@dataclass(frozen=True)
class DuplicateClaim:
    """One stored track or upload that an uploaded file duplicates, and why."""

    track_id: str
    name: str
    method: str  # "fingerprint" or "embedding"
    similarity: float  # the fingerprint score, or the embedding cosine
    model: str | None = None
    calibrated: float | None = None  # embedding: the cosine on the library's calibrated scale (closeness)
    # where the upload starts within the stored copy: +10 = the upload lacks the stored copy's first 10 s
    offset_seconds: float | None = None

    @property
    def source(self) -> str:
        return "upload" if is_upload_id(self.track_id) else "library"

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"track_id": self.track_id, "name": self.name, "source": self.source,
                                  "method": self.method, "similarity": round(self.similarity, 4)}
        if self.method == "fingerprint":
            answer["fingerprint"] = {"score": round(self.similarity, 4), "offset_seconds": self.offset_seconds}
        else:
            answer["embedding"] = {"score": round(self.similarity, 4), "model": self.model,
                                   "calibrated": None if self.calibrated is None else round(self.calibrated, 4)}
        if self.model:
            answer["model"] = self.model
        return answer


class DuplicateFinder:
    """Finds what each uploaded file duplicates (nothing is written here).

    ``vectors`` gives the library's calibration (``.field(model).calibration``): the recommender's
    ``VectorCache`` when the app has one (``main.py`` shares it), else one of its own, loaded on first use.
    """

    def __init__(self, *, fingerprints: FingerprintStore | None, store: Callable[[], VectorStore],
                 identity: RecordingIdentity | None = None, vectors: Any = None) -> None:
        self.fingerprints = fingerprints
        self.store = store
        self.identity = identity or RecordingIdentity()
        self.vectors = vectors

    def find(self, words: np.ndarray | None, vector: np.ndarray | None, *, model: str,
             requested_threshold: float) -> list[DuplicateClaim]:
        """Duplicates of one file: ``words`` its fingerprint (None if none), ``vector`` its dedup embedding."""
        claims: dict[str, DuplicateClaim] = {}
        if words is not None and len(words) and self.fingerprints is not None:
            for found in self.fingerprints.duplicates_of(words):
                claims.setdefault(found.owner, _fingerprint_claim(found.owner, found.name, found.match))
        if vector is not None and model in self.identity.thresholds:
            for hit in self._embedding_candidates(model, vector):
                if hit.track_id not in claims:
                    claim = self._judge(hit, words, model=model, threshold=requested_threshold)
                    if claim is not None:
                        claims[hit.track_id] = claim
        return sorted(claims.values(), key=lambda c: (c.method != "fingerprint", -c.similarity))

    def _embedding_candidates(self, model: str, vector: np.ndarray) -> list[Hit]:
        store = self.store()
        hits: list[Hit] = []
        for key in (model, upload_collection(model)):
            if store.count(key) > 0:
                hits += store.search_many(key, [vector], limit=EMBEDDING_CANDIDATES)[0]
        return hits

    def _judge(self, hit: Hit, words: np.ndarray | None, *, model: str, threshold: float) -> DuplicateClaim | None:
        stored = self._stored_prints(hit.track_id)
        if words is not None and any(decidable(words, p.words) for p in stored):
            best = max((match(words, p.words, b_seconds=p.seconds) for p in stored), key=lambda m: m.score)
            return _fingerprint_claim(hit.track_id, hit.name, best) if is_duplicate(best) else None
        calibrated = self._calibrated(model, float(hit.score))
        if calibrated is not None and hit.score >= threshold and self.identity.by_vectors(
                {model: (float(hit.score), calibrated)}):
            return DuplicateClaim(hit.track_id, hit.name, "embedding", float(hit.score), model=model,
                                  calibrated=calibrated)
        return None

    def _calibrated(self, model: str, cosine: float) -> float | None:
        """``cosine`` on the library's calibrated scale; None without a calibration (fewer than two tracks)."""
        if self.vectors is None:
            self.vectors = VectorCache(self.store)
        try:
            field = self.vectors.field(model)
        except NavembedError as exc:
            LOGGER.warning("no calibration for %s, no embedding duplicates: %s", model, exc)
            return None
        if field.calibration is None:
            return None
        return float(closeness(field, cosine))

    def _stored_prints(self, owner: str) -> list:
        if self.fingerprints is None:
            return []
        try:
            return self.fingerprints.prints(owner)
        except NavembedError as exc:
            LOGGER.warning("fingerprints unavailable, judging by embedding: %s", exc)
            return []


def _fingerprint_claim(owner: str, name: str, found: Match) -> DuplicateClaim:
    """``found`` = match(upload, stored): the stored copy's start is ``found.offset_seconds`` into the upload."""
    return DuplicateClaim(owner, name, "fingerprint", found.score, offset_seconds=-found.offset_seconds + 0.0)
