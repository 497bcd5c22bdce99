"""The recommender the app's lifespan owns: built at startup, warmed and kept fresh in the background, closed
at shutdown — so the first request (the Navidrome plugin allows 10 s) never pays for loading the vectors.

- built: a ``Recommender`` over a ``VectorCache`` of the store (connected on first use) and the
  Navidrome library, plus the ``SonicService`` the plugin and OpenSubsonic routes use;
- warmed: every enabled model's vectors, their calibration (written to ``<data_dir>/calibration``)
  and the artist index are loaded on a thread right after startup — from the copy under
  ``<data_dir>/vector-cache`` when the store has not changed since it was written (seconds instead
  of a full scan), else from the store; then the default models' vectors are joined for fused searches
  (``join_defaults``, ``lib/recommend/joint.py``);
- kept fresh: requests (every couple of seconds) and a safety net every ``REFRESH_INTERVAL_S`` compare each
  model's collection, row count and store generation with its copy's and reload after a run changed it
  (requests keep reading the previous copy meanwhile);
- caught up: ``catch_up`` reloads, on the spot, every field whose writers published a new generation
  (``lib/store/generation.py``), joins them again, and rebuilds the artist index — ``/batch/progress`` does it before it
  reports a run (or a worker's part) completed, so every route serves a run's results once it says so;
- closed: the refresher stops and the copies are dropped.

Without ``NAVEMBED_NAVIDROME_DB`` nothing is built and the routes answer 503 saying so.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from navembed_api.deps import Services
from navembed_pipeline.lib.errors import ConfigError, NavembedError
from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.models import ModelOptions, musicnn_variant, tag_names
from navembed_pipeline.lib.recommend import (TAGS_FIELD, TAGS_MODEL, RecordingIdentity, Recommender, SonicService,
                                             TrackCatalog, VectorCache, title_keys)

LOGGER = logging.getLogger("navembed.api")
REFRESH_INTERVAL_S = 30.0
WEIGHTS_CHECK_S = 60.0  # how long "are MuQ-MuLan's weights here?" is believed (a download shows within it)
CATCH_UP_WAIT_S = 5.0  # how long /batch/progress waits for a run's results to be served before answering
FINGERPRINTS_FILE = "fingerprints.sqlite"  # the pipeline's fingerprint store under the data dir


@dataclass
class RecommenderState:
    """What the lifespan holds for the recommendation routes."""

    engine: Recommender
    sonic: SonicService
    cache: VectorCache
    warmed: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task | None = None
    catching_up: asyncio.Lock = field(default_factory=asyncio.Lock)
    syncs: set[asyncio.Task] = field(default_factory=set)  # held until done (asyncio keeps weak references)


def build(services: Services) -> RecommenderState:
    """The engine and the sonic service over the store's vectors and the Navidrome library."""
    settings = services.settings
    if settings.navidrome_db is None:
        raise ConfigError("recommendations need the Navidrome database: set NAVEMBED_NAVIDROME_DB")
    library = NavidromeLibrary(settings.navidrome_db, path_map=settings.path_mapping)
    cache = VectorCache(services.store, calibration_dir=settings.data_dir / "calibration",
                        snapshot_dir=settings.data_dir / "vector-cache",
                        stale_after_s=settings.vector_cache_stale_seconds)
    # one SQLite read per track while navidrome.db is unchanged; the rules' columns of every track as arrays
    catalog = TrackCatalog(library.get, library.db_path, columns=library.track_columns)
    groups = FingerprintGroups(settings.data_dir / FINGERPRINTS_FILE)
    engine = Recommender(cache, catalog, embed_text=lambda texts: services.models.get("muq").embed_text(texts),
                         default_models=settings.enabled_models(),
                         text_ready=remembered(lambda: services.models.weights_present("muq"), WEIGHTS_CHECK_S),
                         tag_names=tag_vocabulary(settings.model_options),
                         identity=RecordingIdentity(groups=groups.index, titles=title_keys(catalog)))
    sonic = SonicService(engine, library.tracks)
    return RecommenderState(engine, sonic, cache)


async def start(services: Services) -> RecommenderState | None:
    """Build, then warm and refresh in the background; None (logged) when it cannot be built yet."""
    try:
        state = build(services)
    except NavembedError as exc:
        LOGGER.warning("recommendations are off until restart: %s", exc)
        return None
    threading.Thread(target=_warm, args=(state,), daemon=True, name="navembed-warm").start()
    state.task = asyncio.create_task(_refresh_loop(state), name="navembed-refresh")
    return state


