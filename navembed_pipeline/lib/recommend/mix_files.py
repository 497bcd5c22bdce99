"""Build the sonic mixes from the library, the history and the vectors, and write them as M3U8 files.

The glue the ``sonic_mixes`` asset and ``navembed demo`` share: read the present tracks, every
user's history (``lib/library/history.py``), MusiCNN tags when the store has them, build the mixes
(``mixes.py``) and write one playlist per mix (``lib/library/m3u.py``).
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library.history import NavidromeHistory
from navembed_pipeline.lib.library.m3u import PlaylistSpec, WriteReport, file_name, write_playlists
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.recommend.engine import Recommender
from navembed_pipeline.lib.recommend.mixes import TAGS_FIELD, TAGS_MODEL, Mix, MixOptions, Tagging, build_mixes
from navembed_pipeline.lib.recommend.search import VectorSource

LOGGER = logging.getLogger("navembed.mixes")


@dataclass(frozen=True)
class MixRun:
    """The mixes built and where they were written."""

    mixes: tuple[Mix, ...]
    report: WriteReport
    users: int  # users with listening history
    users_total: int
    tagged: bool  # clusters named by MusiCNN tags


def load_tagging(engine: Recommender) -> Tagging | None:
    """The ``musicnn`` model's ``tags`` field with the vocabulary the engine was given (``tag_names``),
    when both exist; else None (artists name the clusters)."""
    if engine.tags is None:
        return None
    names = engine.tags.names
    try:
        field = engine.vectors.field(TAGS_MODEL, TAGS_FIELD)
    except (NavembedError, KeyError, ValueError) as exc:
        LOGGER.info("no MusiCNN tags to name the mixes by: %s", exc)
        return None
    if len(field) == 0 or field.dimension != len(names):
        return None
    return Tagging(field, names)


def build_and_write(engine: Recommender, library: NavidromeLibrary, history: NavidromeHistory, directory: Path, *,
                    now: datetime, options: MixOptions = MixOptions()) -> MixRun:
    """Every mix for the library and its users, written into ``directory``."""
    tracks = {t.id: t for t in library.tracks()}
    histories = list(history.histories().values())
    tagging = load_tagging(engine)
    mixes = build_mixes(engine, tracks, histories, now=now, options=options, tagging=tagging)
    specs = [PlaylistSpec(slug=m.slug, title=m.title, comments=(m.reason,),
                          tracks=tuple(tracks[t] for t in m.track_ids if t in tracks)) for m in mixes]
    report = write_playlists(directory, specs, library.libraries(), built=now)
    return MixRun(tuple(mixes), report, users=sum(1 for h in histories if not h.empty),
                  users_total=len(histories), tagged=tagging is not None)


def preview(run: MixRun, tracks: NavidromeLibrary, *, per_mix: int = 3) -> str:
    """A markdown table of the mixes: file, name, size and the first tracks."""
    lines = ["| file | playlist | tracks | first tracks |", "|---|---|---|---|"]
    known = tracks.get([t for m in run.mixes for t in m.track_ids[:per_mix]])
    for mix, path in zip(run.mixes, _paths(run), strict=False):
        first = "; ".join(known[t].display_name for t in mix.track_ids[:per_mix] if t in known)
        lines.append(f"| {path} | {mix.title} | {len(mix.track_ids)} | {first.replace('|', '/')} |")
    return "\n".join(lines)


def _paths(run: MixRun) -> list[str]:
    names = {p.name for p in run.report.written}
    return [file_name(m.slug) if file_name(m.slug) in names else f"{file_name(m.slug)} (not written)"
            for m in run.mixes]
