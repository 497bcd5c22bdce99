"""One request's view of the vectors: its models and weights, and the searches built on them.

Field copies are pinned on first use, so a refresh in the middle of a request cannot mix two
copies; candidate rows are gathered once per field and compared with every probe in one product.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from navembed_pipeline.lib.recommend.errors import NoVectorsError
from navembed_pipeline.lib.recommend.fusion import Probe, Term, make_term
from navembed_pipeline.lib.recommend.request import EMBEDDING_FIELD
from navembed_pipeline.lib.recommend.identity import RecordingIdentity
from navembed_pipeline.lib.recommend.joint import JointVectors
from navembed_pipeline.lib.recommend.rules import SameAs, SimilarityTo
from navembed_pipeline.lib.recommend.tags import TAGS_FIELD, TagScores, tag_scores
from navembed_pipeline.lib.recommend.vectors import ANN_OVERFETCH, Block, FieldVectors, as_queries, spread


AUDIO_SOURCES = frozenset({"seed", "vector", "path", "negative_track"})  # track-like probes (calibrated)


class VectorSource(Protocol):
    """Where vectors come from: ``VectorCache`` (the store) or ``StaticVectors`` (arrays)."""

    def field(self, model: str, field: str = EMBEDDING_FIELD) -> FieldVectors: ...


class Search:
    """Searches over ``models`` (weights summing to 1), each through its own field copies."""

    def __init__(self, source: VectorSource, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)
        self._source = source
        self._fields: dict[tuple[str, str], FieldVectors] = {}
        self._blocks: dict[tuple[str, str], tuple[Sequence[str], Block]] = {}
        self._joint: JointVectors | None | bool = False  # False: not looked for yet

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def field(self, model: str, field: str = EMBEDDING_FIELD) -> FieldVectors:
        """The field's vectors, pinned for this request."""
        vectors = self._fields.get((model, field))
        if vectors is None:
            vectors = self._fields[(model, field)] = self._source.field(model, field)
        if len(vectors) == 0:
            raise NoVectorsError(f"model {model!r} has no {field!r} vectors yet: embed the library with it "
                                 f"first (navembed reembed --models {model}, or POST /batch/start)")
        return vectors

    @property
    def track_count(self) -> int:
        """Tracks in the largest of the models' collections."""
        return max(len(self.field(m)) for m in self.models)

    def track_probes(self, track_ids: Sequence[str], source: str) -> list[Probe]:
        """One probe per track and model that has the track's vectors."""
        return [Probe(m, EMBEDDING_FIELD, source, track, vectors)
                for track in track_ids for m in self.models
                if (vectors := self.field(m).vectors_of(track)) is not None]

    def candidates(self, probes: Sequence[Probe], k: int, *, joined: bool = True) -> list[str]:
        """Track ids among the ``k`` nearest to any probe, in each probe's own field. Seed tracks that every
        model of the request has are searched together in the models' joined rows (``joint.py``): the ``k``
        tracks with the best fused score, not each model's ``k`` nearest (``joined``: the request fuses z-scores,
        which are linear in the cosines; reciprocal ranks are not, so they keep each model's list)."""
        found: dict[str, None] = {}
        joint = self.joint() if joined else None
        if joint is not None:
            query, rest = self._joint_query(joint, probes)
            if query is not None:
                found.update((track, None) for track in joint.candidates(query, k))
                probes = rest if joint.complete else probes
        by_field: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
        for probe in probes:
            if probe.field == TAGS_FIELD:  # tag weights: the tracks with the highest weighted scores
                found.update((track, None) for track in self.tag_scores(probe.model).top(probe.vectors, k))
                continue
            by_field[(probe.model, probe.field)].append(np.atleast_2d(probe.vectors))
        # Several fields fused: each index's far end matters (``FieldVectors.candidates``' overfetch).
        overfetch = ANN_OVERFETCH if len(by_field) + bool(found) > 1 else 1
        for (model, field), queries in by_field.items():
            vectors = self.field(model, field)
            found.update((vectors.track_ids[i], None)
                         for i in vectors.candidates(np.concatenate(queries), k, overfetch=overfetch))
        return list(found)

    def joint(self) -> JointVectors | None:
        """The joined rows of this request's models (``joint.py``), built from the very field copies this
        request pinned; None with one model, or while the source has no joined copy of them (yet)."""
        if self._joint is False:
            self._joint = None
            make = getattr(self._source, "joint", None)
            if make is not None and len(self.models) > 1:
                fields = [self.field(m) for m in sorted(self.models)]  # one joined copy per set, in any order
                joint = make(fields)
                self._joint = joint if joint is not None and joint.serves(fields) else None
        return self._joint

    def _joint_query(self, joint: JointVectors, probes: Sequence[Probe]) -> tuple[np.ndarray | None, list[Probe]]:
        """One joined query for the seed tracks every joined model has (one row each), weighted as ``fuse``
        weighs their terms (``w_m / terms of m / sd``, the z-score's scale), and the probes it leaves out."""
        by_track: dict[str, dict[str, Probe]] = defaultdict(dict)
        for probe in probes:
            if probe.source == "seed" and probe.field == EMBEDDING_FIELD and len(np.atleast_2d(probe.vectors)) == 1:
                by_track[probe.ref][probe.model] = probe
        covered = [t for t, found in by_track.items() if all(m in found for m in joint.models)]
        if not covered:
            return None, list(probes)
        terms = {m: sum(1 for p in probes if p.model == m and p.field == EMBEDDING_FIELD) for m in joint.models}
        parts = [np.zeros(f.dimension, dtype=np.float64) for f in joint.sources]
        for track in covered:
            for i, model in enumerate(joint.models):
                vector = as_queries(by_track[track][model].vectors, joint.sources[i].dimension)[0]
                deviation = joint.sources[i].baseline(vector)[1]
                parts[i] += self.weights[model] / terms[model] / deviation * vector
        taken = {(t, m) for t in covered for m in joint.models}
        rest = [p for p in probes if not (p.source == "seed" and (p.ref, p.model) in taken and p.field == EMBEDDING_FIELD)]
        return joint.query(parts), rest

    def terms(self, probes: Sequence[Probe], ids: Sequence[str], *, fusion: str, rrf_k: int) -> list[Term]:
        """Each probe's similarity to the tracks ``ids``, normalised for fusion."""
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        terms: dict[int, Term] = {}
        for i, probe in enumerate(probes):
            if probe.field == TAGS_FIELD:
                terms[i] = self._tag_term(probe, ids, fusion=fusion, rrf_k=rrf_k)
            else:
                groups[(probe.model, probe.field)].append(i)
        for (model, field), members in groups.items():
            vectors = self.field(model, field)
            queries = as_queries(np.concatenate([probes[i].vectors for i in members]), vectors.dimension)
            owner = np.repeat(np.arange(len(members)), [len(np.atleast_2d(probes[i].vectors)) for i in members])
            near = self._block(vectors, ids).similarities(queries)
            sample = vectors.sample_similarities(queries)
            for j, i in enumerate(members):
                columns = owner == j
                cosine = near[:, columns].max(axis=1)
                calibrated = vectors.calibrated(cosine) if probes[i].source in AUDIO_SOURCES else None
                terms[i] = make_term(probes[i], cosine, spread(sample[:, columns].max(axis=1)),
                                     fusion=fusion, rrf_k=rrf_k, calibrated=calibrated)
        return [terms[i] for i in range(len(probes))]

    def tag_scores(self, model: str) -> TagScores:
        """The raw tag scores of ``model``'s ``tags`` field, pinned for this request."""
        return tag_scores(self.field(model, TAGS_FIELD))

    def _tag_term(self, probe: Probe, ids: Sequence[str], *, fusion: str, rrf_k: int) -> Term:
        """A tag probe's term: each track's weighted tag score (the mean score of the wanted tags),
        normalised against the whole library's scores like a cosine is against its sample."""
        tags = self.tag_scores(probe.model)
        library = tags.weighted(probe.vectors).astype(np.float64)
        return make_term(probe, tags.of_many(ids, probe.vectors), spread(library), fusion=fusion, rrf_k=rrf_k)

    def similarity_to(self, ids: Sequence[str], *, calibrated: bool = False) -> SimilarityTo:
        """Sonic similarity of the tracks ``ids`` to one track: per-model cosines mixed by model weight.

        ``calibrated``: each model's cosine is first mapped to 0..1 on the library
        (``FieldVectors.calibrated``), the number shown to people and clients."""
        blocks = {m: self.field(m).block(self.field(m).local_indices(ids)) for m in self.models}

        def similarity(track_id: str) -> np.ndarray:
            total = np.zeros(len(ids))
            weight = np.zeros(len(ids))
            for model, w in self.weights.items():
                other = self.field(model).vectors_of(track_id)
                if other is None:
                    continue
                value = blocks[model].similarities(other).max(axis=1)
                value = self.field(model).calibrated(value) if calibrated else value
                present = ~np.isnan(value)
                total += np.where(present, w * np.nan_to_num(value), 0.0)
                weight += w * present
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(weight > 0, total / weight, np.nan)

        return similarity

    def same_recording(self, ids: Sequence[str], identity: RecordingIdentity) -> SameAs:
        """Which of the tracks ``ids`` are the same recording as one track, by ``identity`` over
        every model of this request (``identity.RecordingIdentity.matcher``)."""
        return identity.matcher(ids, {m: self.field(m) for m in self.models})

    def pair_similarity(self, first: str, second: str) -> float:
        """Sonic similarity of two tracks (NaN if no model has both)."""
        return float(self.similarity_to([first])(second)[0])

    def _block(self, vectors: FieldVectors, ids: Sequence[str]) -> Block:
        """``ids``' rows in ``vectors``, remembered for the most recent id list per field."""
        key = (vectors.model, vectors.field)
        cached = self._blocks.get(key)
        if cached is None or cached[0] is not ids:
            cached = self._blocks[key] = (ids, vectors.block(vectors.local_indices(ids)))
        return cached[1]
