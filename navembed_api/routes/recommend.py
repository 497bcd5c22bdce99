"""Recommendations: ``POST /playlist/{mode}``, ``GET /similar/{track_id}``, and the OpenSubsonic
sonicSimilarity shapes (``/rest/getSonicSimilarTracks``, ``/rest/findSonicPath``) for a thin plugin.

The engine lives in ``navembed_pipeline.lib.recommend``; this module only translates HTTP to a
``RecommendRequest`` and a ``Playlist`` back to JSON. The app's lifespan should set
``app.state.recommender`` (see ``build_recommender``); until it does, the first request builds one.
"""

import dataclasses
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from navembed_api.deps import Services, get_services
from navembed_api.errors import Conflict, NotFound, Unprocessable
from navembed_api.routes import ModelName
from navembed_pipeline.lib.errors import ConfigError
from navembed_pipeline.lib.navidrome import NavidromeLibrary, Track
from navembed_pipeline.lib.recommend import (NoVectorsError, PathSpec, Playlist, PlaylistRules, RecommendError,
                                             Recommender, RecommendRequest, UnknownTrackError, VectorCache)
from navembed_pipeline.lib.recommend.request import MAX_SIZE, MAX_STEPS

router = APIRouter(tags=["recommend"])
SUBSONIC_VERSION = "1.16.1"
_build_lock = threading.Lock()


def build_recommender(services: Services) -> Recommender:
    """The engine over the store's vectors (cached in process) and the Navidrome library."""
    settings = services.settings
    if settings.navidrome_db is None:
        raise ConfigError("recommendations need the Navidrome database: set NAVEMBED_NAVIDROME_DB")
    library = NavidromeLibrary(settings.navidrome_db, path_map=settings.path_mapping)
    return Recommender(VectorCache(services.store()), library.get,
                       embed_text=lambda texts: services.models.get("muq").embed_text(texts),
                       default_models=settings.enabled_models())


def get_recommender(request: Request) -> Recommender:
    state = request.app.state
    with _build_lock:
        if getattr(state, "recommender", None) is None:
            state.recommender = build_recommender(get_services(request))
    return state.recommender


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]


class PlaylistBody(BaseModel):
    """Inputs, models and rules of one playlist; what each mode needs is listed under the endpoint."""

    seeds: list[str] = Field([], max_length=100, description="Track ids to start from (similar, mixed).")
    prompts: list[str] = Field([], max_length=20, description="Text prompts (text, mixed); need muq.")
    negative_prompts: list[str] = Field([], max_length=20, description="Steer away from these descriptions.")
    negative_tracks: list[str] = Field([], max_length=100, description="Steer away from tracks like these.")
    models: list[ModelName] = Field([], description="Models to fuse (default: every enabled model with vectors).")
    weights: dict[ModelName, float] = Field({}, description="Per-model weight (default 1), rescaled to sum 1.")
    fusion: Literal["weighted", "rrf"] = "weighted"
    negative_strength: float = Field(1.0, ge=0.0)
    size: int = Field(25, ge=1, le=MAX_SIZE)
    exclude_tracks: list[str] = []
    exclude_artists: list[str] = []
    exclude_albums: list[str] = []
    exclude_libraries: list[int] = []
    previous: list[str] = Field([], description="Recently played: never repeated, nor their duplicates.")
    max_per_artist: int | None = Field(None, ge=1)
    no_consecutive_artist: bool = False
    collapse_duplicates: bool = True
    min_duration: float | None = Field(None, ge=0.0, description="Seconds.")
    max_duration: float | None = Field(None, ge=0.0, description="Seconds.")
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="0 = by score, 1 = as varied as possible (MMR).")
    start: str | None = Field(None, description="Path mode: the first track.")
    end: str | None = Field(None, description="Path mode: the last track.")
    steps: int = Field(8, ge=1, le=MAX_STEPS, description="Path mode: tracks between start and end.")

    def to_request(self, mode: str) -> RecommendRequest:
        rules = PlaylistRules(
            size=self.size, exclude_tracks=frozenset(self.exclude_tracks),
            exclude_artists=frozenset(self.exclude_artists), exclude_albums=frozenset(self.exclude_albums),
            exclude_libraries=frozenset(self.exclude_libraries),
            previous=tuple(self.previous), max_per_artist=self.max_per_artist,
            no_consecutive_artist=self.no_consecutive_artist, collapse_duplicates=self.collapse_duplicates,
            min_duration=self.min_duration, max_duration=self.max_duration, diversity=self.diversity)
        path = PathSpec(self.start, self.end, self.steps) if self.start and self.end else None
        return RecommendRequest(
            mode=mode, seeds=tuple(self.seeds), prompts=tuple(self.prompts),
            negative_prompts=tuple(self.negative_prompts), negative_tracks=tuple(self.negative_tracks),
            models=tuple(self.models), weights=dict(self.weights), fusion=self.fusion,
            negative_strength=self.negative_strength, rules=rules, path=path)


