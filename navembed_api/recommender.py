"""The recommender the app's lifespan owns: built at startup, warmed and kept fresh in the background, closed
at shutdown — so the first request (the Navidrome plugin allows 10 s) never pays for loading the vectors.

- built: a ``Recommender`` over a ``VectorCache`` of the store (connected on first use) and the
  Navidrome library, plus the ``SonicService`` the plugin and OpenSubsonic routes use;
- warmed: every enabled model's vectors, their calibration (written to ``<data_dir>/calibration``)
  and the artist index are loaded on a thread right after startup — from the copy under
  ``<data_dir>/vector-cache`` when the store has not changed since it was written (seconds instead
  of a full scan), else from the store;
- kept fresh: every ``REFRESH_INTERVAL_S`` the cache compares each model's collection with its copy
  and reloads after a run changed it (requests keep reading the previous copy meanwhile);
- closed: the refresher stops and the copies are dropped.

Without ``NAVEMBED_NAVIDROME_DB`` nothing is built and the routes answer 503 saying so.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from navembed_api.deps import Services
from navembed_pipeline.lib.errors import ConfigError, NavembedError
from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.recommend import Recommender, SonicService, VectorCache

LOGGER = logging.getLogger("navembed.api")
REFRESH_INTERVAL_S = 30.0
FINGERPRINTS_FILE = "fingerprints.sqlite"  # the pipeline's fingerprint store under the data dir


@dataclass
class RecommenderState:
    """What the lifespan holds for the recommendation routes."""

    engine: Recommender
    sonic: SonicService
    cache: VectorCache
    warmed: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task | None = None


def build(services: Services) -> RecommenderState:
    """The engine and the sonic service over the store's vectors and the Navidrome library."""
    settings = services.settings
    if settings.navidrome_db is None:
        raise ConfigError("recommendations need the Navidrome database: set NAVEMBED_NAVIDROME_DB")
    library = NavidromeLibrary(settings.navidrome_db, path_map=settings.path_mapping)
    cache = VectorCache(services.store, calibration_dir=settings.data_dir / "calibration",
                        snapshot_dir=settings.data_dir / "vector-cache")
    engine = Recommender(cache, library.get, embed_text=lambda texts: services.models.get("muq").embed_text(texts),
                         default_models=settings.enabled_models())
    groups = FingerprintGroups(settings.data_dir / FINGERPRINTS_FILE)
    sonic = SonicService(engine, library.tracks, recording_groups=groups)
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
        state.sonic.artists()
    except Exception:  # noqa: BLE001 - warming is best effort; a request reports the real error
        LOGGER.warning("could not preload the vectors", exc_info=True)
    finally:
        state.warmed.set()


async def _refresh_loop(state: RecommenderState) -> None:
    while True:
        await asyncio.sleep(REFRESH_INTERVAL_S)
        try:
            await asyncio.to_thread(state.cache.refresh)
            await asyncio.to_thread(state.sonic.artists)
        except Exception:  # noqa: BLE001 - keep serving the previous copy; try again next time
            LOGGER.warning("refreshing the vectors failed", exc_info=True)


class FingerprintGroups:
    """``FingerprintStore.recording_groups`` of the pipeline's fingerprint file, read only once it exists
    (the API never creates it); no file or no fingerprint module → no groups (the callers fall back)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store = None

    def __call__(self, track_ids: Sequence[str]) -> Mapping[str, str]:
        if self._store is None:
            if not self.path.exists():
                return {}
            try:
                from navembed_pipeline.lib.duplicates import FingerprintStore
            except ImportError:
                return {}
            self._store = FingerprintStore(self.path)
        return self._store.recording_groups(track_ids)
