"""The structured progress line every embedding run logs and every reader parses (CLI bar, API)."""

import json
from dataclasses import asdict
from typing import Any

PROGRESS_PREFIX = "navembed.progress "


def format_progress(progress: Any) -> str:
    """``navembed.progress {json}`` for a ``Progress`` dataclass."""
    return PROGRESS_PREFIX + json.dumps(asdict(progress))


def parse_progress(message: str) -> dict[str, Any] | None:
    """The progress fields of a log message, or None if it is not a progress line."""
    if not message.startswith(PROGRESS_PREFIX):
        return None
    return json.loads(message[len(PROGRESS_PREFIX):])
