"""One answer to "are these the same recording?", for playlists, the plugin, artist radio and uploads.

The rule, in order:

1. **Fingerprint groups.** Where both tracks have a fingerprint that can decide (a group number,
   ``RecordingGroupIndex`` of ``lib/duplicates``: one segment, at least 10 s), the fingerprint decides
   alone: the same group is the same recording, different groups are different recordings, however
   close the vectors are (different real songs reach dsp cosine 0.988).
2. **Calibrated closeness, per model.** Otherwise (a track without a decidable fingerprint: not
   fingerprinted yet, Chromaprint missing, a clip shorter than 10 s) two tracks are one recording when
   their *calibrated closeness* reaches ``COPY_SIMILARITY[model].similarity`` in every model that has
   a measured threshold and both tracks' vectors (at least one such model). The closeness is the
   library calibration's own scale (``calibration.py``: ``(cos - median) / (1 - median)``, 0 = a typical
   unrelated pair of this library, 1 = identical), the part of the calibrated similarity that does
   not depend on the random-pair tail: a library rich in copies puts copy pairs into that tail, and
   the full similarity of a real re-encode then drops to ~0.9. The raw cosine must also reach
   ``.cosine``, the lowest any real copy scored: a library too small or too uniform to calibrate well
   (a handful of tracks in tight groups) puts merely alike songs near 1, and no copy was seen below
   that cosine. A model without a measured threshold, or a library without a calibration (fewer than
   two tracks), never makes two tracks one recording by vectors.
3. **Clips no fingerprint can decide.** Chromaprint needs ~13 s of audio for the 10 s it compares,
   and a 4 s clip's MP3 copy scores dsp cosine ~0.976, below different real songs (0.986): where
   *neither* track has a decidable fingerprint, the same normalised artist + title (``titles``, e.g.
   ``title_keys(catalog)``) is one recording too. Full-length tracks never take this path, so a live
   take and the studio one, told apart by their fingerprints, stay two recordings.

``COPY_SIMILARITY`` was measured on real recordings (``benchmarks/same_recording.py``: re-encodes
and clips against every pair of different songs, same album included; tuned on the tuning albums,
checked on held-out ones; README, "Duplicates").
"""

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from navembed_pipeline.lib.recommend.vectors import FieldVectors

NO_GROUP = -1  # as ``lib.duplicates.NO_GROUP``: no fingerprint that can decide
TABLE_CODES = 1 << 40  # title numbers taken from a ``TrackTable`` start here (``title_keys``)


@dataclass(frozen=True)
class CopyThreshold:
    """Where one model's vectors call two tracks one recording (both must be reached)."""

    similarity: float  # calibrated closeness (the library's 0..1 scale, ``closeness``)
    cosine: float  # raw cosine floor: the lowest a real copy scored


# Measured per model (benchmarks/same_recording.py, README "Duplicates"); models not here never merge by vectors.
COPY_SIMILARITY: Mapping[str, CopyThreshold] = {"dsp": CopyThreshold(similarity=0.9393, cosine=0.985)}
GroupIds = Callable[[Sequence[str]], np.ndarray]  # track ids → group numbers (NO_GROUP where none)
SameAs = Callable[[str], np.ndarray]  # one track → mask of the candidates that are the same recording


def closeness(vectors: FieldVectors, cosines: np.ndarray | float) -> np.ndarray:
    """``cosines`` of this field on its library's scale: 0 = the median random pair, 1 = identical (NaN
    without a calibration, or where a cosine is NaN)."""
    cosines = np.asarray(cosines, dtype=np.float64)
    if vectors.calibration is None:
        return np.full(cosines.shape, np.nan)
    median = vectors.calibration.scores.median
    return np.clip((cosines - median) / max(1.0 - median, 1e-12), 0.0, 1.0)


