"""The one error family of navembed. Every error says what failed and what to do about it."""


class NavembedError(Exception):
    """Base of every error navembed raises on purpose."""


class AudioDecodeError(NavembedError):
    """A file is missing, unreadable, corrupt, truncated, empty or not audio at all."""


class CueSheetError(NavembedError):
    """A CUE sheet cannot be parsed or does not match its audio file."""


class LibraryError(NavembedError):
    """The Navidrome database is missing, locked, or not a Navidrome database."""


class WeightsMissingError(NavembedError):
    """A model's weights are not on this machine (download them explicitly)."""


class ModelLoadError(NavembedError):
    """A model's weights are present but cannot be loaded."""


class WeightsUnreadableError(ModelLoadError):
    """A model's weights are on this machine but cannot be read (a damaged cache, no permission)."""


class DeviceError(NavembedError):
    """The requested compute device is not available."""


class TextNotSupportedError(NavembedError):
    """The model has no text tower, so it cannot embed text."""


class StoreError(NavembedError):
    """The vector store is unreachable or rejected an operation."""


class ConfigError(NavembedError):
    """A setting has an invalid value."""


# What a model raises on input it cannot handle (torch raises RuntimeError, CUDA OOM included): the
# engine fails the track, not the run (engine/run.py), in its own process or a worker's.
MODEL_ERRORS = (RuntimeError, ValueError, FloatingPointError)
