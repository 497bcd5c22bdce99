"""Recommendations: multi-model fusion, text and negative prompts, playlist rules, paths, explanations.

Plain Python (no web or Dagster imports). ``Recommender(vectors, catalog, embed_text=...)``
answers a ``RecommendRequest`` with a ``Playlist``; ``VectorCache(store)`` keeps the store's
vectors in this process for fast searches.

May import: the shared leaves, ``library`` (tracks) and ``store`` (vectors, through its public names only).
"""

from navembed_pipeline.lib.recommend.calibration import LibraryStats, ScoreCalibration
from navembed_pipeline.lib.recommend.engine import DEFAULT_MODELS, TEXT_FIELDS, Recommender
from navembed_pipeline.lib.recommend.errors import (InvalidRequestError, NoVectorsError, RecommendError,
                                                    UnknownTrackError)
from navembed_pipeline.lib.recommend.index import StaticVectors, VectorCache
from navembed_pipeline.lib.recommend.request import (MAX_SIZE, MAX_STEPS, Contribution, Explanation, PathSpec, Penalty,
                                                     Playlist, PlaylistRules, RecommendedTrack, RecommendRequest,
                                                     VectorSeed)
from navembed_pipeline.lib.recommend.sonic import Neighbour, SonicService, UnknownArtistError
from navembed_pipeline.lib.recommend.vectors import FieldVectors

__all__ = [
    "DEFAULT_MODELS", "MAX_SIZE", "MAX_STEPS", "TEXT_FIELDS", "Contribution", "Explanation", "FieldVectors",
    "InvalidRequestError", "LibraryStats", "Neighbour", "NoVectorsError", "PathSpec", "Penalty", "Playlist",
    "PlaylistRules", "RecommendError", "RecommendRequest", "RecommendedTrack", "Recommender", "ScoreCalibration",
    "SonicService", "StaticVectors", "UnknownArtistError", "UnknownTrackError", "VectorCache", "VectorSeed",
]