def answer(engine: Recommender, request: RecommendRequest) -> Playlist:
    """Run the engine, turning its refusals into the API's 404 / 409 / 422."""
    try:
        return engine.recommend(request)
    except UnknownTrackError as exc:
        raise NotFound(str(exc)) from exc
    except NoVectorsError as exc:
        raise Conflict(str(exc)) from exc
    except RecommendError as exc:
        raise Unprocessable(str(exc)) from exc


@router.post("/playlist/{mode}", responses={404: {"description": "unknown track id"},
                                            409: {"description": "a model or seed has no vectors yet"},
                                            422: {"description": "the request lacks what its mode needs"}})
def playlist(mode: Literal["similar", "text", "mixed", "path"], body: PlaylistBody,
             engine: RecommenderDep) -> dict[str, Any]:
    """A playlist: ``similar`` (seeds → radio), ``text`` (prompts), ``mixed`` (seeds + prompts) or
    ``path`` (start → end in ``steps``). Each track's ``why`` lists every model's similarity to each
    seed or prompt and the penalty of the nearest negative input; its values add up to ``score``.
    """
    return dataclasses.asdict(answer(engine, body.to_request(mode)))


@router.get("/similar/{track_id}")
def similar(track_id: str, engine: RecommenderDep, size: Annotated[int, Query(ge=1, le=MAX_SIZE)] = 25,
            models: Annotated[list[ModelName], Query()] = []) -> dict[str, Any]:  # noqa: B006 - FastAPI query
    """Tracks that sound like ``track_id`` (``similar`` mode with default rules)."""
    request = RecommendRequest(mode="similar", seeds=(track_id,), models=tuple(models), rules=PlaylistRules(size=size))
    return dataclasses.asdict(answer(engine, request))


@router.get("/rest/getSonicSimilarTracks")
@router.get("/rest/getSonicSimilarTracks.view", include_in_schema=False)
def sonic_similar(engine: RecommenderDep, id: str, count: Annotated[int, Query(ge=1, le=MAX_SIZE)] = 10,  # noqa: A002
                  ) -> dict[str, Any]:
    """OpenSubsonic ``getSonicSimilarTracks``: ``sonicMatch`` entries with ``similarity`` to ``id`` (0..1)."""
    request = RecommendRequest(mode="similar", seeds=(id,), rules=PlaylistRules(size=count))
    return _subsonic(engine, request, reference=id)


@router.get("/rest/findSonicPath")
@router.get("/rest/findSonicPath.view", include_in_schema=False)
def sonic_path(engine: RecommenderDep, startSongId: str, endSongId: str,  # noqa: N803 - OpenSubsonic names
               count: Annotated[int, Query(ge=3, le=MAX_STEPS + 2)] = 25) -> dict[str, Any]:
    """OpenSubsonic ``findSonicPath``: start first, end last, ``similarity`` relative to the start."""
    request = RecommendRequest(mode="path", path=PathSpec(startSongId, endSongId, count - 2))
    return _subsonic(engine, request, reference=startSongId)


def _subsonic(engine: Recommender, request: RecommendRequest, *, reference: str) -> dict[str, Any]:
    try:
        playlist = answer(engine, request)
    except (NotFound, Conflict, Unprocessable) as exc:
        code = 70 if isinstance(exc, NotFound) else 0  # 70: the requested data was not found
        return {"subsonic-response": {**_header("failed"), "error": {"code": code, "message": str(exc)}}}
    ids = [t.id for t in playlist.tracks]
    similarity = engine.sonic_similarity(reference, ids, models=playlist.models)
    tracks = engine.catalog(ids)
    matches = [{"entry": _child(t.id, tracks.get(t.id), t), "similarity": round(similarity[t.id], 4)}
               for t in playlist.tracks]
    return {"subsonic-response": {**_header("ok"), "sonicMatch": matches}}


def _header(status: str) -> dict[str, Any]:
    return {"status": status, "version": SUBSONIC_VERSION, "type": "navembed", "serverVersion": "0.1.0",
            "openSubsonic": True}


def _child(track_id: str, track: Track | None, item) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": track_id, "isDir": False, "type": "music", "title": item.title,
                             "artist": item.artist, "album": item.album}
    if track is not None:
        entry.update(duration=int(round(track.duration_seconds)), suffix=track.suffix, size=track.size)
    return entry
