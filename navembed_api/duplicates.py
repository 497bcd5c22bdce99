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
   0.95-0.99). Only a candidate without a fingerprint (a library not fingerprinted yet, Chromaprint
   missing, clips shorter than ``MIN_OVERLAP_SECONDS``) is judged by its cosine, with ``method: "embedding"`` and a per-model threshold:

   - ``muq``: the request's ``dedupThreshold`` (the original's 0.85 was chosen for MuQ-MuLan);
   - other models: the larger of ``dedupThreshold`` and the model's calibrated threshold
     (``EMBEDDING_THRESHOLDS``: the cosine above which no pair of *different* real songs was seen).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from navembed_pipeline.lib.duplicates import FingerprintStore, Match, decidable, is_duplicate, match, upload_collection
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library import is_upload_id
from navembed_pipeline.lib.store import Hit, VectorStore

LOGGER = logging.getLogger("navembed.api.duplicates")
EMBEDDING_CANDIDATES = 5
# Cosine at or above which an embedding match counts as a duplicate when no fingerprint can decide.
# dsp (v2), measured on real recordings (benchmarks/quality.py, 210 recordings of 17 albums): different
# songs reached 0.988 over 21,945 pairs; 354 near-copies (re-encode, trims, gain, silence, resample)
# scored >= 0.993 (README, "Quality on real music"). 0.99 sits above every pair of different songs seen. mert / latent: no weights on the measuring machine, so a conservative value, not a
# measured one.
EMBEDDING_THRESHOLDS: dict[str, float] = {"dsp": 0.99, "mert": 0.97, "latent": 0.97}


@dataclass(frozen=True)
class DuplicateClaim:
    """One stored track or upload that an uploaded file duplicates, and why."""

    track_id: str
    name: str
    method: str  # "fingerprint" or "embedding"
    similarity: float  # the fingerprint score, or the embedding cosine
    model: str | None = None
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
            answer["embedding"] = {"score": round(self.similarity, 4), "model": self.model}
        if self.model:
            answer["model"] = self.model
        return answer


def embedding_threshold(model: str, requested: float) -> float:
    """The cosine at which ``model`` calls two files duplicates, for the request's ``dedupThreshold``."""
    if model == "muq":
        return requested
    return max(requested, EMBEDDING_THRESHOLDS.get(model, 0.99))


class DuplicateFinder:
    """Finds what each uploaded file duplicates (nothing is written here)."""

    def __init__(self, *, fingerprints: FingerprintStore | None, store: Callable[[], VectorStore]) -> None:
        self.fingerprints = fingerprints
        self.store = store

    def find(self, words: np.ndarray | None, vector: np.ndarray | None, *, model: str,
             requested_threshold: float) -> list[DuplicateClaim]:
        """Duplicates of one file: ``words`` its fingerprint (None if none), ``vector`` its dedup embedding."""
        claims: dict[str, DuplicateClaim] = {}
        if words is not None and len(words) and self.fingerprints is not None:
            for found in self.fingerprints.duplicates_of(words):
                claims.setdefault(found.owner, _fingerprint_claim(found.owner, found.name, found.match))
        if vector is not None:
            threshold = embedding_threshold(model, requested_threshold)
            for hit in self._embedding_candidates(model, vector):
                if hit.track_id not in claims:
                    claim = self._judge(hit, words, model=model, threshold=threshold)
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
        stored = [p.words for p in self._stored_prints(hit.track_id)]
        if words is not None and any(decidable(words, p) for p in stored):
            best = max((match(words, p) for p in stored), key=lambda m: m.score)
            return _fingerprint_claim(hit.track_id, hit.name, best) if is_duplicate(best) else None
        if hit.score >= threshold:
            return DuplicateClaim(hit.track_id, hit.name, "embedding", float(hit.score), model=model)
        return None

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
