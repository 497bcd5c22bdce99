"""Recommendations: ``POST /playlist/{mode}``, ``GET /similar/{track_id}``, and the OpenSubsonic
``sonicSimilarity`` endpoints (``/rest/getSonicSimilarTracks``, ``/rest/findSonicPath``).

The engine lives in ``navembed_pipeline.lib.recommend``; this module only translates HTTP to a
``RecommendRequest`` and a ``Playlist`` back to JSON. The app's lifespan builds the engine
(``navembed_api/recommender.py``) and sets ``app.state.recommender`` and ``app.state.sonic``.

The ``/rest/*`` pair follows the OpenSubsonic spec (sonicSimilarity v1): a top-level ``sonicMatch``
list of ``{entry: Child, similarity}``, similarity calibrated on the library (1 = the same
recording, 0 = as alike as a typical unrelated pair), and every error inside the
``subsonic-response`` envelope at HTTP 200 (code 10: a required parameter is missing, 70: not
found, 0: anything else). A stock Navidrome answers these endpoints itself through the plugin
(``/api/*``, ``routes/plugin.py``); ours serve scripts and tests that talk to navembed directly.
"""

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, StrictBool

from navembed_api.errors import ApiError, Conflict, NotFound, Unprocessable
from navembed_api.routes import ModelName
from navembed_pipeline.lib.library import Track
from navembed_pipeline.lib.recommend import (MAX_SIZE, MAX_STEPS, Neighbour, NoVectorsError, PathSpec, Playlist,
                                             PlaylistRules, Recommender, RecommendError, RecommendRequest, SonicService,
                                             UnknownArtistError, UnknownTrackError)

router = APIRouter(tags=["recommend"])
SUBSONIC_VERSION = "1.16.1"


class RecommenderUnavailable(ApiError):
    """The recommender could not be built (no Navidrome database configured or readable)."""

    status_code = 503


_OFF = ("recommendations are off: the API has no readable Navidrome database (set NAVEMBED_NAVIDROME_DB; "
        "the API log at startup says what failed)")


def get_recommender(request: Request) -> Recommender:
    engine = getattr(request.app.state, "recommender", None)
    if engine is None:
        raise RecommenderUnavailable(_OFF)
    return engine


def get_sonic(request: Request) -> SonicService:
    """The lifespan's ``SonicService``, or one over ``app.state.recommender`` (no artists) if only that is set."""
    state = request.app.state
    sonic = getattr(state, "sonic", None)
    if sonic is None:
        sonic = state.sonic = SonicService(get_recommender(request), lambda: ())
    return sonic


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
SonicDep = Annotated[SonicService, Depends(get_sonic)]


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
    no_consecutive_artist: StrictBool = False
    collapse_duplicates: StrictBool = True
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
    with refusals_as_http():
        return engine.recommend(request)


@contextlib.contextmanager
def refusals_as_http() -> Iterator[None]:
    """The engine's refusals as the API's 404 (unknown track or artist) / 409 (no vectors) / 422."""
    try:
        yield
    except (UnknownTrackError, UnknownArtistError) as exc:
        raise NotFound(str(exc)) from exc
    except NoVectorsError as exc:
        raise Conflict(str(exc)) from exc
    except RecommendError as exc:
        raise Unprocessable(str(exc)) from exc


@router.post("/playlist/{mode}", responses={404: {"description": "unknown track id"},
                                            409: {"description": "a model or seed has no vectors yet"},
                                            422: {"description": "the request lacks what its mode needs"},
                                            503: {"description": "the vector store is unreachable"}})
def playlist(mode: Literal["similar", "text", "mixed", "path"], body: PlaylistBody,
             engine: RecommenderDep) -> dict[str, Any]:
    """A playlist: ``similar`` (seeds → radio), ``text`` (prompts), ``mixed`` (seeds + prompts) or
    ``path`` (start → end in ``steps``). Each track's ``why`` lists every model's similarity to each
    seed or prompt and the penalty of the nearest negative input; its values add up to ``score``.
    """
    return dataclasses.asdict(answer(engine, body.to_request(mode)))


