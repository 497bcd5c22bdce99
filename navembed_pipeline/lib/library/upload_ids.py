"""Ids of uploads: ``upload:<hash of the path>``, never a Navidrome track id.

Uploads live in their own store (``duplicates.uploads``); the pipeline must never treat such an id as a
library track (a sensor run neither deletes it nor starts a run because of it).
"""

import hashlib
from pathlib import Path

UPLOAD_PREFIX = "upload:"


def upload_id(path: Path) -> str:
    """The id of the file uploaded at ``path``."""
    return UPLOAD_PREFIX + hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:16]


def is_upload_id(track_id: str) -> bool:
    return track_id.startswith(UPLOAD_PREFIX)