def _normal(text: str) -> str:
    """Case, accents, punctuation and spacing folded: 'Morning Keys!' == 'morning  keys'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode() or text
    return " ".join(re.sub(r"[^\w]+", " ", folded.casefold()).split())


def title_keys(catalog: Callable[[Sequence[str]], Mapping[str, Any]]) -> GroupIds:
    """Track ids → a number per normalised artist + title (``NO_GROUP`` for a track the catalog lacks).

    Where the catalog keeps a ``TrackTable`` (``TrackCatalog.table``) holding every id asked about, its
    ``recording`` codes answer (the same folding, no track read), shifted past the numbers given out
    here so the two never meet; otherwise the tracks are read and their titles folded."""
    numbers: dict[str, int] = {}
    table_of = getattr(catalog, "table", None)

    def keys(track_ids: Sequence[str]) -> np.ndarray:
        table = table_of() if callable(table_of) else None
        if table is not None and len(track_ids):
            rows = table.rows_of(list(track_ids))
            if bool(np.all(rows >= 0)):
                return table.recording[rows].astype(np.int64) + TABLE_CODES
        tracks = catalog(list(dict.fromkeys(track_ids)))
        out = np.full(len(track_ids), NO_GROUP, dtype=np.int64)
        for i, t in enumerate(track_ids):
            if (found := tracks.get(t)) is not None:
                out[i] = numbers.setdefault(f"{_normal(found.artist)}\x1f{_normal(found.title)}", len(numbers))
        return out

    return keys


def _no_groups(track_ids: Sequence[str]) -> np.ndarray:
    return np.full(len(track_ids), NO_GROUP, dtype=np.int64)


@dataclass(frozen=True)
class RecordingIdentity:
    """The same-recording rule (module docstring) over ``groups`` and per-model ``thresholds``."""

    groups: GroupIds = _no_groups
    thresholds: Mapping[str, CopyThreshold] = field(default_factory=lambda: dict(COPY_SIMILARITY))
    titles: GroupIds | None = None  # normalised artist + title numbers (rule 3); None: no rule 3

    def by_vectors(self, compared: Mapping[str, tuple[np.ndarray | float, np.ndarray | float]]) -> np.ndarray:
        """Copies by vectors alone: per model, (raw cosines, calibrated closeness) of the pairs (NaN =
        a track lacks that model's vectors); True where every measured model that has both reaches its
        threshold, and at least one has both."""
        verdict: np.ndarray | None = None
        judged: np.ndarray | None = None
        for model, (cosines, calibrated) in compared.items():
            threshold = self.thresholds.get(model)
            if threshold is None:
                continue
            cosines = np.asarray(cosines, dtype=np.float64)
            calibrated = np.asarray(calibrated, dtype=np.float64)
            present = ~np.isnan(cosines) & ~np.isnan(calibrated)
            reaches = ~present | ((np.nan_to_num(calibrated, nan=-np.inf) >= threshold.similarity)
                                  & (np.nan_to_num(cosines, nan=-np.inf) >= threshold.cosine))
            verdict = reaches if verdict is None else verdict & reaches
            judged = present if judged is None else judged | present
        if verdict is None:
            shape = np.shape(next(iter(compared.values()), (np.zeros(0),))[0])
            return np.zeros(shape, dtype=bool)
        return verdict & judged

    def decide(self, first_group: int, other_groups: np.ndarray, by_vectors: np.ndarray,
               same_title: np.ndarray | None = None) -> np.ndarray:
        """Fingerprints first (where both sides have a group), else the vectors' verdict, or (neither side
        has a group) the same title."""
        other_groups = np.asarray(other_groups, dtype=np.int64)
        by_vectors = np.asarray(by_vectors, dtype=bool)
        if first_group == NO_GROUP:
            if same_title is None:
                return by_vectors
            return by_vectors | (np.asarray(same_title, dtype=bool) & (other_groups == NO_GROUP))
        return np.where(other_groups == NO_GROUP, by_vectors, other_groups == first_group)

    def matcher(self, candidates: Sequence[str], fields: Mapping[str, FieldVectors]) -> SameAs:
        """For one request: a function from a track id to the mask of ``candidates`` that are the same
        recording. Candidate rows and group numbers are gathered once; each call is one product per model."""
        measured = {m: f for m, f in fields.items() if m in self.thresholds and len(f) > 0}
        blocks = {m: f.block(f.local_indices(candidates)) for m, f in measured.items()}
        groups = self.groups(candidates)
        titles = self.titles(candidates) if self.titles is not None else None

        def same_as(track_id: str) -> np.ndarray:
            compared = {}
            for model, f in measured.items():
                vectors = f.vectors_of(track_id)
                if vectors is None:
                    continue
                cosines = blocks[model].similarities(vectors).max(axis=1)
                compared[model] = (cosines, closeness(f, cosines))
            close = self.by_vectors(compared) if compared else np.zeros(len(candidates), dtype=bool)
            same_title = None
            if titles is not None:
                own = int(self.titles([track_id])[0])
                same_title = (titles == own) & (own != NO_GROUP)
            return self.decide(int(self.groups([track_id])[0]), groups, close, same_title)

        return same_as

    def same_matrix(self, ids: Sequence[str], fields: Mapping[str, FieldVectors]) -> np.ndarray:
        """(n, n) symmetric: True where two of ``ids`` are the same recording (the diagonal True) — the
        whole rule in a few array operations, for a walk such as ``distinct`` over a short ranked list."""
        n = len(ids)
        groups = np.asarray(self.groups(ids), dtype=np.int64)
        compared = {}
        for model, f in fields.items():
            if model not in self.thresholds or len(f) == 0:
                continue
            block = f.block(f.local_indices(ids))
            cosines = np.full((n, n), np.nan)
            if len(block.present):
                pair = (block.rows @ block.rows.T).astype(np.float64)  # best segment pair of each two tracks
                if not block.single:
                    pair = np.maximum.reduceat(np.maximum.reduceat(pair, block.offsets, axis=0), block.offsets, axis=1)
                cosines[np.ix_(block.present, block.present)] = pair
            compared[model] = (cosines, closeness(f, cosines))
        close = self.by_vectors(compared) if compared else np.zeros((n, n), dtype=bool)
        known = groups != NO_GROUP
        decided = known[:, None] & known[None, :]
        same = np.where(decided, groups[:, None] == groups[None, :], close)
        if self.titles is not None:
            titles = np.asarray(self.titles(ids), dtype=np.int64)
            undecidable = ~known[:, None] & ~known[None, :]
            same |= undecidable & (titles[:, None] == titles[None, :]) & (titles != NO_GROUP)[:, None]
        np.fill_diagonal(same, True)
        return same

    def distinct(self, ids: Sequence[str], fields: Mapping[str, FieldVectors], *, before: Sequence[str] = ()) -> list[str]:
        """``ids`` (in order) without a copy of an earlier one or of any of ``before`` (e.g. the seed)."""
        everyone = [*before, *ids]
        same = self.same_matrix(everyone, fields)
        taken = same[: len(before)].any(axis=0)
        kept = []
        for i in range(len(before), len(everyone)):
            if taken[i]:
                continue
            kept.append(everyone[i])
            taken |= same[i]
        return kept
