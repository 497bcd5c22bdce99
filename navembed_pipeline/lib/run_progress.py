"""An embedding run's live progress: run-wide counters, the ETA, and the heartbeat thread that reports them."""

import threading
from collections.abc import Callable, Sequence

from navembed_pipeline.lib.runs import Progress

# No ETA before this many tracks have finished: the first ones carry the model's load time.
MIN_TRACKS_FOR_ETA = 3


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
    """Calls ``on_progress`` with a snapshot at once and then every ``interval`` seconds until stopped."""

    def __init__(self, tally: Tally, interval: float, on_progress: Callable[[Progress], None]) -> None:
        self._tally, self._interval, self._on_progress = tally, interval, on_progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="navembed-progress", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        self._on_progress(self._tally.snapshot())
        while not self._stop.wait(self._interval):
            self._on_progress(self._tally.snapshot())
