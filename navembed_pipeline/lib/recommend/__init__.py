"""Recommendations: multi-model fusion, text and negative prompts, playlist rules, paths, explanations.

Plain Python (no web or Dagster imports). ``Recommender(vectors, catalog, embed_text=...)``
answers a ``RecommendRequest`` with a ``Playlist``; ``VectorCache(store)`` keeps the store's
vectors in this process for fast searches. MusiCNN's tags: each track's scores and top tags
(``tags.py``) and prompts read as tags when MuQ-MuLan is absent (``tag_text.py``).

May import: the shared leaves, ``library`` (tracks) and ``store`` (vectors, through its public names only).
"""

from navembed_pipeline.lib.recommend.calibration import LibraryStats, ScoreCalibration
from navembed_pipeline.lib.recommend.catalog import TrackCatalog
from navembed_pipeline.lib.recommend.engine import DEFAULT_MODELS, TEXT_FIELDS, Recommender
from navembed_pipeline.lib.recommend.identity import (COPY_SIMILARITY, CopyThreshold, RecordingIdentity, closeness,
                                                      title_keys)
from navembed_pipeline.lib.recommend.errors import (InvalidRequestError, NoVectorsError, RecommendError,
                                                    UnknownTrackError)
from navembed_pipeline.lib.recommend.index import StaticVectors, VectorCache
from navembed_pipeline.lib.recommend.mix_files import MixRun, build_and_write, load_tagging, preview
from navembed_pipeline.lib.recommend.mixes import Mix, MixOptions, Tagging, build_mixes, for_you_request
from navembed_pipeline.lib.recommend.request import (MAX_SIZE, MAX_STEPS, Contribution, Explanation, PathSpec, Penalty,
                                                     Playlist, PlaylistRules, RecommendedTrack, RecommendRequest,
                                                     VectorSeed)
from navembed_pipeline.lib.recommend.sonic import Neighbour, SonicService, UnknownArtistError
from navembed_pipeline.lib.recommend.tag_text import TagQuery, TagVocabulary, UnknownTagError
from navembed_pipeline.lib.recommend.tags import (TAGS_FIELD, TAGS_MODEL, TEXT_MODEL, TagScore, TagScores, as_json,
                                                  distribution_markdown, tag_distribution, top_tags)
from navembed_pipeline.lib.recommend.vectors import FieldVectors

__all__ = [
    "COPY_SIMILARITY", "Contribution", "CopyThreshold", "DEFAULT_MODELS", "Explanation", "FieldVectors", "InvalidRequestError", "LibraryStats",
    "MAX_SIZE", "MAX_STEPS", "Mix", "MixOptions", "MixRun", "Neighbour", "NoVectorsError", "PathSpec", "Penalty",
    "Playlist", "PlaylistRules", "RecommendError", "RecordingIdentity", "RecommendRequest", "RecommendedTrack", "Recommender",
    "ScoreCalibration", "SonicService", "StaticVectors", "TAGS_FIELD", "TAGS_MODEL", "TEXT_FIELDS", "TEXT_MODEL",
    "TagQuery", "TagScore", "TagScores", "TagVocabulary", "Tagging", "TrackCatalog", "UnknownArtistError",
    "UnknownTagError", "UnknownTrackError", "VectorCache", "VectorSeed", "as_json", "build_and_write", "closeness", "build_mixes",
    "distribution_markdown", "for_you_request", "load_tagging", "preview", "tag_distribution", "title_keys",
    "top_tags",
]
