"""An embedding run's live progress: run-wide counters, the ETA, and the heartbeat thread that reports them."""

import threading
import time
from collections.abc import Callable, Sequence

from navembed_pipeline.lib.runs import Progress

# No ETA before this many tracks have finished: the first ones carry the model's load time.
MIN_TRACKS_FOR_ETA = 3
# The heartbeat looks at the counters this often (at most) to report the first finished tracks early.
FIRST_LINE_POLL = 1.0


class Tally:
    """Run-wide counters, read by the heartbeat thread (ints: no lock needed for a snapshot).

    ``embedded``/``failed`` move as each track finishes embedding; ``written`` as its vectors are
    stored. The rate is measured from the end of the first batch on, so the model's load time (spent
    in it) does not drag the estimate down; before ``MIN_TRACKS_FOR_ETA`` tracks there is no ETA.
    """

    def __init__(self, model: str, *, total: int, skipped: int, started: float, clock: Callable[[], float]) -> None:
        self.model, self.total, self.skipped, self.started, self._clock = model, total, skipped, started, clock
        self.embedded = 0
        self.written = 0
        self.failed = 0
        self.current: str | None = None
        self._first: tuple[float, int] | None = None  # (time, tracks worked) when the first batch finished

    def count(self, failed: Sequence[bool]) -> None:
        """One finished batch: per track, whether it failed."""
        self.failed += sum(failed)
        self.embedded += len(failed) - sum(failed)
        if self._first is None:  # the rate is measured from the end of the first batch on
            self._first = (self._clock(), self.embedded + self.failed)

    def snapshot(self) -> Progress:
        processed = self.embedded + self.skipped + self.failed
        remaining = self.total - processed
        rate = self._rate()
        if remaining <= 0:
            eta: float | None = 0.0
        elif rate > 0 and self.embedded + self.failed >= MIN_TRACKS_FOR_ETA:
            eta = max(0.1, round(remaining / rate, 1))  # tracks remain: never report 0
        else:
            eta = None
        return Progress(self.model, self.total, processed, self.embedded, self.written, self.skipped, self.failed,
                        self.current, round(rate, 3), eta)

    def _rate(self) -> float:
        worked = self.embedded + self.failed
        if self._first is None:
            return 0.0
        now = self._clock()
        first_time, first_count = self._first
        if worked > first_count and now > first_time:
            return (worked - first_count) / (now - first_time)
        return worked / max(now - self.started, 1e-9)


class Heartbeat:
    """Reports snapshots to ``on_progress`` from its own thread: one at once, one as soon as the first
    tracks have finished (the first rate and ETA), then at most every ``interval`` seconds and only when
    a track finished since the last one (each line is a Dagster event, which costs the run time)."""

    def __init__(self, tally: Tally, interval: float, on_progress: Callable[[Progress], None], *,
                 poll: float = FIRST_LINE_POLL) -> None:
        self._tally, self._interval, self._on_progress = tally, interval, on_progress
        self._poll = min(interval, poll)  # looks often, reports rarely
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="navembed-progress", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        last = self._tally.snapshot()
        self._on_progress(last)
        last_at = time.monotonic()
        while not self._stop.wait(self._poll):
            now = time.monotonic()
            if self._tally.embedded + self._tally.failed + self._tally.skipped == last.processed:
                continue  # nothing finished since the last line: no event
            first_worked = last.embedded + last.failed == 0
            if first_worked or now - last_at >= self._interval:
                last, last_at = self._tally.snapshot(), now
                self._on_progress(last)
