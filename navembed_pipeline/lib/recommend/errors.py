"""Why a recommendation cannot be made. The API maps these by type to 4xx answers
(``navembed_api/routes/recommend.py``: unknown track 404, no vectors 409, anything else 422)."""

from navembed_pipeline.lib.errors import NavembedError


class RecommendError(NavembedError):
    """A recommendation request that cannot be answered as asked (the caller's to fix)."""


class InvalidRequestError(RecommendError):
    """The request contradicts itself or lacks what its mode needs (e.g. ``text`` without a prompt)."""


class UnknownTrackError(RecommendError):
    """A track id is neither in the Navidrome library nor in the vector store."""


class NoVectorsError(RecommendError):
    """A model, or a seed track, has no vectors yet: embed the library first."""
