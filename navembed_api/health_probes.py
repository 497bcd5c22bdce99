"""What ``/health`` checks besides the store and Dagster: the disk, Navidrome's database, the state files.

Each probe answers ``{"ok": bool, ...}`` with the reason when not ok; none raises. ``/batch/start``
uses ``navidrome_state`` to refuse a run that could only fail.
"""

import os
import shutil
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.store import SET_ASIDE_MARK, SET_ASIDE_TIME, set_aside_files

PROBE_BUSY_TIMEOUT_S = 2.0  # a locked navidrome.db is reported, not waited for
# The SQLite state files of a data dir: what each holds (named on /health when it is unreadable).
STATE_FILES = {
    "failures.sqlite": "the failure log (which tracks failed, and why)",
    "fingerprints.sqlite": "fingerprints and upload records",
    "missing.sqlite": "missing-file tombstones and refused deletions",
}
QUICK_CHECK_MAX_BYTES = 64 << 20  # larger files get the header/schema read only (quick_check reads it all)
_checked: dict[tuple[str, int, int], str | None] = {}  # (path, mtime_ns, size) → error, so /health stays cheap
_checked_lock = threading.Lock()


def disk_state(data_dir: Path, min_free_mb: int) -> dict[str, Any]:
    """Free space where the data dir lives; not ok below ``min_free_mb`` (writes of vectors, logs and
    Dagster's event log would fail)."""
    where = Path(data_dir)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free_mb = shutil.disk_usage(where).free // (1 << 20)
    except OSError as exc:
        return {"ok": False, "path": str(data_dir), "error": f"cannot read the free space: {exc}"}
    body: dict[str, Any] = {"ok": free_mb >= min_free_mb, "path": str(data_dir), "free_mb": free_mb}
    if not body["ok"]:
        body["error"] = (f"the disk of {data_dir} is (nearly) full: {free_mb} MB free, less than {min_free_mb} MB "
                         "(NAVEMBED_HEALTH_MIN_FREE_MB); runs and uploads fail until space is freed")
    return body


def navidrome_state(db_path: Path | None, path_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Whether Navidrome's database can be read now (missing, not a database, locked, too old)."""
    if db_path is None:
        return {"ok": True, "configured": False, "note": "NAVEMBED_NAVIDROME_DB is not set: no recommendations"}
    try:
        library = NavidromeLibrary(db_path, path_map=path_map, busy_timeout_s=PROBE_BUSY_TIMEOUT_S)
        return {"ok": True, "configured": True, "path": str(db_path), "tracks": library.count()}
    except NavembedError as exc:
        return {"ok": False, "configured": True, "path": str(db_path), "error": str(exc)}


def state_files_state(data_dir: Path) -> dict[str, Any]:
    """Each SQLite state file of the data dir that exists: readable, or named with what is wrong; and the
    damaged files set aside (``<name>.corrupt-<time>``, rebuilt empty in their place)."""
    started = datetime.now(UTC).strftime(SET_ASIDE_TIME)
    broken = {}
    for name, holds in STATE_FILES.items():
        path = Path(data_dir) / name
        error = _file_error(path)
        if error is not None:
            broken[name] = f"{path} ({holds}) is unreadable: {error}"
    aside = set_aside_files(data_dir)
    for name in aside:  # set aside (by the API's own use of it) while this probe read it: handled, not broken
        original, _, when = name.rpartition(SET_ASIDE_MARK)
        if when >= started:
            broken.pop(original, None)
    return {"ok": not broken, "broken": broken, "set_aside": aside}


def _file_error(path: Path) -> str | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None  # not created yet: the pipeline creates it
    except OSError as exc:
        return str(exc)
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _checked_lock:
        if key in _checked:
            return _checked[key]
    error = _sqlite_error(path, thorough=stat.st_size <= QUICK_CHECK_MAX_BYTES)
    with _checked_lock:
        _checked[key] = error
    return error


def _sqlite_error(path: Path, *, thorough: bool) -> str | None:
    if not os.access(path, os.R_OK):
        return "not readable by this process"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if thorough:
                (result,) = db.execute("PRAGMA quick_check").fetchone()
                if result != "ok":
                    return f"damaged ({result})"
    except sqlite3.Error as exc:
        return str(exc)
    return None


def vector_cache_state(recommending: Any) -> dict[str, Any]:
    """The API's vector caches (``VectorCache.status``): each field's rows, source (snapshot or store scan),
    store generation served, age, last refresh error, a scan in progress and a damaged snapshot or calibration
    set aside. Not ok while a field is stale (its checks have failed for longer than the setting), could not
    be loaded at all, or is being rebuilt from the store after its snapshot was found damaged."""
    if recommending is None:
        return {"ok": True, "configured": False, "fields": [], "errors": []}
    fields = recommending.cache.status()
    errors = []
    for item in fields:
        name = f"{item['model']}.{item['field']}"
        if item["stale"]:
            errors.append(f"vector cache {name} is stale: its checks against the store have failed for "
                          f"{item['failing_s']:.0f} s (NAVEMBED_VECTOR_CACHE_STALE_SECONDS), serving the copy of "
                          f"generation {item.get('generation')}: {item['last_error']}")
        elif not item["loaded"] and item["last_error"]:
            errors.append(f"vector cache {name} could not be loaded: {item['last_error']}")
        aside = item.get("set_aside")
        if aside and aside.get("rebuilding"):
            errors.append(f"vector cache {name}: {aside['error']}; set aside as {', '.join(aside['files'])}, "
                          "rebuilding from the store")
    return {"ok": not errors, "configured": True, "warm": recommending.warmed.is_set(), "fields": fields,
            "joined": recommending.cache.joint_status(), "errors": errors}
