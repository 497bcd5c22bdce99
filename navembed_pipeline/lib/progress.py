"""The structured progress line every embedding run logs and every reader parses (CLI bar, API).

The record and its (de)serialisation live in ``lib/runs.py`` (``Progress``); these two functions
are the log-line envelope under the names the pipeline has always used.
"""

from navembed_pipeline.lib.runs import PROGRESS_PREFIX, Progress, ProgressFormatError

__all__ = ["PROGRESS_PREFIX", "Progress", "ProgressFormatError", "format_progress", "parse_progress"]


def format_progress(progress: Progress) -> str:
    """``navembed.progress {json}`` for a ``Progress`` record."""
    return progress.to_log_line()


def parse_progress(message: str) -> Progress | None:
    """The progress record of a log message, None if it is not a progress line (malformed ones raise
    ``ProgressFormatError``)."""
    return Progress.from_log_line(message)
