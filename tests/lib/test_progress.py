"""The progress line round-trips between the run that writes it and the readers that parse it."""

from dataclasses import asdict

from navembed_pipeline.lib.embedding_run import Progress
from navembed_pipeline.lib.progress import format_progress, parse_progress


def test_a_progress_line_parses_back_to_its_fields() -> None:
    progress = Progress("dsp", 10, 4, 3, 1, 0, "Artist - Title", 2.5, 2.4)
    assert parse_progress(format_progress(progress)) == asdict(progress)


def test_other_log_lines_are_not_progress() -> None:
    assert parse_progress("Finished execution of step") is None
