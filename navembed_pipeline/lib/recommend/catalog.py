"""Track details for the recommender, read from Navidrome's database once and kept while it is unchanged.

A plugin request looks tracks up several times (candidates under the rules, duplicates, the answer):
at 100k tracks those SQLite reads were most of a request's time (``benchmarks/recommend_latency``).
``TrackCatalog`` keeps the tracks it has read (at most ``capacity``, least recently used dropped) and
forgets them all when Navidrome's database files change (size or modification time of the database or
its WAL, looked at no more often than ``check_interval_s``), so a rescan is seen within that interval.

``TrackTable``: what the rules and the duplicate check need of *every* present track (artist, album
artist, album, library, duration, normalised artist + title) as numpy arrays, read in one pass
(``NavidromeLibrary.track_columns``) and rebuilt on the same database change; with it a request
filters its candidates in a few array operations instead of reading and testing each track, and
reads full ``Track``s only for the tracks it answers with. Until the first table is built ``table()``
answers None and callers take the per-track path (same answers); after a change the previous table is
used while the next one is read (``TrackCatalog.table``).
"""

import logging
import os
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.library import Track

CAPACITY = 300_000
CHECK_INTERVAL_S = 2.0
TABLE_MIN_INTERVAL_S = 30.0
TABLE_REBUILD_FACTOR = 3.0
Lookup = Callable[[Iterable[str]], dict[str, Track]]
FileState = tuple[tuple[int, int] | None, ...]
# (id, title, artist, album artist, album, library id, duration): ``NavidromeLibrary.track_columns``
TrackRow = tuple[str, str, str, str, str, int, float]
Columns = Callable[[], Sequence[TrackRow]]
LOGGER = logging.getLogger("navembed.recommend")
_PUNCTUATION = re.compile(r"[^\w]+")


def normal_text(text: str) -> str:
    """Case, accents, punctuation and spacing folded: 'Morning Keys!' == 'morning  keys'."""
    folded = (text if text.isascii() else unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()) \
        or text
    return " ".join(_PUNCTUATION.sub(" ", folded.casefold()).split())


def name_key(text: str) -> str:
    """How the rules compare artist and album names: stripped, case folded."""
    return text.strip().casefold()


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What a music server shows of a track: its id, title, artist and album (from a ``TrackTable``)."""

    id: str
    title: str
    artist: str
    album: str


@dataclass(frozen=True, eq=False)
class TrackTable:
    """Every present track's filter metadata, one row per track; names as codes into shared vocabularies."""

    keys: np.ndarray  # bytes (S): every track id, UTF-8, sorted (a dict of a million ids costs ~100 MB)
    key_rows: np.ndarray  # int64: the row of each id in ``keys``
    artist: np.ndarray  # int32 codes into ``names`` (``name_key`` of the artist)
    album_artist: np.ndarray  # int32 codes into ``names``
    album: np.ndarray  # int32 codes into ``albums``
    library: np.ndarray  # int64 library id
    duration: np.ndarray  # float64 seconds
    recording: np.ndarray  # int32 codes of the normalised artist + title (``normal_text``)
    names: np.ndarray  # object: artist and album-artist keys
    name_codes: Mapping[str, int]
    album_codes: Mapping[str, int]
    shown: np.ndarray  # (rows, 2) int32 codes of the artist and album as written, into ``shown_names``
    shown_names: tuple[str, ...]
    titles: bytes  # every title, UTF-8, one after another (a Python string per track would cost ~4x)
    title_ends: np.ndarray  # int64: where each row's title ends in ``titles``

    @classmethod
    def build(cls, rows: Iterable[TrackRow]) -> "TrackTable":
        names: dict[str, int] = {}
        albums: dict[str, int] = {}
        recordings: dict[str, int] = {}
        normal_artists: dict[str, str] = {}
        shown_names: dict[str, int] = {}
        seen: set[str] = set()
        ids: list[bytes] = []
        artist, album_artist, album, library, duration, recording = [], [], [], [], [], []
        shown, titles = [], []
        for track_id, title, artist_name, album_artist_name, album_name, library_id, seconds in rows:
            if track_id in seen:
                continue
            seen.add(track_id)
            ids.append(track_id.encode())
            artist_name, album_artist_name = artist_name or "", album_artist_name or ""
            shown.append((shown_names.setdefault(artist_name, len(shown_names)),
                          shown_names.setdefault(album_name or "", len(shown_names))))
            titles.append((title or "").encode())
            artist.append(names.setdefault(name_key(artist_name), len(names)))
            album_artist.append(names.setdefault(name_key(album_artist_name), len(names)))
            album.append(albums.setdefault(name_key(album_name or ""), len(albums)))
            library.append(int(library_id))
            duration.append(float(seconds or 0.0))
            folded = normal_artists.get(artist_name)
            if folded is None:
                folded = normal_artists[artist_name] = normal_text(artist_name)
            key = f"{folded}\x1f{normal_text(title or '')}"
            recording.append(recordings.setdefault(key, len(recordings)))
        del seen
        vocabulary = np.empty(len(names), dtype=object)
        vocabulary[:] = list(names)
        keys = np.asarray(ids, dtype=bytes) if ids else np.zeros(0, dtype="S1")
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], order.astype(np.int64), np.asarray(artist, np.int32), np.asarray(album_artist, np.int32),
                   np.asarray(album, np.int32), np.asarray(library, np.int64), np.asarray(duration, np.float64),
                   np.asarray(recording, np.int32), vocabulary, names, albums,
                   np.asarray(shown, np.int32).reshape(-1, 2), tuple(shown_names), b"".join(titles),
                   np.cumsum([len(t) for t in titles], dtype=np.int64))

    def info(self, ids: Sequence[str]) -> dict[str, TrackInfo]:
        """What is shown of the present tracks among ``ids``, by id (others left out)."""
        found = {}
        for track_id, row in zip(ids, self.rows_of(ids).tolist(), strict=True):
            if row >= 0:
                start = int(self.title_ends[row - 1]) if row else 0
                artist, album = self.shown[row].tolist()
                found[track_id] = TrackInfo(track_id, self.titles[start:int(self.title_ends[row])].decode(),
                                            self.shown_names[artist], self.shown_names[album])
        return found

    def __len__(self) -> int:
        return len(self.keys)

    def track_ids(self) -> set[str]:
        """Every present track's id."""
        return {k.decode() for k in self.keys.tolist()}

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Each id's row, -1 where it is not a present track of the library."""
        if not len(ids) or not len(self.keys):
            return np.full(len(ids), -1, dtype=np.int64)
        wanted = np.asarray([t.encode() for t in ids], dtype=bytes)
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return np.where(self.keys[at] == wanted, self.key_rows[at], -1)

    def allowed(self, rows: np.ndarray, *, exclude_artists: Iterable[str] = (), exclude_albums: Iterable[str] = (),
                exclude_libraries: Iterable[int] = (), min_duration: float | None = None,
                max_duration: float | None = None) -> np.ndarray:
        """Mask: present (row >= 0) and passing the static rules (``rules.allowed``'s, on arrays)."""
        ok = rows >= 0
        at = np.where(ok, rows, 0)
        if artists := [c for a in exclude_artists if (c := self.name_codes.get(name_key(a))) is not None]:
            ok &= ~(np.isin(self.artist[at], artists) | np.isin(self.album_artist[at], artists))
        if albums := [c for a in exclude_albums if (c := self.album_codes.get(name_key(a))) is not None]:
            ok &= ~np.isin(self.album[at], albums)
        if libraries := list(exclude_libraries):
            ok &= ~np.isin(self.library[at], libraries)
        if min_duration is not None:
            ok &= ~(self.duration[at] < min_duration)
        if max_duration is not None:
            ok &= ~(self.duration[at] > max_duration)
        return ok


class TrackCatalog:
    """``get(ids)`` like ``NavidromeLibrary.get``, answered from memory for tracks read before."""

    def __init__(self, lookup: Lookup, database: Path | None, *, capacity: int = CAPACITY,
                 check_interval_s: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 columns: Columns | None = None) -> None:
        """``lookup``: the real reader (``NavidromeLibrary.get``); ``database``: its file (None: never forget);
        ``columns``: every present track's filter columns (``NavidromeLibrary.track_columns``; None: no table)."""
        self._lookup = lookup
        self._columns = columns
        self._table: TrackTable | None = None
        self._building = False
        self._version = 0  # advanced whenever the database changed
        self._table_version = -1  # the version the table was read at
        self._built_at = float("-inf")
        self._build_seconds = 0.0
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
        """Drop every remembered track and the table (the next lookups read the database)."""
        with self._lock:
            self._known.clear()
            self._table, self._table_version = None, -1
            self._version += 1

    def table(self, *, wait: bool = False) -> TrackTable | None:
        """The table (None without ``columns``, or before the first one is built). After the database
        changed, the previous table is answered while a new one is read on a thread (at most every
        ``max(TABLE_MIN_INTERVAL_S, 3 x the last build)``: Navidrome writes its database often, and a
        read of a million tracks takes seconds), like the vector cache serves the previous vectors while
        it reloads. ``wait``: read it now on this thread unless it is current, and return it."""
        if self._columns is None:
            return None
        self._forget_if_changed()
        with self._lock:
            table, version = self._table, self._version
            if table is not None and self._table_version == version:
                return table
            if not wait:
                due = not self._building and (table is None or self._clock() - self._built_at >= max(
                    TABLE_MIN_INTERVAL_S, TABLE_REBUILD_FACTOR * self._build_seconds))
                self._building = self._building or due
        if wait:
            return self._build(version, False)
        if due:
            threading.Thread(target=self._build, args=(version, True), daemon=True, name="navembed-tracks").start()
        return table

    def _build(self, version: int, background: bool) -> TrackTable | None:
        try:
            began = time.perf_counter()
            table = TrackTable.build(self._columns())
            seconds = time.perf_counter() - began
            with self._lock:
                if version >= self._table_version:  # never replaced by a table read earlier
                    self._table, self._table_version = table, version
                    self._built_at, self._build_seconds = self._clock(), seconds
            LOGGER.info("track table of %d tracks read in %.1f s", len(table), seconds)
            return table
        except Exception:  # noqa: BLE001 - the previous table (or the per-track path) stays
            if not background:
                raise
            LOGGER.warning("could not read the track table", exc_info=True)
            return None
        finally:
            if background:
                with self._lock:
                    self._building = False

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
                self._version += 1  # the table is read again (``table``)

    def _file_state(self) -> FileState:
        return tuple(_stat(path) for path in self._files)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns

