"""Why a recommendation cannot be made. The API maps these to 4xx answers (see ``status_code``)."""

from navembed_pipeline.lib.errors import NavembedError


class RecommendError(NavembedError):
    """A recommendation request that cannot be answered as asked (the caller's to fix)."""

    status_code = 422


class InvalidRequestError(RecommendError):
    """The request contradicts itself or lacks what its mode needs (e.g. ``text`` without a prompt)."""


class UnknownTrackError(RecommendError):
    """A track id is neither in the Navidrome library nor in the vector store."""

    status_code = 404


class NoVectorsError(RecommendError):
    """A model, or a seed track, has no vectors yet: embed the library first."""

    status_code = 409
