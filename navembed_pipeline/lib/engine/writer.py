"""Writing an embedding run's results: rows buffered and upserted in batches, failures recorded.

The third part of the engine (``run.py``). Rows of ``write_batch_tracks`` tracks go to the
store in one upsert (a crash redoes at most those); a track that embeds after an earlier failure has
its failure record cleared; a bucket is reported once its last track is written.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from navembed_pipeline.lib.engine.decode import Decoded
from navembed_pipeline.lib.engine.planner import BucketState
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.store import VectorRow, VectorStore

LOGGER = logging.getLogger("navembed.run")


@dataclass
class WriteBuffer:
    """Rows embedded but not yet written, and the tracks they (or their failures) belong to."""

    rows: list[VectorRow] = field(default_factory=list)
    tracks: list[tuple[str, Decoded]] = field(default_factory=list)


@dataclass(frozen=True)
class RunWriter:
    """One model's writes to the store (``collection``: a staging collection during a rebuild)."""

    model_name: str
    store: VectorStore
    collection: str | None
    previously_failed: frozenset[str]
    on_time: Callable[[str, float], None]  # ("write", seconds)

    def flush(self, buffer: WriteBuffer, states: dict[str, BucketState]) -> Iterator[tuple[BucketState, bool]]:
        """Write the buffered rows in one upsert; then per buffered track ``(its bucket, embedded?)``."""
        if buffer.rows:
            writing = time.perf_counter()
            self.store.upsert(self.model_name, buffer.rows, collection=self.collection)
            recovered = sorted({row.track_id for row in buffer.rows} & self.previously_failed)
            if recovered:
                self.store.clear_failures(self.model_name, recovered)
            self.on_time("write", time.perf_counter() - writing)
        tracks = list(buffer.tracks)
        buffer.rows.clear()
        buffer.tracks.clear()
        for bucket, decoded in tracks:
            state = states[bucket]
            yield state, not state.has_failed(decoded.track.id)

    def fail(self, state: BucketState, track: Track, error: str) -> None:
        """Record ``track`` as failed (in its bucket's report and in the store's failure log)."""
        LOGGER.warning("failed %s (%s): %s", track.display_name, track.path, error)
        state.failures.append((track.id, track.display_name, error))
        writing = time.perf_counter()
        self.store.record_failures(self.model_name, [(track.id, error)])
        self.on_time("write", time.perf_counter() - writing)
