"""Excerpt plans: where the excerpts of a long track lie, and cutting them from a whole wave."""

import numpy as np
import pytest

from navembed_pipeline.lib.library.excerpts import ExcerptPlan, ExcerptWave, excerpt_parts

PLAN = ExcerptPlan(count=4, seconds=10.0, above_seconds=60.0)


def test_a_track_up_to_the_limit_is_read_whole() -> None:
    assert PLAN.spans(60.0) == () and not PLAN.applies(60.0)
    assert PLAN.cut(np.zeros(60 * 100, np.float32), 100) is None


def test_excerpts_are_spread_evenly_inside_the_track_without_overlap() -> None:
    spans = PLAN.spans(400.0)
    assert spans == ((45.0, 10.0), (145.0, 10.0), (245.0, 10.0), (345.0, 10.0))  # centred at 1/8, 3/8, 5/8, 7/8
    just_over = PLAN.spans(60.5)
    starts = [s for s, _ in just_over]
    assert starts[0] >= 0 and starts[-1] + 10.0 <= 60.5
    assert all(b - a >= 10.0 for a, b in zip(starts, starts[1:]))


def test_cut_takes_the_same_samples_as_the_spans() -> None:
    rate = 100
    wave = np.arange(400 * rate, dtype=np.float32)
    cut = PLAN.cut(wave, rate)
    assert cut is not None and cut.duration_seconds == 400.0 and cut.samples == 4 * 10 * rate
    for part, (start, seconds) in zip(cut.parts, PLAN.spans(400.0), strict=True):
        assert part[0] == start * rate and len(part) == seconds * rate


def test_ranges_are_the_spans_in_samples_and_what_cut_slices() -> None:
    rate = 22_050
    ranges = PLAN.ranges(400.0, rate)
    assert [(r.start, len(r)) for r in ranges] == [(round(start * rate), round(seconds * rate))
                                                   for start, seconds in PLAN.spans(400.0)]
    wave = np.arange(400 * rate, dtype=np.float32)
    assert [(p[0], len(p)) for p in PLAN.cut(wave, rate).parts] == [(r.start, len(r)) for r in ranges]
    assert PLAN.ranges(60.0, rate) == ()  # read whole


def test_a_model_analyses_the_excerpts_of_a_long_wave_and_an_excerpt_wave_as_it_is() -> None:
    rate = 100
    long_wave, short_wave = np.ones(400 * rate, np.float32), np.ones(30 * rate, np.float32)
    assert [len(p) for p in excerpt_parts(long_wave, PLAN, rate)] == [10 * rate] * 4
    assert [len(p) for p in excerpt_parts(long_wave, None, rate)] == [400 * rate]
    assert [len(p) for p in excerpt_parts(short_wave, PLAN, rate)] == [30 * rate]
    given = ExcerptWave((np.ones(5, np.float32), np.zeros(7, np.float32)), 400.0)
    assert [len(p) for p in excerpt_parts(given, PLAN, rate)] == [5, 7]


@pytest.mark.parametrize("count, seconds, above", [(0, 10.0, 60.0), (4, 0.0, 60.0), (4, 10.0, 30.0)])
def test_a_plan_that_cannot_work_is_refused(count: int, seconds: float, above: float) -> None:
    with pytest.raises(ValueError, match="excerpt plan"):
        ExcerptPlan(count, seconds, above)
