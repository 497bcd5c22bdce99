"""Hand-made libraries for the recommendation tests: tracks, their vectors, a catalog."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend import FieldVectors, Recommender, StaticVectors


def track(track_id: str, *, artist: str = "", album: str = "", album_artist: str = "", library_id: int = 1,
          duration: float = 180.0) -> Track:
    return Track(id=track_id, path=Path(f"/music/{track_id}.flac"), title=f"Title {track_id}",
                 artist=artist or f"Artist {track_id}", album=album or f"Album {track_id}",
                 album_artist=album_artist, duration_seconds=duration, size=1,
                 updated_at=datetime(2026, 1, 1, tzinfo=UTC), library_id=library_id, library_name="Music",
                 suffix="flac")


def catalog_of(tracks: Sequence[Track]):
    """A catalog like ``NavidromeLibrary.get``: the known tracks among the ids asked for."""
    by_id = {t.id: t for t in tracks}
    return lambda ids: {i: by_id[i] for i in ids if i in by_id}


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def field(model: str, vectors: Mapping[str, np.ndarray], name: str = "embedding", **options) -> FieldVectors:
    """One vector per track (a 2-d value: one row per segment)."""
    ids, segments, rows = [], [], []
    for track_id, value in vectors.items():
        for segment, row in enumerate(np.atleast_2d(value), start=1):
            ids.append(track_id)
            segments.append(segment)
            rows.append(row)
    return FieldVectors(model, name, ids, segments, np.asarray(rows, dtype=np.float32), **options)


def recommender(fields: Sequence[FieldVectors], tracks: Sequence[Track], **options) -> Recommender:
    return Recommender(StaticVectors(fields), catalog_of(tracks), **options)


def grouped_vectors(groups: Mapping[str, np.ndarray], per_group: int, *, spread: float = 0.05,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """``per_group`` noisy copies of each group's centre, ids ``<group><n>``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, centre in groups.items():
        for n in range(per_group):
            noisy = np.asarray(centre, dtype=np.float32) + spread * rng.standard_normal(len(centre))
            out[f"{name}{n}"] = (noisy / np.linalg.norm(noisy)).astype(np.float32)
    return out
