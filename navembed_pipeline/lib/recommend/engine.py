"""The recommendation engine: a request in, an explained playlist out.

Positive inputs (seed tracks, uploaded vectors, text prompts) become probes in each requested
model; text goes through the MuLan joint space (``muq``'s ``mulan`` field) when MuQ-MuLan's weights
are here, else through MusiCNN's tags (``musicnn``'s ``tags`` field: prompts read as tag words,
``tag_text.py``), so models without either only hear the tracks. Candidates are the union of every
probe's nearest tracks; they are scored exactly and fused (``fusion.py``), then arranged under the
playlist rules (``rules.py``). When the rules leave the playlist short, the search widens (4x) until
it is full or has seen the whole library.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from navembed_pipeline.lib.recommend.errors import InvalidRequestError, NoVectorsError, UnknownTrackError
from navembed_pipeline.lib.recommend.fusion import Probe, Scores, fuse
from navembed_pipeline.lib.recommend.identity import RecordingIdentity, title_keys
from navembed_pipeline.lib.recommend.path import path_stops
from navembed_pipeline.lib.recommend.prompts import EmbedText, PromptVectors
from navembed_pipeline.lib.recommend.request import Playlist, PlaylistRules, RecommendedTrack, RecommendRequest, validate
from navembed_pipeline.lib.recommend.catalog import TrackTable
from navembed_pipeline.lib.recommend.rules import Catalog, Pool, by_score_only, eligible, select, track_table
from navembed_pipeline.lib.recommend.search import Search, VectorSource
from navembed_pipeline.lib.recommend.tag_text import TagVocabulary
from navembed_pipeline.lib.recommend.tags import TAGS_FIELD, TAGS_MODEL, TEXT_MODEL, tag_scores, top_tags

TEXT_FIELDS: Mapping[str, str] = {"muq": "mulan"}  # models with a text tower → their joint-space field
DEFAULT_MODELS = ("muq", "mert", "latent", "dsp")
MIN_CANDIDATES = 200  # per probe
POOL_PER_TRACK = 4  # allowed candidates looked at per playlist slot, before widening (rules that skip some)


class Recommender:
    """Answers ``RecommendRequest``s from ``vectors`` with track details from ``catalog``.

    ``catalog`` is e.g. ``NavidromeLibrary.get``; ``embed_text`` e.g. ``MuQModel.embed_text``
    (None: text prompts are refused). ``default_models`` are used, where they have vectors, when
    a request names none. ``text_ready`` says whether ``embed_text`` can run now (MuQ-MuLan's weights
    are here; default: whenever it is given); ``tag_names`` are the stored MusiCNN tags (empty: no
    tags), read as text when MuLan cannot be, and shown in each track's ``why``. ``identity`` says which
    tracks are the same recording (``collapse_duplicates``; default: no fingerprint groups, the measured
    per-model thresholds, titles from ``catalog``).
    """

    def __init__(self, vectors: VectorSource, catalog: Catalog, *, embed_text: EmbedText | None = None,
                 default_models: Sequence[str] = DEFAULT_MODELS,
                 text_fields: Mapping[str, str] = TEXT_FIELDS, text_ready: Callable[[], bool] | None = None,
                 tag_names: Sequence[str] = (), identity: RecordingIdentity | None = None,
                 min_candidates: int = MIN_CANDIDATES) -> None:
        """``min_candidates``: the nearest tracks taken per probe and model before fusing (at least; a
        benchmark that scores every track passes the library's size)."""
        self.vectors = vectors
        self.catalog = catalog
        self.prompts = PromptVectors(embed_text)
        self.text_ready = text_ready if text_ready is not None else (lambda: embed_text is not None)
        self.default_models = tuple(default_models)
        self.text_fields = dict(text_fields)
        self.tags = TagVocabulary(tag_names) if tag_names else None
        self.identity = identity or RecordingIdentity(titles=title_keys(catalog))
        self.min_candidates = int(min_candidates)

    def recommend(self, request: RecommendRequest) -> Playlist:
        """The playlist for ``request``; raises a RecommendError the caller can show as a 4xx."""
        validate(request)
        notes: list[str] = []
        search = self._search(request)
        text_model = self._text_model(search, request)
        self._check_tracks(search, request, notes)
        texts = self.prompts((*request.prompts, *request.negative_prompts)) if text_model == "muq" else {}
        negatives = [search.track_probes([t], "negative_track") for t in request.negative_tracks]
        if text_model == TEXT_MODEL:
            negatives += self._tag_negatives(request)
        else:
            negatives += [self._text_probes(search, p, texts, "negative_prompt") for p in request.negative_prompts]
        if request.mode == "path":
            stops, known = path_stops(search, request, catalog=self.catalog, negatives=negatives,
                                      identity=self.identity)
            if len(stops) - 2 < request.path.steps:
                notes.append(f"{len(stops) - 2} of {request.path.steps} steps found an allowed track nearer to "
                             "the end than the one before; the others are left out")
            tracks = [_track(s.track_id, known, s.scores, s.index, s.role) for s in stops]
        else:
            positives = self._positives(search, request, texts, notes, text_model)
            ids, chosen, scores, pool = self._ranked(search, request, positives, negatives)
            known = pool.details([ids[i] for i in chosen], self.catalog)
            tracks = [_track(ids[i], known, scores, i) for i in chosen]
        return Playlist(request.mode, search.models, search.weights, request.fusion,
                        tuple(self._with_tags(search, tracks)), tuple(notes), text_model)

    def ranked_ids(self, request: RecommendRequest) -> tuple[list[str], tuple[str, ...]]:
        """The ids ``recommend`` would answer for this (seed-only, non-path) request, in order, and the
        models used: the same ranking and rules without the explanations, tags and track details
        (what ``SonicService`` needs, which reads the details of the tracks it keeps)."""
        validate(request)
        if request.mode == "path" or request.prompts or request.negative_prompts or request.seed_vectors:
            raise InvalidRequestError("ranked_ids answers seed-track requests only")
        search = self._search(request)
        self._check_tracks(search, request, [])
        negatives = [search.track_probes([t], "negative_track") for t in request.negative_tracks]
        positives = self._positives(search, request, {}, [], None)
        ids, chosen, _, _ = self._ranked(search, request, positives, negatives)
        return [ids[i] for i in chosen], search.models

    def sonic_similarity(self, reference: str, track_ids: Sequence[str], *,
                         models: Sequence[str] = ()) -> dict[str, float]:
        """How alike each track sounds to ``reference``, 0..1, calibrated on the library
        (``lib/recommend/calibration.py``: ~0 for a typical unrelated pair, 1 for the same recording), mixed
        over ``models`` with equal weight; 0 where no model has both. What clients are shown."""
        values = self.sonic_similarities(reference, track_ids, models=models)
        return dict(zip(track_ids, values.tolist(), strict=True))

    def sonic_similarities(self, reference: str, track_ids: Sequence[str], *,
                           models: Sequence[str] = ()) -> np.ndarray:
        """``sonic_similarity`` as an array in the order of ``track_ids``."""
        names = [m for m in (models or self.default_models) if len(self.vectors.field(m)) > 0]
        if not names:
            return np.zeros(len(track_ids))
        search = Search(self.vectors, {m: 1 / len(names) for m in names})
        value = search.similarity_to(list(track_ids), calibrated=True)(reference)
        return np.where(np.isfinite(value), np.clip(value, 0.0, 1.0), 0.0)

    def _search(self, request: RecommendRequest) -> Search:
        names = list(dict.fromkeys(request.models or self.default_models))
        known = {*DEFAULT_MODELS, *self.default_models, *self.text_fields, *self._tag_models()}
        unknown = sorted({m for m in (*names, *request.weights) if m not in known or m not in names})
        if unknown:
            raise InvalidRequestError(f"unknown or unrequested model(s) {', '.join(unknown)}; "
                                      f"request some of {', '.join(sorted(known))}")
        weights = {m: float(request.weights.get(m, 1.0)) for m in names}
        if not any(weights.values()):
            raise InvalidRequestError("every requested model weighs 0; give at least one a positive weight")
        usable = {m: w for m, w in weights.items() if w > 0 and len(self.vectors.field(m)) > 0}
        empty = [m for m, w in weights.items() if w > 0 and m not in usable]
        if request.models and empty:
            raise NoVectorsError(f"model(s) {', '.join(empty)} have no vectors yet: embed the library with "
                                 "them first, or leave them out of 'models'")
        if not usable:
            raise NoVectorsError("no model has any vectors yet (is the library embedded?): "
                                 "run `navembed reembed` (or POST /batch/start) first")
        readers = {*self.text_fields, *self._tag_models()}
        if (request.prompts or request.negative_prompts) and not set(usable) & readers:
            raise InvalidRequestError("text prompts need muq (MuQ-MuLan's text tower) or musicnn (its tags) "
                                      "among the models, with vectors")
        total = sum(usable.values())
        return Search(self.vectors, {m: w / total for m, w in usable.items()})

    def _tag_models(self) -> tuple[str, ...]:
        return (TAGS_MODEL,) if self.tags is not None else ()

    def _text_model(self, search: Search, request: RecommendRequest) -> str | None:
        """How this request's prompts are read: MuLan when its weights are here, else MusiCNN's tags
        when the library has them, else MuLan (whose missing weights then say what to download)."""
        if not (request.prompts or request.negative_prompts):
            return None
        if "muq" in search.models and self.text_ready():
            return "muq"
        if TAGS_MODEL in search.models and self.tags is not None \
                and len(self.vectors.field(TAGS_MODEL, TAGS_FIELD)) > 0:
            return TEXT_MODEL
        if "muq" in search.models:
            return "muq"
        raise InvalidRequestError(f"text prompts need MuQ-MuLan's weights (navembed models download muq) or "
                                  f"the {TAGS_MODEL} model's tags (embed the library with {TAGS_MODEL})")

    def _tag_probe(self, tags: Sequence[str], source: str, ref: str) -> Probe:
        return Probe(TAGS_MODEL, TAGS_FIELD, source, ref, self.tags.weights(tags)[None, :])

    def _tag_positives(self, prompt: str) -> tuple[Probe, list[list[Probe]]]:
        """A prompt's wanted tags as one probe; each tag it steers away from as a negative input."""
        query = self.tags.parse(prompt)
        if not query.positive:
            raise InvalidRequestError(f"prompt {prompt[:80]!r} only names tags to avoid; put those in "
                                      "negative_prompts, or name a tag to look for")
        return (self._tag_probe(query.positive, "prompt", prompt),
                [[self._tag_probe([tag], "negative_prompt", tag)] for tag in query.negative])

    def _tag_negatives(self, request: RecommendRequest) -> list[list[Probe]]:
        """Negative inputs of the tag path: each negative prompt (all its tags), and each tag a prompt avoids."""
        groups = [[self._tag_probe((*q.positive, *q.negative), "negative_prompt", p)]
                  for p in request.negative_prompts for q in [self.tags.parse(p)]]
        return groups + [g for p in request.prompts for g in self._tag_positives(p)[1]]

    def _with_tags(self, search: Search, tracks: list[RecommendedTrack]) -> list[RecommendedTrack]:
        """Each track with its strongest MusiCNN tags in its ``why`` (where the tags model is in use)."""
        if self.tags is None or TAGS_MODEL not in (*search.models, *self.default_models):
            return tracks
        field = self.vectors.field(TAGS_MODEL, TAGS_FIELD)
        if len(field) == 0 or field.dimension != len(self.tags.names):
            return tracks
        scores = tag_scores(field)
        return [dataclasses.replace(t, why=dataclasses.replace(t.why, tags=top_tags(found, self.tags.names)))
                if (found := scores.of(t.id)) is not None else t for t in tracks]

    def _check_tracks(self, search: Search, request: RecommendRequest, notes: list[str]) -> None:
        ends = (request.path.start, request.path.end) if request.mode == "path" and request.path else ()
        wanted = list(dict.fromkeys((*request.seeds, *request.negative_tracks, *ends)))
        where = {t: [m for m in search.models if search.field(m).vectors_of(t) is not None] for t in wanted}
        absent = [t for t, models in where.items() if not models]
        if absent:
            known = self.catalog(absent)
            if unknown := [t for t in absent if t not in known]:
                raise UnknownTrackError(f"unknown track id(s): {', '.join(unknown)} (not in the library)")
            raise NoVectorsError(f"track(s) {', '.join(absent)} have no vectors in "
                                 f"{', '.join(search.models)} yet: embed them first")
        notes += [f"track {t} has no {m} vectors yet; {m} does not use it" for t, models in where.items()
                  for m in search.models if m not in models]

    def _text_probes(self, search: Search, prompt: str, texts: Mapping[str, np.ndarray], source: str) -> list[Probe]:
        probes = []
        for model in search.models:
            field = self.text_fields.get(model)
            if field is None:
                continue
            if texts[prompt].shape[-1] != search.field(model, field).dimension:
                raise InvalidRequestError(f"text vectors have {texts[prompt].shape[-1]} dimensions, but "
                                          f"{model}.{field} holds {search.field(model, field).dimension}")
            probes.append(Probe(model, field, source, prompt, texts[prompt][None, :]))
        return probes

    def _positives(self, search: Search, request: RecommendRequest, texts: Mapping[str, np.ndarray],
                   notes: list[str], text_model: str | None) -> list[Probe]:
        probes = search.track_probes(request.seeds, "seed")
        for seed in request.seed_vectors:
            if seed.model not in search.models:
                notes.append(f"vectors {seed.label!r} are for {seed.model}, which this request does not use")
                continue
            vectors = np.atleast_2d(np.asarray(seed.vectors, dtype=np.float32))
            if vectors.shape[1] != search.field(seed.model, seed.field).dimension:
                raise InvalidRequestError(f"vectors {seed.label!r} have {vectors.shape[1]} dimensions; "
                                          f"{seed.model}.{seed.field} holds "
                                          f"{search.field(seed.model, seed.field).dimension}")
            probes.append(Probe(seed.model, seed.field, "vector", seed.label, vectors))
        for prompt in request.prompts:
            if text_model == TEXT_MODEL:
                probes.append(self._tag_positives(prompt)[0])
            else:
                probes += self._text_probes(search, prompt, texts, "prompt")
        if not probes:
            raise InvalidRequestError("none of the inputs can be searched in the requested models")
        return probes

    def _ranked(self, search: Search, request: RecommendRequest, positives: list[Probe],
                negatives: list[list[Probe]]) -> tuple[list[str], list[int], Scores, Pool]:
        """The candidates, the chosen ones' positions among them (playlist order), their scores and pool."""
        rules = request.rules
        table = track_table(self.catalog)  # one table for the whole request, even if a rebuild starts meanwhile
        k = max(self.min_candidates, 2 * _pool_per_track(rules) * rules.size)
        while True:
            ids = search.candidates(positives, k, joined=request.fusion == "weighted")
            terms = search.terms(positives, ids, fusion=request.fusion, rrf_k=request.rrf_k)
            groups = [search.terms(g, ids, fusion=request.fusion, rrf_k=request.rrf_k) for g in negatives]
            scores = fuse(terms, groups, search.weights, strength=request.negative_strength)
            chosen, pool = self._arrange(search, request, ids, scores, table)
            if len(chosen) >= rules.size or k >= search.track_count:
                return ids, chosen, scores, pool
            k *= 4

    def _arrange(self, search: Search, request: RecommendRequest, ids: list[str],
                 scores: Scores, table: TrackTable | None) -> tuple[list[int], Pool]:
        rules = request.rules
        ranked = np.argsort(-scores.total, kind="stable")
        order = ranked[np.isfinite(scores.total[ranked])]
        blocked = (*request.seeds, *request.negative_tracks)
        limit = _pool_per_track(rules) * rules.size
        while True:
            pool = eligible(order if table is not None else order.tolist(), ids, rules, catalog=self.catalog,
                            blocked=blocked, limit=limit, table=table)
            similarity_to = None if by_score_only(rules) else search.similarity_to([ids[i] for i in pool.positions])
            chosen = select(pool, ids, scores.total, rules, similarity_to=similarity_to,
                            anchors=(*request.seeds, *rules.previous),
                            same_as=search.same_recording([ids[i] for i in pool.positions], self.identity)
                            if rules.collapse_duplicates else None)
            if len(chosen) >= rules.size or pool.exhausted:
                return chosen, pool
            limit *= 4


def _pool_per_track(rules: PlaylistRules) -> int:
    """Allowed candidates per slot before widening: room for the rules that skip candidates as the
    playlist grows; none is needed when only the score orders (``by_score_only``: the plugin's call)."""
    return 1 if by_score_only(rules) else POOL_PER_TRACK


def _track(track_id: str, known: Mapping, scores: Scores, index: int, role: str = "pick") -> RecommendedTrack:
    score, why = scores.explain(index)
    track = known.get(track_id)
    return RecommendedTrack(id=track_id, title=track.title if track else "", artist=track.artist if track else "",
                            album=track.album if track else "", score=score, why=why, role=role)