@router.get("/similar/{track_id}", responses={404: {"description": "unknown track id"},
                                             409: {"description": "a model or the track has no vectors yet"},
                                             422: {"description": "an unknown model or an out-of-range size"},
                                             503: {"description": "the vector store is unreachable"}})
def similar(track_id: str, engine: RecommenderDep, size: Annotated[int, Query(ge=1, le=MAX_SIZE)] = 25,
            models: Annotated[list[ModelName], Query()] = []) -> dict[str, Any]:  # noqa: B006 - FastAPI query
    """Tracks that sound like ``track_id`` (``similar`` mode with default rules)."""
    request = RecommendRequest(mode="similar", seeds=(track_id,), models=tuple(models), rules=PlaylistRules(size=size))
    return dataclasses.asdict(answer(engine, request))


@router.get("/rest/getSonicSimilarTracks")
@router.get("/rest/getSonicSimilarTracks.view", include_in_schema=False)
def sonic_similar(request: Request, id: str | None = None, count: str | None = None) -> dict[str, Any]:  # noqa: A002
    """OpenSubsonic ``getSonicSimilarTracks``: up to ``count`` (default 10, at least 0) tracks like ``id``,
    most similar first, each with its calibrated ``similarity`` to ``id``."""
    if not id:
        return _failed(10, "required parameter 'id' is missing")
    size = _count(count, default=10, minimum=0)
    if isinstance(size, str):
        return _failed(0, size)
    return _matches(request, lambda sonic: sonic.similar_tracks(id, size, eliminate_duplicates=True))


@router.get("/rest/findSonicPath")
@router.get("/rest/findSonicPath.view", include_in_schema=False)
def sonic_path(request: Request, startSongId: str | None = None, endSongId: str | None = None,  # noqa: N803
               count: str | None = None) -> dict[str, Any]:
    """OpenSubsonic ``findSonicPath``: at most ``count`` (default 25, at least 1) songs from the start song
    to the end song, each with its calibrated ``similarity`` to the start song."""
    missing = [name for name, value in (("startSongId", startSongId), ("endSongId", endSongId)) if not value]
    if missing:
        return _failed(10, f"required parameter {' and '.join(repr(m) for m in missing)} missing")
    size = _count(count, default=25, minimum=1)
    if isinstance(size, str):
        return _failed(0, size)
    return _matches(request, lambda sonic: sonic.path(startSongId, endSongId, size))


def _count(raw: str | None, *, default: int, minimum: int) -> int | str:
    """The ``count`` parameter (capped at the engine's largest list), or what is wrong with it."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return f"parameter 'count' must be an integer, got {raw[:20]!r}"
    if value < minimum:
        return f"parameter 'count' must be at least {minimum}"
    return min(value, MAX_SIZE)


def _matches(request: Request, ask) -> dict[str, Any]:
    try:
        neighbours: list[Neighbour] = ask(get_sonic(request))
    except UnknownTrackError as exc:
        return _failed(70, str(exc))
    except (RecommendError, ApiError) as exc:
        return _failed(0, str(exc))
    matches = [{"entry": _child(n.track), "similarity": round(n.similarity, 4)} for n in neighbours]
    return {"subsonic-response": {**_header("ok"), "sonicMatch": matches}}


def _failed(code: int, message: str) -> dict[str, Any]:
    return {"subsonic-response": {**_header("failed"), "error": {"code": code, "message": message}}}


def _header(status: str) -> dict[str, Any]:
    return {"status": status, "version": SUBSONIC_VERSION, "type": "navembed", "serverVersion": "0.1.0",
            "openSubsonic": True}


def _child(track: Track) -> dict[str, Any]:
    return {"id": track.id, "isDir": False, "type": "music", "title": track.title, "artist": track.artist,
            "artistId": track.artist_id, "album": track.album, "duration": int(round(track.duration_seconds)),
            "suffix": track.suffix, "size": track.size}
