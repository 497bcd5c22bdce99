"""The progress heartbeat: a line at once, one as soon as the first tracks finish, then at most one per
interval and none while nothing finishes (each line is a Dagster event during a real run)."""

import time

from navembed_pipeline.lib.engine.heartbeat import Heartbeat, Tally


def test_heartbeat_reports_first_tracks_early_then_only_per_interval_and_only_on_change() -> None:
    tally = Tally("dsp", total=10, skipped=0, started=time.monotonic(), clock=time.monotonic)
    seen = []
    with Heartbeat(tally, 2.0, seen.append, poll=0.05):
        time.sleep(0.3)  # nothing finished: only the line at once
        assert [p.processed for p in seen] == [0]
        tally.count([False])
        time.sleep(0.4)  # the first finished track is reported at the next look, not after the interval
        assert [p.processed for p in seen] == [0, 1]
        tally.count([False, True])
        time.sleep(0.4)  # within the interval: held back
        assert len(seen) == 2
        time.sleep(1.8)  # past it: one line with both tracks
        assert [p.processed for p in seen] == [0, 1, 3]
        time.sleep(2.4)  # nothing finished for longer than the interval: no further line
        assert len(seen) == 3
    assert (seen[-1].embedded, seen[-1].failed) == (2, 1)
