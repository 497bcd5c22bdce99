"""Track details for the recommender, read from Navidrome's database once and kept while it is unchanged.

A plugin request looks tracks up several times (candidates under the rules, duplicates, the answer):
at 100k tracks those SQLite reads were most of a request's time (``benchmarks/recommend_latency``).
``TrackCatalog`` keeps the tracks it has read (at most ``capacity``, least recently used dropped) and
forgets them all when Navidrome's database files change (size or modification time of the database or
its WAL, looked at no more often than ``check_interval_s``), so a rescan is seen within that interval.
"""

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from navembed_pipeline.lib.library import Track

CAPACITY = 300_000
CHECK_INTERVAL_S = 2.0
Lookup = Callable[[Iterable[str]], dict[str, Track]]
FileState = tuple[tuple[int, int] | None, ...]


class TrackCatalog:
    """``get(ids)`` like ``NavidromeLibrary.get``, answered from memory for tracks read before."""

    def __init__(self, lookup: Lookup, database: Path | None, *, capacity: int = CAPACITY,
                 check_interval_s: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        """``lookup``: the real reader (``NavidromeLibrary.get``); ``database``: its file (None: never forget)."""
        self._lookup = lookup
        self._files = () if database is None else (Path(database), Path(f"{database}-wal"))
        self.capacity = capacity
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._known: OrderedDict[str, Track | None] = OrderedDict()  # None: asked before, not in the library
        self._state = self._file_state()
        self._checked_at = clock()
        self._lock = threading.Lock()

    def __call__(self, ids: Iterable[str]) -> dict[str, Track]:
        return self.get(ids)

    def get(self, ids: Iterable[str]) -> dict[str, Track]:
        """The present tracks among ``ids``, by id (unknown ids left out)."""
        wanted = list(dict.fromkeys(ids))
        self._forget_if_changed()
        with self._lock:
            known = {t: self._known[t] for t in wanted if t in self._known}
            for track_id in known:
                self._known.move_to_end(track_id)
        if missing := [t for t in wanted if t not in known]:
            found = self._lookup(missing)
            with self._lock:
                for track_id in missing:
                    known[track_id] = self._known[track_id] = found.get(track_id)
                while len(self._known) > self.capacity:
                    self._known.popitem(last=False)
        return {t: track for t in wanted if (track := known.get(t)) is not None}

    def forget(self) -> None:
        """Drop every remembered track (the next lookups read the database)."""
        with self._lock:
            self._known.clear()

    def _forget_if_changed(self) -> None:
        now = self._clock()
        if now - self._checked_at < self.check_interval_s:
            return
        state = self._file_state()
        with self._lock:
            self._checked_at = now
            if state != self._state:
                self._state = state
                self._known.clear()

    def _file_state(self) -> FileState:
        return tuple(_stat(path) for path in self._files)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns

