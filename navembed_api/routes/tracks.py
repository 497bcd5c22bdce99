"""``GET /tracks/{track_id}``: what navembed knows about one track — its Navidrome metadata, which
models have stored its vectors (or recorded why they could not), and its MusiCNN tags."""

from typing import Any

from fastapi import APIRouter

from navembed_api.deps import ServicesDep
from navembed_api.errors import NotFound, short
from navembed_api.routes.recommend import RecommenderDep
from navembed_pipeline.lib.models import MODEL_NAMES
from navembed_pipeline.lib.library import Track
from navembed_pipeline.lib.recommend import TAGS_FIELD, TAGS_MODEL, as_json, top_tags
from navembed_pipeline.lib.store import VectorStore

router = APIRouter(tags=["tracks"])


@router.get("/tracks/{track_id}", responses={404: {"description": "neither Navidrome nor the store knows the id"},
                                              503: {"description": "no Navidrome database, or the store is down"}})
def track_info(track_id: str, services: ServicesDep, engine: RecommenderDep) -> dict[str, Any]:
    """The track's metadata, per model whether its vectors are stored (segments, model version) or why it
    failed, and with the ``musicnn`` model its tags: ``top_tags`` (the 5 strongest) and ``tags`` (all 50
    scores, strongest first; each the model's mean probability over the track, 0..1)."""
    store = services.store()
    found = engine.catalog([track_id]).get(track_id)
    models = {name: _presence(store, name, track_id) for name in dict.fromkeys((*MODEL_NAMES, TAGS_MODEL))}
    if found is None and not any(m["stored"] for m in models.values()):
        raise NotFound(f"unknown track id {short(track_id)}: not in the Navidrome library nor the store")
    answer: dict[str, Any] = {"id": track_id, **(_metadata(found) if found else {"in_library": False}),
                              "models": models}
    names = engine.tags.names if engine.tags is not None else ()
    scores = store.get_vectors(TAGS_MODEL, [track_id], TAGS_FIELD).get(track_id) if models[TAGS_MODEL]["stored"] \
        else None
    if scores is not None and names and scores.shape[-1] == len(names):
        answer["top_tags"] = as_json(top_tags(scores, names))
        answer["tags"] = as_json(top_tags(scores, names, len(names)))
    return answer


def _metadata(track: Track) -> dict[str, Any]:
    return {"in_library": True, "title": track.title, "artist": track.artist, "album": track.album,
            "album_artist": track.album_artist, "duration_seconds": track.duration_seconds,
            "suffix": track.suffix, "library": track.library_name}


def _presence(store: VectorStore, model: str, track_id: str) -> dict[str, Any]:
    info = store.stored(model, [track_id]).get(track_id)
    out: dict[str, Any] = {"stored": info is not None}
    if info is not None:
        out.update(segments=info.segments, model_version=info.model_version)
    failure = store.failed_tracks(model).get(track_id)
    if failure:
        out["failed"] = failure
    return out
