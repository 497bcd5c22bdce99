"""The progress record round-trips between the run that writes it and the readers that parse it."""

import json
from dataclasses import asdict

import pytest

from navembed_pipeline.lib.progress import format_progress, parse_progress
from navembed_pipeline.lib.runs import Progress, ProgressFormatError

RECORD = Progress("dsp", 10, 4, 3, 2, 1, 0, "Artist - Title", 2.5, 2.4)


def test_a_progress_line_parses_back_to_the_same_record() -> None:
    assert parse_progress(format_progress(RECORD)) == RECORD
    assert Progress.from_json(RECORD.to_json()) == RECORD


def test_the_log_line_ends_with_what_a_person_reads() -> None:
    line = RECORD.to_log_line()
    assert line.endswith("dsp 4/10 (40.0%), 2.50 tracks/s, ETA 0:02, written 2, failed 0, skipped 1")


def test_other_log_lines_are_not_progress() -> None:
    assert parse_progress("Finished execution of step") is None


@pytest.mark.parametrize("change", [
    lambda d: d.pop("processed"),                      # a field renamed or dropped by a newer writer
    lambda d: d.update(extra=1),                       # a field the reader does not know
    lambda d: d.update(processed="4"),                 # a mistyped value
    lambda d: d.update(eta_seconds=-1.0),
])
def test_a_line_that_differs_from_the_record_is_refused(change) -> None:
    data = asdict(RECORD)
    change(data)
    with pytest.raises(ProgressFormatError):
        Progress.from_json(json.dumps(data))


def test_percent_and_done() -> None:
    assert RECORD.percent == 40.0 and not RECORD.done
    assert Progress("dsp", 0, 0, 0, 0, 0, 0, None, 0.0, 0.0).percent == 100.0