async def stop(state: RecommenderState | None) -> None:
    if state is None:
        return
    if state.task is not None:
        state.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.task
    state.cache.close()


def _warm(state: RecommenderState) -> None:
    try:
        for model in state.engine.default_models:
            state.cache.field(model)
        if TAGS_MODEL in state.engine.default_models:  # shown in every answer's why
            state.cache.field(TAGS_MODEL, TAGS_FIELD)
        join_defaults(state)
        state.engine.catalog.table(wait=True)  # the track table (``TrackCatalog``): filters without reads
        state.sonic.artists()  # after the table: similar_tracks needs it, similar_artists this (seconds at 1M)
    except Exception:  # noqa: BLE001 - warming is best effort; a request reports the real error
        LOGGER.warning("could not preload the vectors", exc_info=True)
    finally:
        state.warmed.set()


def tag_vocabulary(options: ModelOptions) -> tuple[str, ...]:
    """The tags the musicnn model stores with these options (its variant's 50, in the stored order)."""
    return tag_names(musicnn_variant(options))


def remembered(check: Callable[[], bool], seconds: float) -> Callable[[], bool]:
    """``check``, asked again only once its last answer is ``seconds`` old (it looks at files)."""
    last: list[tuple[float, bool]] = []

    def cached() -> bool:
        now = time.monotonic()
        if not last or now - last[0][0] >= seconds:
            last[:] = [(now, bool(check()))]
        return last[0][1]

    return cached


def sync(state: RecommenderState) -> None:
    """Serve every published write now: reload the fields whose store generation (or collection) changed,
    then make the artist index the one of the current vectors (on this thread)."""
    state.cache.sync()
    join_defaults(state)
    state.sonic.artists(wait=True)


def join_defaults(state: RecommenderState) -> None:
    """Join the default models' current vectors (``lib/recommend/joint.py``) as a request naming none would
    use them: at once for a small library, on a thread from 20k tracks on (requests take each model's
    shortlist meanwhile); a restart maps the joined copy written with the snapshots."""
    present = sorted(m for m in state.engine.default_models if len(state.cache.field(m)) > 0)
    if len(present) > 1:
        state.cache.joint([state.cache.field(m) for m in present])


async def catch_up(state: RecommenderState | None, *, timeout: float = CATCH_UP_WAIT_S) -> bool:
    """``sync`` from now (after any sync in flight, which may have looked before the latest write); True
    once done, False if it takes longer than ``timeout`` (it goes on in the background). A store that
    cannot be read counts as done: the routes keep serving the copy they have, as they do meanwhile."""
    if state is None:
        return True

    async def run() -> None:
        async with state.catching_up:
            try:
                await asyncio.to_thread(sync, state)
            except Exception:  # noqa: BLE001 - the previous copy stays; the regular checks retry
                LOGGER.warning("catching up with the store failed", exc_info=True)

    task = asyncio.ensure_future(run())
    state.syncs.add(task)
    task.add_done_callback(state.syncs.discard)
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
        return True
    except TimeoutError:
        return False


async def _refresh_loop(state: RecommenderState) -> None:
    while True:
        await asyncio.sleep(REFRESH_INTERVAL_S)
        try:
            await asyncio.to_thread(state.cache.refresh)
            await asyncio.to_thread(join_defaults, state)
            await asyncio.to_thread(state.sonic.artists)
        except Exception:  # noqa: BLE001 - keep serving the previous copy; try again next time
            LOGGER.warning("refreshing the vectors failed", exc_info=True)


class FingerprintGroups:
    """The pipeline's fingerprint store, opened only once its file exists (the API never creates it); no
    file or no fingerprint module → None. ``index`` is the recording groups as a per-track number array
    (``RecordingGroupIndex``: reloaded when a write changed the groups, never regrouped per request)."""

    def __init__(self, path: Path, *, check_interval_s: float | None = None) -> None:
        self.path = path
        self._store = None
        from navembed_pipeline.lib.duplicates import RecordingGroupIndex

        options = {} if check_interval_s is None else {"check_interval_s": check_interval_s}
        self.index = RecordingGroupIndex(self.store, **options)

    def store(self):  # noqa: ANN201 - a FingerprintStore, imported lazily
        if self._store is None:
            if not self.path.exists():
                return None
            try:
                from navembed_pipeline.lib.duplicates import FingerprintStore
            except ImportError:
                return None
            self._store = FingerprintStore(self.path)
        return self._store
