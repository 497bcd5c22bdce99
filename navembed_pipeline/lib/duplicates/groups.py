"""Recording groups as a per-track integer array, for the request path.

``RecordingGroupIndex`` reads the fingerprint store's ``groups`` table (kept up to date as
fingerprints are written, ``fingerprint_store.py``) into memory and reloads it only when the store's
``group_generation`` changed, so a request never regroups anything: ``ids_for(track_ids)`` is a
dictionary lookup per candidate, and two candidates are copies of one recording by fingerprint
exactly when their ids are equal and not ``NO_GROUP`` (-1: no fingerprint that can decide).
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.errors import NavembedError

LOGGER = logging.getLogger("navembed.duplicates")
NO_GROUP = -1
CHECK_INTERVAL_S = 1.0  # how often a reader asks the store whether the groups changed


class RecordingGroupIndex:
    """Track id → group number (``NO_GROUP`` where unknown), reloaded when the store's groups change.

    ``store`` is a ``FingerprintStore`` or a callable giving one (None while there is none: e.g. the
    API before the pipeline has written the fingerprint file). Thread-safe; a store that cannot be
    read leaves the last groups in place (logged), or none.
    """

    def __init__(self, store: FingerprintStore | Callable[[], FingerprintStore | None] | None, *,
                 check_interval_s: float = CHECK_INTERVAL_S) -> None:
        self._store = store
        self._interval = check_interval_s
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}
        self._generation: int | None = None
        self._checked = -float("inf")
        self.error: str | None = None  # the last read failure, None once a read succeeds

    def ids_for(self, track_ids: Sequence[str]) -> np.ndarray:
        """Group numbers of ``track_ids`` (int64, ``NO_GROUP`` where a track has no group)."""
        numbers = self._current()
        get = numbers.get
        return np.fromiter((get(t, NO_GROUP) for t in track_ids), dtype=np.int64, count=len(track_ids))

    __call__ = ids_for

    @property
    def generation(self) -> int | None:
        """The store's group generation this index holds (None before the first read)."""
        return self._generation

    def _current(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._checked < self._interval:
            return self._numbers
        with self._lock:
            if now - self._checked < self._interval:
                return self._numbers
            self._checked = now
            try:
                self._reload()
                self.error = None
            except NavembedError as exc:
                self.error = str(exc)
                LOGGER.warning("recording groups unavailable, keeping the last ones: %s", exc)
            return self._numbers

    def _reload(self) -> None:
        store = self._store() if callable(self._store) and not isinstance(self._store, FingerprintStore) \
            else self._store
        if store is None:
            return
        generation = store.group_generation()
        if generation == self._generation:
            return
        groups = store.recording_groups()
        keys: dict[str, int] = {}
        self._numbers = {track: keys.setdefault(key, len(keys)) for track, key in groups.items()}
        self._generation = generation
