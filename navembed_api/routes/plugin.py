"""The HTTP contract of the published Navidrome plugin ``audiomuseai.ndp`` (NeptuneHub/AudioMuse-AI-NV-plugin).

A stock Navidrome reaches external similarity only through plugins; this one calls
``GET {apiUrl}/api/similar_tracks``, ``/api/find_path`` and ``/api/similar_artists`` (Go
``url.Values`` query, optional ``Authorization: Bearer {apiToken}``, 10 s timeout) and decodes the
answers into fixed Go structs, so the shapes here are exactly those structs:

- track: ``{"item_id": str, "title": str, "author": str, "album": str, "distance": float}``;
  ``distance = 1 - similarity`` with the library-calibrated similarity (the plugin shows
  ``1 - distance`` to OpenSubsonic clients); most similar first, never the seed;
- path: ``{"path": [track, ...]}`` from the start song to the end song, distances to the start;
- artist: ``{"artist": str, "artist_id": str, "component_matches": [{"artist1_representative_songs":
  [{"item_id", "title"}], "artist2_representative_songs": [...]}]}`` (Navidrome artist ids).

Errors are ``{"status": "error", "message": ...}``: unknown ids 404, no vectors yet 409, a wrong
token 401; the plugin logs the status and Navidrome falls back to its other agents.

Answers are serialised once, with orjson (the plain dicts above need no validation), instead of through
FastAPI's response model and ``jsonable_encoder``: at n = 200 that walk cost more than the search.
"""

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from navembed_api.deps import ServicesDep
from navembed_api.errors import Unauthorized
from navembed_api.routes.recommend import SonicDep, refusals_as_http
from navembed_pipeline.lib.recommend import Neighbour

try:
    import orjson

    def _dumps(content: Any) -> bytes:
        return orjson.dumps(content)
except ImportError:  # pragma: no cover - orjson comes with pymilvus
    def _dumps(content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()

_bearer = HTTPBearer(auto_error=False, description="NAVEMBED_PLUGIN_TOKEN (the plugin's apiToken)")


def require_plugin_token(services: ServicesDep,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """With ``NAVEMBED_PLUGIN_TOKEN`` set, ``Authorization: Bearer <it>`` is required; without, none is."""
    expected = services.settings.plugin_token_value
    if expected is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong plugin token: set the plugin's apiToken to NAVEMBED_PLUGIN_TOKEN")


router = APIRouter(prefix="/api", tags=["navidrome plugin"], dependencies=[Depends(require_plugin_token)],
                   responses={401: {"description": "wrong or missing token (when one is configured)"},
                              404: {"description": "unknown track or artist id"},
                              409: {"description": "the library has no vectors yet"}})


def _json(content: Any) -> Response:
    return Response(_dumps(content), media_type="application/json")


@router.get("/similar_tracks", response_model=list[dict[str, Any]])
def similar_tracks(sonic: SonicDep, item_id: str, n: Annotated[int, Query(ge=0)] = 10,
                   eliminate_duplicates: bool = True, radius_similarity: bool = False) -> Response:
    """Up to ``n`` tracks like ``item_id`` (at most 500), most similar first. ``eliminate_duplicates``:
    never two copies of one recording; ``radius_similarity``: only tracks within the seed's radius
    (calibrated similarity >= 0.5), so the list may be shorter than ``n``."""
    with refusals_as_http():
        found = sonic.similar_tracks(item_id, n, eliminate_duplicates=eliminate_duplicates,
                                     within_radius=radius_similarity, details=False)
    return _json([_track(t) for t in found])


@router.get("/find_path", response_model=dict[str, list[dict[str, Any]]])
def find_path(sonic: SonicDep, start_song_id: str, end_song_id: str, count: Annotated[int, Query(ge=1)] = 25,
              max_steps: int | None = None, path_fix_size: bool = False, mood_pct: int | None = None
              ) -> Response:
    """At most ``count`` songs from the start to the end song, each step nearer the end. ``max_steps``
    caps the length too; ``path_fix_size`` and ``mood_pct`` are accepted and ignored (the path is as
    long as it finds forward steps; every model counts fully)."""
    length = min(count, max_steps) if max_steps and max_steps > 0 else count
    with refusals_as_http():
        found = sonic.path(start_song_id, end_song_id, length, details=False)
    return _json({"path": [_track(t) for t in found]})


@router.get("/similar_artists", response_model=list[dict[str, Any]])
def similar_artists(sonic: SonicDep, artist: str, n: Annotated[int, Query(ge=0)] = 10,
                    include_component_matches: bool = False) -> Response:
    """Up to ``n`` artists that sound like ``artist`` (a Navidrome artist id, or a name), most alike first;
    with ``include_component_matches`` the songs through which the two meet (library tracks)."""
    with refusals_as_http():
        _, matches = sonic.similar_artists(artist, n)
    titles = _titles(sonic, matches) if include_component_matches else {}
    return _json([{"artist": m.artist.name, "artist_id": m.artist.id,
                   "component_matches": [{"artist1_representative_songs": [_song(t, titles) for t in m.own_songs],
                                          "artist2_representative_songs": [_song(t, titles) for t in m.their_songs]}]
                   if include_component_matches else []}
                  for m in matches])


def _track(found: Neighbour) -> dict[str, Any]:
    track = found.track
    return {"item_id": track.id, "title": track.title, "author": track.artist, "album": track.album,
            "distance": round(1.0 - found.similarity, 6)}


def _titles(sonic, matches) -> dict[str, str]:
    ids = [t for m in matches for t in (*m.own_songs, *m.their_songs)]
    return {i: t.title for i, t in sonic.track_details(ids, full=False).items()}


def _song(track_id: str, titles: dict[str, str]) -> dict[str, str]:
    return {"item_id": track_id, "title": titles.get(track_id, "")}
